"""``async def`` trial tests, blocking calls off the reactor thread, and waiting for a condition."""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from typing import Any, Callable, Coroutine

from twisted.internet import defer, reactor, threads

__all__ = ["blocking", "eventually", "inline", "sleep"]


def inline(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., defer.Deferred]:
    """Let a trial test method be ``async def``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred:
        return defer.ensureDeferred(fn(*args, **kwargs))

    return wrapper


def blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
    """Run a blocking client call off the reactor thread."""
    return threads.deferToThread(fn, *args, **kwargs)


def sleep(seconds: float) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def eventually(probe: Callable[[], Any], expected: Any = True, tries: int = 100, interval: float = 0.02) -> Any:
    """Poll ``probe`` (a plain or async callable) until it returns ``expected``; the last value either way.

    For conditions another process or thread brings about (Redis, a
    client's threads), where there is no Deferred to wait on.
    """
    value = None
    for _ in range(tries):
        value = probe()
        if isinstance(value, Awaitable):
            value = await value
        if value == expected:
            return value
        await sleep(interval)
    return value
