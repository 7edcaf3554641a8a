"""Abuse resistance end to end: rate limits (memory, Redis, Redis down) and transport limits.

Raw WebSocket tests use websocket-client directly, so they can send what a
well-behaved Socket.IO client never would: oversized frames, deep JSON,
foreign origins, and a socket that never reads.
"""

from __future__ import annotations

import dataclasses
import socket
import uuid
from typing import Any

import socketio
import treq
import websocket
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from tests.fakes import FakeTransport
from tests.support import NO_REDIS, REDIS_URL, ServerTestCase, blocking, inline, sleep, test_config
from umoc.config import Config, EngineIOConfig
from umoc.transport.engine import EngineServer
from umoc.transport.socketio import SocketIOConnection

# -- rate limits ---------------------------------------------------------------

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
        self.assertEqual(set(refused), {"error", "retry_after"})
        error = await client.expect("error")
        self.assertEqual(set(error), {"message", "retry_after"})
        self.assertTrue(0 < error["retry_after"] <= 60, error)

    @inline
    async def test_connects_over_the_per_ip_limit_get_connect_error(self) -> None:
        login, _ = await self.connected_user("alice")
        for _ in range(2):
            await self.connect(login)
        ws = await blocking(open_ws, self.server.port, sessionID=login["sessionID"], token=login["token"])
        self.addCleanup(blocking, ws.close)
        await blocking(ws.send, "40")
        self.assertEqual(await blocking(ws.recv), '44{"message":"Too many connection attempts; try again later"}')

    @inline
    async def test_login_over_the_limit_is_429_with_retry_after(self) -> None:
        await self.server.register("alice")
        for _ in range(2):
            await self.server.login("alice")
        response = await treq.post(self.server.url + "/api/login", json={"username": "alice", "password": "nope-nope"},
                                   persistent=False)
        self.assertEqual(response.code, 429)
        self.assertEqual((await response.json()).keys(), {"error"})
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
        self.assertEqual((response.code, await response.json()), (200, {"status": "ok"}))
        _, client = await self.connected_user("alice")
        self.assertEqual((await client.call("ping", {"timestamp": 1}))["timestamp"], 1)
        self.assertTrue(self.server.services.ratelimiter.using_fallback)


# -- raw WebSocket helpers ------------------------------------------------------


def ws_url(port: int, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"EIO": "4", "transport": "websocket", **query}.items())
    return f"ws://127.0.0.1:{port}/socket.io/?{params}"


def open_ws(port: int, origin: str | None = None, rcvbuf: int | None = None, **query: str) -> websocket.WebSocket:
    """Blocking: a raw WebSocket that has read the Engine.IO OPEN packet."""
    sockopt = [(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)] if rcvbuf else []
    ws = websocket.create_connection(
        ws_url(port, **query), timeout=10, origin=origin, suppress_origin=origin is None, sockopt=sockopt
    )
    opening = ws.recv()
    assert opening.startswith("0{"), opening
    return ws


def socketio_connect(ws: websocket.WebSocket) -> None:
    """Blocking: CONNECT on "/" (credentials are in the URL) and read until connection_successful."""
    ws.send("40")
    while True:
        frame = ws.recv()
        if frame.startswith("42") and "connection_successful" in frame:
            return
        assert not frame.startswith("44"), frame


def wait_closed(ws: websocket.WebSocket) -> int | None:
    """Blocking: read until the server closes; the close code, or None for a dropped TCP connection."""
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
    except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
        return None


class RawSocketTestCase(ServerTestCase):
    """Opens raw WebSockets to the test server, closed at cleanup."""

    def open(self, login: dict[str, Any] | None = None, **kwargs: Any) -> defer.Deferred:
        query = {"sessionID": login["sessionID"], "token": login["token"]} if login else {}
        d = blocking(open_ws, self.server.port, **kwargs, **query)
        d.addCallback(self._track)
        return d

    def _track(self, ws: websocket.WebSocket) -> websocket.WebSocket:
        self.addCleanup(blocking, ws.close)
        return ws


