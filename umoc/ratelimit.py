"""Token buckets, one per (kind of action, user or IP), and remembered clients.

``can_do_action(kind, key)`` answers ``(allowed, retry_after_seconds)`` the
way Synapse's ``Ratelimiter`` does.  `MemoryRatelimiter` keeps buckets in a
dict pruned as it is used; the Redis limiter shares the interface so that
every node sees the same buckets.

``remember(kind, key, ttl)`` and ``remembered(kind, keys)`` keep the other
half of a limit that must not lock owners out: which clients are exempt
from a bucket (OWASP's "device cookies": a client that logged into an
account before is not throttled with the strangers guessing at it; see
``umoc.web.auth``).  In Redis too, so that a login on one node counts on all.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import OrderedDict
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from umoc.config import RateLimit, RateLimitsConfig


class ScriptClient(Protocol):
    """What the Redis back-end needs of a client (``umoc.cluster.redisclient.RedisClient``)."""

    @property
    def connected(self) -> bool: ...

    def eval(self, script: str, keys: list[str], args: list[Any]) -> defer.Deferred[Any]: ...

    def ping(self) -> defer.Deferred[Any]: ...


__all__ = [
    "FailoverRatelimiter",
    "MemoryRatelimiter",
    "Ratelimiter",
    "RedisRatelimiter",
    "TrustedNetworks",
    "bucket_key",
    "take_token",
    "trusted_networks",
]

log = Logger()


def bucket_key(prefix: str, kind: str, key: str) -> str:
    """The Redis key of ``kind``'s bucket for ``key``: one spelling for the limiter and ``umoc-admin``."""
    return f"{prefix}rl:{kind}:{key}"


class Ratelimiter(Protocol):
    def can_do_action(self, kind: str, key: str) -> defer.Deferred[tuple[bool, float]]: ...

    def remember(self, kind: str, key: str, ttl: float) -> defer.Deferred[None]: ...

    def remembered(self, kind: str, keys: list[str]) -> defer.Deferred[bool]: ...


def take_token(tokens: float, updated: float, now: float, limit: RateLimit) -> tuple[bool, float, float]:
    """One step of a token bucket: ``(allowed, tokens_left, retry_after)``.

    The bucket refills at ``rate/per`` tokens a second up to ``burst``.
    Pure, so the Redis script and the in-memory limiter agree by construction
    (the Lua script is this function transcribed).
    """
    refill = limit.rate / limit.per
    tokens = min(float(limit.burst), tokens + max(0.0, now - updated) * refill)
    if tokens >= 1.0:
        return True, tokens - 1.0, 0.0
    return False, tokens, math.ceil(((1.0 - tokens) / refill) * 1000) / 1000


class MemoryRatelimiter:
    """Buckets in this process: the single-node default and the fallback when Redis is away."""

    PRUNE_EVERY = 10_000
    #: Remembered clients kept at most (the oldest marks go first); each is a few dozen bytes.
    MAX_REMEMBERED = 100_000

    def __init__(self, clock: IReactorTime, settings: RateLimitsConfig) -> None:
        self._clock = clock
        self._settings = settings
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._calls = 0
        #: (kind, key) -> when the mark expires, oldest mark first.
        self._remembered: OrderedDict[tuple[str, str], float] = OrderedDict()

    def limit_for(self, kind: str) -> RateLimit:
        return getattr(self._settings, kind)

    def check_now(self, kind: str, key: str) -> tuple[bool, float]:
        if not self._settings.enabled:
            return True, 0.0
        limit = self.limit_for(kind)
        now = self._clock.seconds()
        tokens, updated = self._buckets.get((kind, key), (float(limit.burst), now))
        allowed, tokens, retry_after = take_token(tokens, updated, now, limit)
        self._buckets[(kind, key)] = (tokens, now)
        self._calls += 1
        if self._calls >= self.PRUNE_EVERY:
            self._prune(now)
        return allowed, retry_after

    def can_do_action(self, kind: str, key: str) -> defer.Deferred[tuple[bool, float]]:
        return defer.succeed(self.check_now(kind, key))

    def remember_now(self, kind: str, key: str, ttl: float) -> None:
        self._remembered.pop((kind, key), None)
        self._remembered[(kind, key)] = self._clock.seconds() + ttl
        while len(self._remembered) > self.MAX_REMEMBERED:
            self._remembered.popitem(last=False)

    def remembered_now(self, kind: str, keys: list[str]) -> bool:
        now = self._clock.seconds()
        for key in keys:
            expires = self._remembered.get((kind, key))
            if expires is not None and expires > now:
                return True
            if expires is not None:
                del self._remembered[(kind, key)]
        return False

    def remember(self, kind: str, key: str, ttl: float) -> defer.Deferred[None]:
        self.remember_now(kind, key, ttl)
        return defer.succeed(None)

    def remembered(self, kind: str, keys: list[str]) -> defer.Deferred[bool]:
        return defer.succeed(self.remembered_now(kind, keys))

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled completely: they hold no information."""
        self._calls = 0
        full = []
        for (kind, key), (tokens, updated) in self._buckets.items():
            limit = self.limit_for(kind)
            if tokens + (now - updated) * limit.rate / limit.per >= limit.burst:
                full.append((kind, key))
        for item in full:
            del self._buckets[item]


#: `take_token` transcribed, plus storage: one bucket is a hash {t: tokens, u: updated}.
#: The key expires when the bucket would be full again, because a full bucket
#: holds no information; Redis forgets idle users by itself.
#: KEYS[1] bucket; ARGV now, refill per second, burst.
TAKE_TOKEN_LUA = """
local now = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local saved = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = tonumber(saved[1])
local updated = tonumber(saved[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * refill)
local allowed = 0
local retry_after = 0
if tokens >= 1 then
  allowed = 1
  tokens = tokens - 1
else
  retry_after = math.ceil(((1 - tokens) / refill) * 1000) / 1000
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'u', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / refill * 1000) + 1000)
return {allowed, string.format('%.17g', retry_after)}
"""


#: KEYS: marks; 1 when any of them exists.
ANY_EXISTS_LUA = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    return 1
  end
end
return 0
"""

