"""``async def`` trial tests, blocking calls off the reactor thread, and waiting for a condition."""

from __future__ import annotations

import functools
import time
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


async def eventually(
    probe: Callable[[], Any], expected: Any = True, timeout: float = 15.0, interval: float = 0.02
) -> Any:
    """Poll ``probe`` (a plain or async callable) until it returns ``expected``; the last value either way.

    For conditions another process or thread brings about (Redis, a
    client's threads), where there is no Deferred to wait on.  The wait is
    wall-clock ``timeout`` seconds, not a number of tries: on a loaded machine
    (CI runs the suite two at a time beside other work) each try and each
    ``interval`` may take far longer than asked, and a count of tries ran out
    in under the time the condition needed.  A condition that holds returns at
    once, so a generous timeout costs passing tests nothing.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if isinstance(value, Awaitable):
            value = await value
        if value == expected or time.monotonic() >= deadline:
            return value
        await sleep(interval)