class TransportLimitTests(RawSocketTestCase):
    config_overrides = {
        "engineio": {
            "max_payload": "4K",
            "max_sockets_per_session": 2,
            "max_sockets_per_ip": 6,
            "max_buffered": "256K",
            "connect_timeout": "0.3s",
        },
    }

    @inline
    async def test_frame_over_max_payload_closes_only_that_connection(self) -> None:
        _, good = await self.connected_user("alice")
        ws = await self.open()
        await blocking(ws.send, "4" + "x" * 5000)
        self.assertEqual(await blocking(wait_closed, ws), 1009)
        self.assertEqual((await good.call("ping", {"timestamp": 7}))["timestamp"], 7)

    @inline
    async def test_json_nested_too_deeply_closes_that_connection_cleanly(self) -> None:
        login, good = await self.connected_user("alice")
        ws = await self.open(await self.server.login("alice"))
        await blocking(socketio_connect, ws)
        depth = self.server.services.config.messages.max_payload_depth + 10
        await blocking(ws.send, '42["ping",' + "[" * depth + "]" * depth + "]")
        self.assertEqual(await blocking(wait_closed, ws), 1000)
        self.assertEqual((await good.call("ping", {"timestamp": 8}))["timestamp"], 8)

    @inline
    async def test_sockets_per_session_are_limited(self) -> None:
        login, _ = await self.connected_user("alice")
        await self.connect(login)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            await self.connect(login)

    @inline
    async def test_sockets_per_ip_are_limited_with_429(self) -> None:
        for _ in range(6):
            await self.open()
        with self.assertRaises(websocket.WebSocketBadStatusException) as caught:
            await blocking(open_ws, self.server.port)
        self.assertEqual(caught.exception.status_code, 429)

    @inline
    async def test_socket_that_never_sends_connect_is_closed_after_connect_timeout(self) -> None:
        ws = await self.open()
        self.assertEqual(await blocking(wait_closed, ws), 1000)
        self.assertEqual(self.server.service.node.engine.sessions, {})

    @inline
    async def test_client_that_does_not_read_is_dropped_and_others_keep_getting_replies(self) -> None:
        slow_login = await self.server.user("slowpoke")
        ws = await self.open(slow_login, rcvbuf=4096)
        await blocking(socketio_connect, ws)  # from here on it never reads again
        fast_login, fast = await self.connected_user("quick")
        hub = self.server.services.hub
        slow_id, fast_id = slow_login["user_id"], fast_login["user_id"]
        chunk = "x" * 8192
        replies = 0
        for batch in range(400):
            if not hub.is_local(slow_id):
                break
            for _ in range(20):
                hub.emit_to_users([slow_id], "flood", chunk)
            await sleep(0.005)
            if batch % 10 == 0:
                self.assertEqual((await fast.call("ping", {"timestamp": batch}))["timestamp"], batch)
                replies += 1
        self.assertFalse(hub.is_local(slow_id), "the slow reader was never dropped")
        self.assertTrue(hub.is_local(fast_id))
        self.assertEqual((await fast.call("ping", {"timestamp": 1}))["timestamp"], 1)
        self.assertGreater(replies, 0)


class OriginTests(RawSocketTestCase):
    """(python-socketio's client sends its own Origin, so these run in a class of their own.)"""

    config_overrides = {"server": {"allowed_origins": ["https://chat.example"]}}

    @inline
    async def test_websocket_from_a_foreign_origin_is_403(self) -> None:
        with self.assertRaises(websocket.WebSocketBadStatusException) as caught:
            await blocking(open_ws, self.server.port, origin="https://evil.example")
        self.assertEqual(caught.exception.status_code, 403)
        await self.open(origin="https://chat.example")

    @inline
    async def test_api_from_a_foreign_origin_is_403_and_changes_nothing(self) -> None:
        body = {"username": "alice", "password": "correct horse battery"}
        code, answer = await self.server.post("/api/register", body, headers={"Origin": "https://evil.example"})
        self.assertEqual((code, answer), (403, {"error": "Origin not allowed"}))
        code, _ = await self.server.post("/api/register", body, headers={"Origin": "https://chat.example"})
        self.assertEqual(code, 201)
        code, _ = await self.server.post("/api/login", body)  # no Origin: not a browser
        self.assertEqual(code, 200)


# -- connect timeout with an injected clock --------------------------------------