#: KEYS[1] mark; ARGV[1] its lifetime in milliseconds.
REMEMBER_LUA = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 1
"""


class RedisRatelimiter:
    """Buckets shared by every node; one atomic script per check.

    ``now`` comes from this node's clock (not Redis's ``TIME``) so the
    answers match `take_token` exactly and tests can drive time; nodes are
    expected to run NTP.
    """

    def __init__(self, redis: ScriptClient, clock: IReactorTime, settings: RateLimitsConfig, prefix: str) -> None:
        self._redis = redis
        self._clock = clock
        self._settings = settings
        self._prefix = prefix

    def can_do_action(self, kind: str, key: str) -> defer.Deferred[tuple[bool, float]]:
        if not self._settings.enabled:
            return defer.succeed((True, 0.0))
        limit: RateLimit = getattr(self._settings, kind)
        args = [repr(self._clock.seconds()), repr(limit.rate / limit.per), str(limit.burst)]
        d = self._redis.eval(TAKE_TOKEN_LUA, [bucket_key(self._prefix, kind, key)], args)
        d.addCallback(_bucket_reply)
        return d

    def remember(self, kind: str, key: str, ttl: float) -> defer.Deferred[None]:
        d = self._redis.eval(REMEMBER_LUA, [f"{self._prefix}known:{kind}:{key}"], [str(max(1, int(ttl * 1000)))])
        d.addCallback(lambda _: None)
        return d

    def remembered(self, kind: str, keys: list[str]) -> defer.Deferred[bool]:
        if not keys:
            return defer.succeed(False)
        d = self._redis.eval(ANY_EXISTS_LUA, [f"{self._prefix}known:{kind}:{key}" for key in keys], [])
        d.addCallback(lambda reply: int(reply) == 1)
        return d


def _bucket_reply(reply: Any) -> tuple[bool, float]:
    allowed, retry_after = reply
    if isinstance(retry_after, bytes):
        retry_after = retry_after.decode("ascii")
    return int(allowed) == 1, float(retry_after)


class FailoverRatelimiter:
    """Redis while it answers, this node's memory while it does not.

    No request fails or waits long because Redis is away: the request that
    finds Redis broken (an error, or no answer within ``redis.timeout``) is
    answered from memory, and so is every request after it without even
    asking Redis, while a background PING (at most one every
    ``probe_interval`` seconds) watches for Redis to come back.  Each switch
    is logged once.  The memory buckets start full, so a failover briefly
    allows a burst more than the limit: the price of never refusing service
    because of Redis.
    """

    def __init__(
        self,
        redis: ScriptClient,
        primary: Ratelimiter,
        fallback: MemoryRatelimiter,
        clock: IReactorTime,
        probe_interval: float = 1.0,
    ) -> None:
        self._redis = redis
        self._primary = primary
        self.fallback = fallback
        self._clock = clock
        self._probe_interval = probe_interval
        self.using_fallback = False
        self._probing = False
        self._last_probe = float("-inf")

    def can_do_action(self, kind: str, key: str) -> defer.Deferred[tuple[bool, float]]:
        if self.using_fallback or not self._redis.connected:
            self._switch_to_fallback("no connection")
            self._maybe_probe()
            return defer.succeed(self.fallback.check_now(kind, key))
        d = defer.maybeDeferred(self._primary.can_do_action, kind, key)

        def failed(failure: Any) -> tuple[bool, float]:
            self._switch_to_fallback(failure.getErrorMessage() or failure.type.__name__)
            return self.fallback.check_now(kind, key)

        d.addErrback(failed)
        return d

    def remember(self, kind: str, key: str, ttl: float) -> defer.Deferred[None]:
        """Kept in this node's memory as well, so that it still counts here while Redis is away."""
        self.fallback.remember_now(kind, key, ttl)
        if self.using_fallback or not self._redis.connected:
            self._maybe_probe()
            return defer.succeed(None)
        d = defer.maybeDeferred(self._primary.remember, kind, key, ttl)

        def failed(failure: Failure) -> None:
            self._switch_to_fallback(failure.getErrorMessage() or type(failure.value).__name__)

        d.addErrback(failed)
        return d

    def remembered(self, kind: str, keys: list[str]) -> defer.Deferred[bool]:
        """In this node's memory, else in Redis while it answers."""
        if self.fallback.remembered_now(kind, keys):
            return defer.succeed(True)
        if self.using_fallback or not self._redis.connected:
            self._switch_to_fallback("no connection")
            self._maybe_probe()
            return defer.succeed(False)
        d = defer.maybeDeferred(self._primary.remembered, kind, keys)

        def failed(failure: Any) -> bool:
            self._switch_to_fallback(failure.getErrorMessage() or failure.type.__name__)
            return False

        d.addErrback(failed)
        return d

    def _switch_to_fallback(self, why: str) -> None:
        if not self.using_fallback:
            self.using_fallback = True
            self._last_probe = self._clock.seconds()
            log.warn("Redis unavailable for rate limits ({why}); using in-memory buckets", why=why)

    def _maybe_probe(self) -> None:
        now = self._clock.seconds()
        if self._probing or now - self._last_probe < self._probe_interval or not self._redis.connected:
            return
        self._probing = True
        self._last_probe = now
        d = self._redis.ping()

        def answered(ok: bool) -> None:
            if ok and self.using_fallback:
                self.using_fallback = False
                log.info("Redis is back; rate limits use Redis again")

        def done(result: Any) -> None:
            self._probing = False

        d.addCallbacks(answered, lambda f: None)
        d.addBoth(done)


