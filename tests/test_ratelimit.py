"""Token buckets: in memory, in Redis (one Lua script), and the failover between them."""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests.support.databases import NO_REDIS, REDIS_URL
from tests.support.deferreds import eventually, inline, sleep
from umoc.cluster.redisclient import RedisClient
from umoc.config import RateLimit, RateLimitsConfig, parse_redis_url
from umoc.ratelimit import FailoverRatelimiter, MemoryRatelimiter, RedisRatelimiter, TrustedNetworks, take_token

SETTINGS = RateLimitsConfig(messages=RateLimit(rate=2, per=1, burst=3))


class TrustedNetworksTests(unittest.TestCase):
    def test_addresses_in_the_networks_are_trusted_and_others_not(self) -> None:
        networks = TrustedNetworks(("10.0.0.0/8", "203.0.113.7", "2001:db8::/32"))
        for address in ("10.1.2.3", "203.0.113.7", "2001:db8::1", "::ffff:10.9.9.9", "10.0.0.1"):
            self.assertIn(address, networks)
        for address in ("11.0.0.1", "203.0.113.8", "2001:db9::1", "::ffff:11.0.0.1", "not an address", ""):
            self.assertNotIn(address, networks)

    def test_no_networks_trust_nobody(self) -> None:
        self.assertFalse(TrustedNetworks(()))
        self.assertNotIn("127.0.0.1", TrustedNetworks(()))


class TakeTokenTests(unittest.TestCase):
    def test_full_bucket_allows_burst_then_refuses_with_retry_after(self) -> None:
        limit = RateLimit(rate=2, per=1, burst=3)
        tokens, updated = 3.0, 0.0
        answers = []
        for _ in range(4):
            allowed, tokens, retry = take_token(tokens, updated, 0.0, limit)
            answers.append((allowed, retry))
        self.assertEqual(answers, [(True, 0.0)] * 3 + [(False, 0.5)])

    def test_bucket_refills_at_rate_up_to_burst(self) -> None:
        limit = RateLimit(rate=2, per=1, burst=3)
        allowed, tokens, _ = take_token(0.0, 0.0, 100.0, limit)
        self.assertTrue(allowed)
        self.assertEqual(tokens, 2.0)


class MemoryRatelimiterTests(unittest.TestCase):
    def test_separate_keys_have_separate_buckets_and_time_refills(self) -> None:
        clock = Clock()
        limiter = MemoryRatelimiter(clock, SETTINGS)
        results = [limiter.check_now("messages", "user:1") for _ in range(4)]
        self.assertEqual([r[0] for r in results], [True, True, True, False])
        self.assertEqual(results[-1][1], 0.5)
        self.assertTrue(limiter.check_now("messages", "user:2")[0])
        clock.advance(0.5)
        self.assertTrue(limiter.check_now("messages", "user:1")[0])

    def test_disabled_limits_allow_everything(self) -> None:
        limiter = MemoryRatelimiter(Clock(), RateLimitsConfig(enabled=False, messages=RateLimit(1, 1, 1)))
        self.assertTrue(all(limiter.check_now("messages", "k")[0] for _ in range(100)))


class RememberedClientsTests(unittest.TestCase):
    """Marks that exempt a client from a bucket: they expire, and memory keeps a bounded number."""

    def test_a_mark_counts_for_its_kind_and_key_until_it_expires(self) -> None:
        clock = Clock()
        limiter = MemoryRatelimiter(clock, SETTINGS)
        self.assertFalse(self.successResultOf(limiter.remembered("known", ["alice|ip:1", "alice|dev:x"])))
        self.successResultOf(limiter.remember("known", "alice|dev:x", 60))
        self.assertTrue(self.successResultOf(limiter.remembered("known", ["alice|ip:1", "alice|dev:x"])))
        self.assertFalse(limiter.remembered_now("other", ["alice|dev:x"]))
        clock.advance(60)
        self.assertFalse(limiter.remembered_now("known", ["alice|dev:x"]))

    def test_memory_keeps_the_newest_marks_only(self) -> None:
        limiter = MemoryRatelimiter(Clock(), SETTINGS)
        limiter.MAX_REMEMBERED = 3
        for n in range(5):
            limiter.remember_now("known", f"k{n}", 60)
        self.assertEqual([limiter.remembered_now("known", [f"k{n}"]) for n in range(5)], [False] * 2 + [True] * 3)


# -- Redis --------------------------------------------------------------------


class HangingServer(protocol.Protocol):
    """Accepts a connection and never answers: a Redis that is stuck."""


async def wait_connected(client: RedisClient, timeout: float = 15.0) -> None:
    if not await eventually(lambda: client.connected, timeout=timeout):
        raise AssertionError("no Redis connection")