class AcceptingApp:
    """Accepts CONNECT when told to; enough of a SocketApp for the deadline."""

    namespaces = frozenset({"/"})

    def __init__(self) -> None:
        self.pending: list[defer.Deferred] = []

    def authenticate(self, connection: Any, auth: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.pending.append(d)
        return d

    def on_connect(self, socket: Any) -> None:
        pass

    def on_event(self, *args: Any) -> None:
        pass

    def on_disconnect(self, socket: Any, reason: str) -> None:
        pass


class ConnectTimeoutTests(unittest.TestCase):
    def setUp(self) -> None:
        from umoc.transport.socketio import Identity

        self.identity = Identity(1, "alice", "s", 0.0)
        self.clock = Clock()
        self.app = AcceptingApp()
        settings = dataclasses.replace(EngineIOConfig(), connect_timeout=45, ping_interval=1000, ping_timeout=1000)
        self.server = EngineServer(self.clock, settings, lambda s: SocketIOConnection(s, self.app))

    def test_unauthenticated_session_closes_at_connect_timeout(self) -> None:
        session = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        self.clock.advance(44.9)
        self.assertFalse(session.closed)
        self.clock.advance(0.1)
        self.assertTrue(session.closed)
        self.assertEqual(self.server.sessions, {})

    def test_connect_still_being_checked_at_the_deadline_does_not_save_the_session(self) -> None:
        session = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        session.on_frame("40")
        self.clock.advance(45)
        self.assertTrue(session.closed)

    def test_session_left_with_no_socket_gets_a_new_deadline(self) -> None:
        session = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        session.on_frame("40")
        self.app.pending[0].callback(self.identity)
        self.clock.advance(100)
        session.on_frame("41")
        self.clock.advance(44)
        self.assertFalse(session.closed)
        self.clock.advance(1)
        self.assertTrue(session.closed)

    def test_accepted_session_outlives_the_deadline(self) -> None:
        session = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        session.on_frame("40")
        self.app.pending[0].callback(self.identity)
        self.clock.advance(900)  # well past the deadline, short of the first heartbeat
        self.assertFalse(session.closed)


# -- fairness: a flood is handled in batches ------------------------------------------


class BatchingTests(unittest.TestCase):
    """A connection with many frames buffered handles a batch per reactor turn, not reading meanwhile."""

    def setUp(self) -> None:
        from twisted.internet.testing import StringTransport

        from umoc.transport.gate import Gatekeeper
        from umoc.transport.websocket import EngineWebSocketFactory

        self.clock = Clock()
        engine = EngineServer(self.clock, EngineIOConfig(), lambda s: None)
        self.protocol = EngineWebSocketFactory(engine, Gatekeeper()).buildProtocol(None)
        self.protocol.transport = StringTransport()
        self.protocol.state = self.protocol.STATE_OPEN
        self.left = 0
        self.handled = 0

        def process_data() -> bool:
            # Stands in for Autobahn's frame parser: one step per call while frames are buffered.
            if self.left == 0:
                return False
            self.left -= 1
            self.handled += 1
            return True

        self.protocol.processData = process_data

    def next_turn(self) -> None:
        """Run the one pending call, as the next reactor iteration would (Clock.advance(0) runs them all)."""
        (call,) = self.clock.getDelayedCalls()
        self.clock.calls.remove(call)
        call.func(*call.args, **call.kw)

    def test_flood_is_handled_one_batch_per_turn_with_reading_paused(self) -> None:
        steps = self.protocol.STEPS_PER_TURN
        self.left = steps * 2 + 5
        self.protocol.consumeData()
        self.assertEqual(self.handled, steps)
        self.assertEqual(self.protocol.transport.producerState, "paused")
        self.next_turn()
        self.assertEqual(self.handled, steps * 2)
        self.assertEqual(self.protocol.transport.producerState, "paused")
        self.next_turn()
        self.assertEqual(self.handled, steps * 2 + 5)
        self.assertEqual(self.protocol.transport.producerState, "producing")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_few_frames_are_handled_at_once_without_pausing(self) -> None:
        self.left = 3
        self.protocol.consumeData()
        self.assertEqual(self.handled, 3)
        self.assertEqual(self.protocol.transport.producerState, "producing")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closing_cancels_the_next_batch(self) -> None:
        self.left = self.protocol.STEPS_PER_TURN * 3
        self.protocol.consumeData()
        self.protocol.onClose(False, 1006, None)
        self.assertEqual(self.clock.getDelayedCalls(), [])