class TrustedNetworks:
    """``ratelimits.trusted_networks``: client addresses that per-address limits do not count.

    ``address in networks`` for a client address as the gate resolved it.

    A company of thousands behind one egress address looks, to a per-address
    limit, like one very busy client: at ``ratelimits.login``'s 10 a minute,
    5,000 people need eight hours to log in.  Addresses in these networks skip
    every limit keyed by the client address alone (``login``, ``register``,
    ``connect``, ``engineio.max_sockets_per_ip``); limits keyed by the user or
    account still apply to them, so guessing a password from inside is as slow
    as ever (``login_name`` per name and address, ``login_account`` per
    account, and ``connect`` is taken per user instead of per address).

    Not to be confused with ``server.trusted_proxies``: that list says whose
    ``X-Forwarded-For`` is believed, i.e. *which* address a request comes
    from; this one is matched against that resolved client address and says
    how much that client may do.  A proxy's own address belongs in
    ``trusted_proxies``, never here (every client would then be exempt
    whenever the proxy's header was missing or not believed).
    """

    def __init__(self, cidrs: tuple[str, ...]) -> None:
        self._networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if not self._networks or not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:  # not an address at all (a Unix socket peer, a test's name): never trusted
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # "::ffff:10.0.0.1" on a dual-stack socket is 10.0.0.1
        return any(ip in network for network in self._networks)


@functools.lru_cache(maxsize=8)
def trusted_networks(cidrs: tuple[str, ...]) -> TrustedNetworks:
    """The parsed networks of ``ratelimits.trusted_networks`` (already validated by the config), once."""
    return TrustedNetworks(cidrs)
