"""The epoll reactor's dispatch of ready sockets, without a log context built through four calls per event.

Twisted's `EPollReactor.doPoll` hands each ready descriptor to
``_doReadOrWrite`` through ``log.callWithLogger``: ``logPrefix()``, then
``callWithContext`` copies the current log context and merges
``{"system": prefix}`` into the copy, then ``context.call`` finds the
thread's context tracker and pushes the copy for the call, each a Python
call of its own, and a ``try`` around it all.  That is about 1 us per ready
socket (timeit on this project's machine); an ack of a small event costs
the whole server 11-12 us, so a tenth of it went to building a dict that
only legacy log events (``twisted.python.log``) ever read.  Measured with
``bench/compare`` (server pinned, 100 clients each waiting for its ack,
three pairs alternating): 11.5-12.9 us of server CPU per ack before,
10.4-10.5 after; acks/s 77,000-86,000 before, 93,900-95,400 after
(bench/README).

`install` gives one `EPollReactor` a ``doIteration`` that does the same
work with less: the same ``epoll`` call and ``_doReadOrWrite`` per ready
descriptor, the same ``{"system": prefix}`` log context pushed on the same
context stack while it runs (legacy log events raised in a read, such as
Twisted's "Unhandled Error", still name the connection), and the same
``log.err`` for anything that escapes (``_doReadOrWrite`` catches and logs
its own errors first, as before).  Each descriptor's context is built once,
from its ``logPrefix()`` at its first event (a connection's prefix is fixed
when it is accepted), and kept while the descriptor lives.

Only the process twistd runs installs it (`umoc.tap.TwistdService`, which
also settles the garbage collector), once, on the reactor it runs; a test
process's reactor and any other kind (select, poll, asyncio) keep Twisted's.
"""

from __future__ import annotations

import errno
import weakref
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.python import context, log
from twisted.python.log import ILogContext

__all__ = ["install", "installed"]


def installed(reactor: Any) -> bool:
    """Whether `install` gave this reactor its dispatch."""
    return isinstance(getattr(reactor, "doIteration", None), _ReadyDispatch)


def install(reactor: Any) -> bool:
    """Give an `EPollReactor` the lighter dispatch; False (nothing changed) for any other reactor, or twice."""
    if not isinstance(reactor, EPollReactor) or installed(reactor):
        return False
    reactor.doIteration = _ReadyDispatch(reactor)  # type: ignore[method-assign]  # this one reactor, not the class
    return True


class _ReadyDispatch:
    """``doIteration(timeout)`` of one `EPollReactor`: poll once, dispatch each ready descriptor."""

    __slots__ = ("_poller", "_selectables", "_dispatch", "_contexts")

    def __init__(self, reactor: EPollReactor) -> None:
        self._poller = reactor._poller
        self._selectables: dict[int, Any] = reactor._selectables
        self._dispatch = reactor._doReadOrWrite
        #: fd -> (the descriptor, weakly; the log context below; the context pushed for it).
        self._contexts: dict[int, tuple[weakref.ref[Any], dict[str, Any], dict[Any, Any]]] = {}

    def __call__(self, timeout: float | None) -> None:
        selectables = self._selectables
        try:
            # As many events as descriptors watched, waiting at most ``timeout`` (None: until one is ready).
            events = self._poller.poll(-1 if timeout is None else timeout, len(selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        if not events:
            return
        dispatch, contexts = self._dispatch, self._contexts
        # The reactor thread's context stack, as `log.callWithLogger` pushes on it; the context below ours.
        stack = context.theContextTracker.currentContext().contexts
        outer = context.get(ILogContext)
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:  # removed by an earlier descriptor's callback in this same poll
                continue
            known = contexts.get(fd)
            if known is not None and known[0]() is selectable and known[1] is outer:
                pushed = known[2]
            else:
                pushed = self._context_for(fd, selectable, outer)
            stack.append(pushed)
            try:
                dispatch(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:  # noqa: BLE001 (as `log.callWithLogger`: logged, the loop goes on)
                log.err(system=pushed[ILogContext]["system"])
            finally:
                stack.pop()

    def _context_for(self, fd: int, selectable: Any, outer: dict[str, Any]) -> dict[Any, Any]:
        """The log context a descriptor's events run in, ``{"system": its logPrefix()}``: kept for its next events.

        Kept by descriptor number, holding the descriptor weakly: a closed
        connection is not kept alive by it, and a new one on the same number
        gets its own.  A descriptor that takes no weak reference is asked
        again each time, as Twisted does.
        """
        try:
            prefix = selectable.logPrefix()
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 (as `log.callWithLogger`)
            prefix = "(buggy logPrefix method)"
            log.err(system=prefix)
        pushed = {ILogContext: {**outer, "system": prefix}}
        try:
            self._contexts[fd] = (weakref.ref(selectable), outer, pushed)
        except TypeError:
            self._contexts.pop(fd, None)
        return pushed
