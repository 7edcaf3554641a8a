"""Rate limits end to end: in memory, in Redis, and with Redis configured but down."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import socketio
import treq

import umoc
from tests.support.cluster import ClusterTestCase
from tests.support.databases import NO_REDIS, REDIS_URL
from tests.support.deferreds import blocking, inline
from tests.support.server import ServerTestCase, test_config
from umoc.config import Config

LIMITS = {
    "connect": {"rate": 1, "per": "60s", "burst": 3},
    "events": {"rate": 1, "per": "60s", "burst": 2},
    "login": {"rate": 1, "per": "60s", "burst": 2},
    "register": {"rate": 1, "per": "60s", "burst": 2},
}


class RateLimitTestsMixin:
    config_overrides = {"ratelimits": LIMITS}

    @inline
    async def test_events_over_the_limit_get_error_with_retry_after_and_the_ack_too(self) -> None:
        _, client = await self.connected_user("alice")
        for stamp in (1, 2):
            self.assertEqual((await client.call("ping", {"timestamp": stamp}))["timestamp"], stamp)
        refused = await client.call("ping", {"timestamp": 3})
        self.assertEqual(set(refused), {"error", "code", "retry_after"})
        self.assertEqual(refused["code"], "rate_limited")
        error = await client.expect("error")
        self.assertEqual(set(error), {"message", "code", "retry_after"})
        self.assertTrue(0 < error["retry_after"] <= 60, error)

    @inline
    async def test_connects_over_the_per_ip_limit_get_connect_error(self) -> None:
        login, _ = await self.connected_user("alice")
        for _ in range(2):
            await self.connect(login)
        ws = await self.open_websocket(login)
        await blocking(ws.send, "40")
        frame = await blocking(ws.recv)
        self.assertEqual(frame[:2], "44")
        refusal = json.loads(frame[2:])
        self.assertEqual(refusal["message"], "Too many connection attempts; try again later")
        self.assertEqual(refusal["data"]["code"], "rate_limited")
        self.assertTrue(0 < refusal["data"]["retry_after"] <= 60, refusal)

    @inline
    async def test_login_over_the_limit_is_429_with_retry_after(self) -> None:
        await self.server.register("alice")
        for _ in range(2):
            await self.server.login("alice")
        response = await treq.post(
            self.server.url + "/api/login", json={"username": "alice", "password": "nope-nope"}, persistent=False
        )
        self.assertEqual(response.code, 429)
        body = await response.json()
        self.assertEqual((body.keys(), body["code"]), ({"error", "code"}, "rate_limited"))
        self.assertTrue(1 <= int(response.headers.getRawHeaders("Retry-After")[0]) <= 60)

    @inline
    async def test_register_over_the_limit_is_429(self) -> None:
        await self.server.register("alice")
        await self.server.register("bobby")
        code, body = await self.server.post("/api/register", {"username": "carol", "password": "long enough pw"})
        self.assertEqual(code, 429)
        code, _ = await self.server.post("/api/login", {"username": "carol", "password": "long enough pw"})
        self.assertEqual(code, 401, "the refused registration created nothing")


class RateLimitMemoryTests(RateLimitTestsMixin, ServerTestCase):
    pass


class LoginLockoutTests(ServerTestCase):
    """Wrong passwords from one address never lock the owner out at another (OWASP's lockout DoS)."""

    config_overrides = {"server": {"trusted_proxies": ["127.0.0.1"]}}

    async def login_from(self, address: str, password: str) -> int:
        code, _ = await self.server.post(
            "/api/login", {"username": "alice", "password": password}, headers={"X-Forwarded-For": address}
        )
        return code

    @inline
    async def test_ten_wrong_passwords_from_one_address_do_not_refuse_the_owner_elsewhere(self) -> None:
        await self.server.register("alice")
        codes = [await self.login_from("203.0.113.7", "wrong password!") for _ in range(10)]
        self.assertEqual(set(codes[:5]), {401})
        self.assertEqual(set(codes[5:]), {429}, "the guessing address is slowed down")
        self.assertEqual(await self.login_from("198.51.100.20", "correct horse battery"), 200)
        self.assertEqual(await self.login_from("203.0.113.7", "correct horse battery"), 429)


class RateLimitRedisTests(RateLimitTestsMixin, ServerTestCase):
    if not REDIS_URL:
        skip = NO_REDIS

    def config_for_test(self, data_dir: str) -> Config:
        # A fresh prefix per test: user ids restart at 1 in every test's database.
        prefix = f"umoc-test-{uuid.uuid4().hex}:"
        return test_config(data_dir, ratelimits=LIMITS, redis={"url": REDIS_URL, "prefix": prefix})

    @inline
    async def test_buckets_live_in_redis_under_the_prefix(self) -> None:
        redis = self.server.service.node.cluster.redis
        await self.server.register("alice")
        prefix = self.server.services.config.redis.prefix
        keys = await redis.call("keys", prefix + "rl:*")
        self.assertIn(f"{prefix}rl:register:ip:127.0.0.1", keys)
        self.assertFalse(self.server.services.ratelimiter.using_fallback)


class RateLimitRedisDownTests(RateLimitTestsMixin, ServerTestCase):
    """Redis configured but nothing listening: every request is answered from memory."""

    def config_for_test(self, data_dir: str) -> Config:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
        probe.close()
        # A short timeout: start-up waits four of them for Redis before going on without it.
        return test_config(data_dir, ratelimits=LIMITS, redis={"url": f"redis://127.0.0.1:{free}/0", "timeout": "0.1s"})

    @inline
    async def test_readyz_says_redis_is_down_but_the_node_stays_ready_and_serves(self) -> None:
        response = await treq.get(self.server.url + "/readyz", persistent=False)
        self.assertEqual(response.code, 200, "a Redis outage alone must not take every node out of the balancer")
        self.assertEqual(await response.json(), {"database": True, "redis": False, "status": "degraded"})
        response = await treq.get(self.server.url + "/healthz", persistent=False)
        self.assertEqual((response.code, await response.json()), (200, {"status": "ok", "version": umoc.__version__}))
        _, client = await self.connected_user("alice")
        self.assertEqual((await client.call("ping", {"timestamp": 1}))["timestamp"], 1)
        self.assertTrue(self.server.services.ratelimiter.using_fallback)


#: A bucket of ten that refills too slowly for a test to see it: the counts of answers do not depend on its speed.
SLOW_TEN = {"rate": 10, "per": "3600s", "burst": 10}


class AccountGuessingAcrossNodesTests(ClusterTestCase):
    """``ratelimits.login_account`` and the clients an account knows are shared by every node (Redis)."""

    async def login_at(self, node: Any, address: str, password: str) -> tuple[int, Any]:
        return await node.post(
            "/api/login", {"username": "alice", "password": password}, headers={"X-Forwarded-For": address}
        )

    @inline
    async def test_guesses_spread_over_nodes_share_one_bucket_and_the_owner_is_known_everywhere(self) -> None:
        # The default bucket (10 per 300 s) gains a token every 30 s: 40 logins on a loaded machine can take that
        # long.  Ten an hour keeps the count of answers the test's, not the machine's.
        config = {"server": {"trusted_proxies": ["127.0.0.1"]}, "ratelimits": {"login_account": SLOW_TEN}}
        a, b = [await self.start_node(self.node_config(**config)) for _ in range(2)]
        await a.register("alice")
        code, _ = await self.login_at(a, "198.51.100.7", "correct horse battery")
        self.assertEqual(code, 200)
        codes = [(await self.login_at((a, b)[n % 2], f"10.0.{n}.1", "wrong password!"))[0] for n in range(40)]
        self.assertLessEqual(codes.count(401), 10, codes)  # one bucket of 10 for both nodes
        self.assertEqual(codes.count(401) + codes.count(429), 40, codes)
        code, _ = await self.login_at(b, "198.51.100.7", "correct horse battery")
        self.assertEqual(code, 200, "the owner's address, known through Redis on the other node")


class CompanyBehindNatTests(ServerTestCase):
    """``ratelimits.trusted_networks``: a company behind one address logs in; guessing is as slow as ever."""

    COMPANY, OUTSIDE = "198.51.100.7", "203.0.113.9"
    config_overrides = {
        "server": {"trusted_proxies": ["127.0.0.1"]},
        "ratelimits": {
            "trusted_networks": ["198.51.100.0/24"],
            "connect": {"rate": 1, "per": "60s", "burst": 2},
            # The default (10 a minute) gains a token every 6 s: 28 logins before the outside ones take that long
            # on a loaded machine, and an eleventh outside login got in.
            "login": SLOW_TEN,
        },
        "engineio": {"max_sockets_per_ip": 2},
    }

    async def post_from(self, address: str, path: str, name: str, password: str = "correct horse battery") -> int:
        code, _ = await self.server.post(
            path, {"username": name, "password": password}, headers={"X-Forwarded-For": address}
        )
        return code

    @inline
    async def test_many_people_register_and_log_in_from_one_trusted_address(self) -> None:
        names = [f"employee{n}" for n in range(14)]  # past the register and login bursts (10 each)
        registered = [await self.post_from(self.COMPANY, "/api/register", name) for name in names]
        self.assertEqual(set(registered), {201})
        logged_in = [await self.post_from(self.COMPANY, "/api/login", name) for name in names]
        self.assertEqual(set(logged_in), {200})
        # The same people from an address that is not trusted: the per-address bucket holds them.
        outside = [await self.post_from(self.OUTSIDE, "/api/login", name) for name in names]
        self.assertEqual(outside, [200] * 10 + [429] * 4)

    @inline
    async def test_a_trusted_address_still_guesses_one_password_slowly(self) -> None:
        await self.post_from(self.COMPANY, "/api/register", "alice")
        codes = [await self.post_from(self.COMPANY, "/api/login", "alice", "wrong password!") for _ in range(7)]
        self.assertEqual(codes, [401] * 5 + [429] * 2, "ratelimits.login_name, per name and address")
        self.assertEqual(await self.post_from(self.COMPANY, "/api/login", "bobby"), 401, "others are not held")

    @inline
    async def test_sockets_from_a_trusted_address_are_limited_per_user_not_per_address(self) -> None:
        logins = [await self.server.user(name) for name in ("alice", "bobby", "carol")]
        for login in logins:  # three users: past connect's burst (2) and max_sockets_per_ip (2)
            await self.socket_from(self.COMPANY, login)
        await self.socket_from(self.COMPANY, logins[0])
        with self.assertRaises(socketio.exceptions.ConnectionError):
            await self.socket_from(self.COMPANY, logins[0])  # alice's own connect bucket is spent
        await self.socket_from(self.OUTSIDE, logins[1])
        await self.socket_from(self.OUTSIDE, logins[2])
        with self.assertRaises(socketio.exceptions.ConnectionError):
            await self.socket_from(self.OUTSIDE, logins[0])

    async def socket_from(self, address: str, login: dict[str, Any]) -> socketio.Client:
        client = socketio.Client(reconnection=False)
        self.addCleanup(blocking, client.disconnect)
        await blocking(
            client.connect,
            self.server.url,
            headers={"X-Forwarded-For": address},
            auth={"sessionID": login["sessionID"], "token": login["token"]},
            transports=["websocket"],
            wait_timeout=10,
        )
        return client