class RedisRatelimiterTests(unittest.TestCase):
    if not REDIS_URL:
        skip = NO_REDIS

    @inline
    async def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.prefix = f"umoc-test-{uuid.uuid4().hex}:"
        self.redis = RedisClient(REDIS_URL, reactor, 2.0)
        self.addCleanup(self.redis.close)
        await wait_connected(self.redis)
        self.limiter = RedisRatelimiter(self.redis, self.clock, SETTINGS, self.prefix)

    @inline
    async def test_redis_answers_exactly_like_take_token(self) -> None:
        memory = MemoryRatelimiter(self.clock, SETTINGS)
        for step in [0, 0, 0, 0, 0.2, 0.3, 0.01, 1.7, 0, 0, 0, 0, 10, 0]:
            self.clock.advance(step)
            got = await self.limiter.can_do_action("messages", "user:7")
            self.assertEqual(got, memory.check_now("messages", "user:7"))

    @inline
    async def test_bucket_key_uses_prefix_and_expires_by_itself(self) -> None:
        await self.limiter.can_do_action("messages", "user:7")
        key = f"{self.prefix}rl:messages:user:7"
        ttl = int(await self.redis.call("execute_command", "PTTL", key))
        # One token used at 2 per second: full again after 0.5 s, plus a second of slack.
        self.assertTrue(0 < ttl <= 1500, ttl)

    @inline
    async def test_a_mark_made_through_one_limiter_is_seen_by_another_and_expires(self) -> None:
        other = RedisRatelimiter(self.redis, self.clock, SETTINGS, self.prefix)
        self.assertFalse(await other.remembered("known", ["alice|ip:1"]))
        await self.limiter.remember("known", "alice|ip:1", 60)
        self.assertTrue(await other.remembered("known", ["bob|ip:1", "alice|ip:1"]))
        self.assertFalse(await other.remembered("known", ["bob|ip:1"]))
        self.assertFalse(await other.remembered("known", []))
        ttl = int(await self.redis.call("execute_command", "PTTL", f"{self.prefix}known:known:alice|ip:1"))
        self.assertTrue(59_000 < ttl <= 60_000, ttl)

    @inline
    async def test_two_limiters_on_one_redis_share_buckets(self) -> None:
        other = RedisRatelimiter(self.redis, self.clock, SETTINGS, self.prefix)
        answers = [await lim.can_do_action("messages", "user:1") for lim in (self.limiter, other) * 2]
        self.assertEqual([a[0] for a in answers], [True, True, True, False])


class FakeRedis:
    """Stands in for RedisClient in the failover logic tests."""

    def __init__(self) -> None:
        self.connected = True
        self.pings: list[defer.Deferred[bool]] = []

    def ping(self) -> defer.Deferred[bool]:
        d: defer.Deferred[bool] = defer.Deferred()
        self.pings.append(d)
        return d


class FlakyLimiter:
    """A primary limiter that fails while ``broken`` and counts its calls."""

    def __init__(self) -> None:
        self.broken = False
        self.calls = 0

    def can_do_action(self, kind: str, key: str) -> defer.Deferred[tuple[bool, float]]:
        self.calls += 1
        if self.broken:
            return defer.fail(ConnectionError("Redis went away"))
        return defer.succeed((True, 0.0))


class FailoverTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.redis = FakeRedis()
        self.primary = FlakyLimiter()
        self.memory = MemoryRatelimiter(self.clock, SETTINGS)
        self.limiter = FailoverRatelimiter(self.redis, self.primary, self.memory, self.clock)  # type: ignore[arg-type]
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def switches(self) -> list[str]:
        return [e["log_format"] for e in self.logged if "Redis" in e.get("log_format", "")]

    def answer(self) -> tuple[bool, float]:
        return self.successResultOf(self.limiter.can_do_action("messages", "user:1"))

    def test_error_answers_from_memory_in_the_same_request_and_logs_once(self) -> None:
        self.primary.broken = True
        answers = [self.answer() for _ in range(4)]
        self.assertEqual([a[0] for a in answers], [True, True, True, False])
        self.assertEqual(self.primary.calls, 1, "after the first failure Redis is not asked again")
        self.assertEqual(len(self.switches()), 1)

    def test_goes_back_to_redis_once_a_probe_answers(self) -> None:
        self.primary.broken = True
        self.answer()
        self.assertEqual(self.redis.pings, [])
        self.clock.advance(1.5)
        self.answer()
        self.assertEqual(len(self.redis.pings), 1, "one probe, not one per request")
        self.answer()
        self.assertEqual(len(self.redis.pings), 1)
        self.primary.broken = False
        self.redis.pings[0].callback(True)
        self.assertFalse(self.limiter.using_fallback)
        calls = self.primary.calls
        self.answer()
        self.assertEqual(self.primary.calls, calls + 1)
        self.assertEqual(len(self.switches()), 2, "one line when leaving Redis, one when returning")

    def test_marks_are_kept_in_memory_too_and_read_from_it_while_redis_is_away(self) -> None:
        remembered: list[str] = []
        self.primary.remember = lambda kind, key, ttl: defer.succeed(remembered.append(key))  # type: ignore[attr-defined]
        self.primary.remembered = lambda kind, keys: defer.succeed(False)  # type: ignore[attr-defined]
        self.successResultOf(self.limiter.remember("known", "alice|ip:1", 60))
        self.assertEqual(remembered, ["alice|ip:1"], "written to Redis for the other nodes")
        self.assertTrue(self.successResultOf(self.limiter.remembered("known", ["alice|ip:1"])))
        self.redis.connected = False
        self.assertTrue(self.successResultOf(self.limiter.remembered("known", ["alice|ip:1"])))
        self.assertFalse(self.successResultOf(self.limiter.remembered("known", ["bob|ip:1"])))
        self.successResultOf(self.limiter.remember("known", "bob|ip:1", 60))
        self.assertTrue(self.successResultOf(self.limiter.remembered("known", ["bob|ip:1"])))

    def test_no_connection_skips_redis_entirely(self) -> None:
        self.redis.connected = False
        self.assertTrue(self.answer()[0])
        self.assertEqual(self.primary.calls, 0)
        self.assertTrue(self.limiter.using_fallback)


