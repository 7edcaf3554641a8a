"""Token buckets, one per (kind of action, user or IP).

``can_do_action(kind, key)`` answers ``(allowed, retry_after_seconds)`` the
way Synapse's ``Ratelimiter`` does.  `MemoryRatelimiter` keeps buckets in a
dict pruned as it is used; the Redis limiter shares the interface so that
every node sees the same buckets.
"""

from __future__ import annotations

import math
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from umoc.config import RateLimit, RateLimitsConfig

__all__ = ["MemoryRatelimiter", "Ratelimiter", "take_token"]


class Ratelimiter(Protocol):
    def can_do_action(self, kind: str, key: str) -> defer.Deferred[tuple[bool, float]]: ...


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

    def __init__(self, clock: IReactorTime, settings: RateLimitsConfig) -> None:
        self._clock = clock
        self._settings = settings
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._calls = 0

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