class FailoverWithRealSocketsTests(unittest.TestCase):
    """The real client against a Redis that is down, or stuck."""

    @inline
    async def test_redis_down_never_fails_a_request(self) -> None:
        port = reactor.listenTCP(0, protocol.Factory.forProtocol(HangingServer), interface="127.0.0.1")
        free = port.getHost().port
        await port.stopListening()  # nothing listens there now: connection refused
        clock = Clock()
        redis = RedisClient(f"redis://127.0.0.1:{free}/0", reactor, 0.5)
        self.addCleanup(redis.close)
        limiter = FailoverRatelimiter(
            redis, RedisRatelimiter(redis, clock, SETTINGS, "x:"), MemoryRatelimiter(clock, SETTINGS), clock
        )
        d = limiter.can_do_action("messages", "user:1")
        self.assertEqual(self.successResultOf(d), (True, 0.0))

    @inline
    async def test_stuck_redis_costs_one_request_the_timeout_and_no_more(self) -> None:
        port = reactor.listenTCP(0, protocol.Factory.forProtocol(HangingServer), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        clock = Clock()
        redis = RedisClient(f"redis://127.0.0.1:{port.getHost().port}", clock, 0.5)
        self.addCleanup(redis.close)
        await wait_connected(redis)
        limiter = FailoverRatelimiter(
            redis, RedisRatelimiter(redis, clock, SETTINGS, "x:"), MemoryRatelimiter(clock, SETTINGS), clock
        )
        d = limiter.can_do_action("messages", "user:1")
        self.assertNoResult(d)
        clock.advance(0.5)
        self.assertEqual(self.successResultOf(d), (True, 0.0))
        self.assertEqual(self.successResultOf(limiter.can_do_action("messages", "user:1")), (True, 0.0))


class Cuttable:
    """A TCP proxy in front of the real Redis that a test can cut and restore (an outage)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        from twisted.protocols.portforward import ProxyFactory

        self.factory = ProxyFactory(target_host, target_port)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.number = self.port.getHost().port
        self.servers: list[Any] = []
        build = self.factory.buildProtocol

        def track(addr: Any) -> Any:
            protocol = build(addr)
            self.servers.append(protocol)
            return protocol

        self.factory.buildProtocol = track

    async def cut(self) -> None:
        await self.port.stopListening()
        for server in self.servers:
            server.transport.abortConnection()
        self.servers.clear()

    def restore(self) -> None:
        self.port = reactor.listenTCP(self.number, self.factory, interface="127.0.0.1")

    async def close(self) -> None:
        await self.cut()


class RedisOutageTests(unittest.TestCase):
    if not REDIS_URL:
        skip = NO_REDIS

    @inline
    async def test_outage_switches_to_memory_and_recovery_switches_back(self) -> None:
        target = parse_redis_url(REDIS_URL)
        proxy = Cuttable(target.host, target.port)
        self.addCleanup(proxy.close)
        prefix = f"umoc-test-{uuid.uuid4().hex}:"
        redis = RedisClient(f"redis://127.0.0.1:{proxy.number}/{target.db}", reactor, 0.5)
        self.addCleanup(redis.close)
        await wait_connected(redis)
        slow = RateLimitsConfig(messages=RateLimit(rate=1, per=60, burst=3))  # no refill during the test
        limiter = FailoverRatelimiter(
            redis,
            RedisRatelimiter(redis, reactor, slow, prefix),
            MemoryRatelimiter(reactor, slow),
            reactor,
            probe_interval=0.1,
        )
        self.assertEqual(await limiter.can_do_action("messages", "user:1"), (True, 0.0))
        self.assertFalse(limiter.using_fallback)

        await proxy.cut()
        await sleep(0.05)
        for _ in range(3):
            allowed, _ = await limiter.can_do_action("messages", "user:1")
            self.assertTrue(allowed)
        self.assertTrue(limiter.using_fallback)

        proxy.restore()
        await wait_connected(redis, timeout=10)

        async def on_fallback() -> bool:
            await limiter.can_do_action("messages", "user:2")
            return limiter.using_fallback

        await eventually(on_fallback, False, interval=0.05)
        self.assertFalse(limiter.using_fallback)
        # Back on Redis: user:1's bucket there still holds the one token taken before the outage.
        allowed = [(await limiter.can_do_action("messages", "user:1"))[0] for _ in range(3)]
        self.assertEqual(allowed, [True, True, False])
