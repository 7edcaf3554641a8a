"""Admission for writes: past what the database commits in time, refuse at once instead of queueing.

Under open-loop load beyond capacity nothing else bounds a write's wait:
the group commit's queue (`umoc.storage.batching.BatchWriter`) and each
socket's event queue grow, and acknowledgements stretch to seconds before
the event deadline (``database.timeout``) finally answers ``timeout``.  A
client is better served by a quick "not now" it can retry than by a slow
"maybe".

The rule is measured by what a new write would suffer: the age of the
oldest write not yet answered by the group commit (`BatchWriter.oldest_wait`:
the first of a running batch, else the first queued), or how late the
reactor runs (`ReactorLag`: the node's own core is the bottleneck and frames
wait in the kernel to be read), whichever is larger; and for a socket
event, how long it has itself waited behind its socket's earlier events
(each socket's events run one after another, so under load most of an
ack's wait is there, where neither of the others sees it).  While it is past
``server.overload_wait`` every new write is refused at once, before any
database work, with::

    error / ack   {"message" | "error": "The server is overloaded; ...",
                   "code": "overloaded", "retry_after": seconds}
    HTTP          503, Retry-After: whole seconds, {"error": "The server is overloaded; ...",
                                                    "code": "overloaded"}

Why the oldest write's age and not the queue's length: it is what clients
feel, needs no estimate of a batch's time (which swings with the batch's
size, the fsync, a checkpoint), and it also catches a database that stopped
answering with nothing queued behind the stuck batch (a held lock, a silent
server), where a length would read zero.  Once writes are refused the
backlog drains; the first write answered after it falls under the bound
ends the refusals, so recovery needs no timer.  Writes outside the group
commit (a group's creation, contacts) are refused by the same rule: on
SQLite they share its one writing connection, on PostgreSQL its pool.

With several lanes (PostgreSQL) the most backed-up lane decides for every
write: the edge refuses before the command has found the write's lane (a
chat's key, or several).  The lanes share the pool's threads and the
database's cores, so one far behind is the node falling behind.

Reads (history, chat lists, ``sync``, search, ``ping``, ``typing``) are not
refused: they change nothing, so serving them late can neither lose nor
double anything; on SQLite they run on WAL readers beside the writer and do
not lengthen its queue; and a client told to retry its writes needs them to
find out where it stands.  Their bound is the event deadline and the
socket's queue of 64.  Logins and the admin API are not refused either
(logins have ``sessions.password_queue``; an operator must be able to act
on an overloaded node).

``retry_after`` is the oldest write's wait (at least the bound, at most
`MAX_RETRY_AFTER`): how far behind the database is, which is about how long
its backlog takes to clear once nothing new joins it.  Clients should add
their own jitter.

Cost per event: one call of ``oldest_wait`` (a loop over the lanes, one on
SQLite) and a comparison; no timer.  Refusals are counted in
``umoc_overload_refusals_total{edge}``; the log gets one warning per
`LOG_INTERVAL` at most while refusing, with the count, and one line when
writes are admitted again after a warning.
"""

from __future__ import annotations

import math
from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from umoc.errors import UserError
from umoc.metrics import Metrics

__all__ = ["LAG_INTERVAL", "MAX_RETRY_AFTER", "OVERLOADED", "OverloadedError", "ReactorLag", "WriteAdmission"]

log = Logger()

#: The refusal's message (its ``code`` is ``"overloaded"``).
OVERLOADED = "The server is overloaded; this was not done, send it again in a moment"
#: The longest ``retry_after`` given, in seconds.
MAX_RETRY_AFTER = 5.0
#: At most one warning this often (seconds) while writes are refused.
LOG_INTERVAL = 10.0
#: How often (seconds) `ReactorLag` asks the reactor to run it.
LAG_INTERVAL = 0.1


class OverloadedError(UserError):
    """A write refused before it started: nothing was done, it may be sent again after ``retry_after``.

    ``status`` and ``headers`` make the HTTP edge answer 503 with ``Retry-After``.
    """

    status = 503

    def __init__(self, retry_after: float) -> None:
        super().__init__(OVERLOADED, code="overloaded", retry_after=retry_after)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}


class ReactorLag:
    """How late the reactor runs what is due: about how long a frame arriving now waits to be handled.

    The database's backlog (`BatchWriter.oldest_wait`) is not the only one.
    When the node's one core is the bottleneck (parsing, encoding, fan-out:
    an open-loop flood of cheap writes on SQLite, whose commits keep up), the
    backlog is frames waiting in the kernel's socket buffers for the reactor
    to read them, and the group commit's queue stays short: the database rule
    alone never refused, while acknowledgements stretched to seconds.  That
    backlog shows as the reactor running late: a timer due every
    `LAG_INTERVAL` fires as late as one pass over every busy connection
    takes, which is what a frame arriving now waits before it is read.

    ``lag()`` is the larger of the last timer's lateness and how overdue the
    next one is already (so a pass that is running long is seen before it
    ends, by the events it handles).  Cost: ten timer calls a second, and a
    clock read per check.  Not started (a node on a test `Clock` that never
    starts it) it reads 0.
    """

    def __init__(self, clock: IReactorTime, interval: float = LAG_INTERVAL) -> None:
        self._clock = clock
        self._interval = interval
        self._due: float | None = None
        self._last = 0.0
        self._call: IDelayedCall | None = None

    def start(self) -> None:
        if self._call is None:
            self._schedule()

    def stop(self) -> None:
        call, self._call, self._due = self._call, None, None
        self._last = 0.0
        if call is not None and call.active():
            call.cancel()

    def _schedule(self) -> None:
        self._due = self._clock.seconds() + self._interval
        self._call = self._clock.callLater(self._interval, self._tick)

    def _tick(self) -> None:
        due = self._due if self._due is not None else self._clock.seconds()
        self._last = max(0.0, self._clock.seconds() - due)
        self._schedule()

    def lag(self) -> float:
        """Seconds the reactor is behind (0 when it runs what is due on time, or when not started)."""
        due = self._due
        if due is None:
            return 0.0
        overdue = self._clock.seconds() - due
        return overdue if overdue > self._last else self._last


class WriteAdmission:
    """Says whether a new write may start: ``wait()`` (the oldest write's wait) against ``bound``, and
    ``lag()`` (the reactor's, `ReactorLag.lag`) against ``lag_bound``.

    A bound of 0 turns its rule off.  ``metrics`` counts refusals per edge.
    """

    def __init__(
        self,
        wait: Callable[[], float],
        bound: float,
        clock: IReactorTime,
        metrics: Metrics | None = None,
        lag: Callable[[], float] | None = None,
        lag_bound: float = 0.0,
    ) -> None:
        self._wait = wait
        self.bound = bound
        self._lag = lag
        self.lag_bound = lag_bound if lag is not None else 0.0
        self._clock = clock
        self._metrics = metrics
        #: Writes refused since the last warning.
        self._unlogged = 0
        #: Writes refused since the last one admitted, and whether a warning was logged meanwhile.
        self._episode = 0
        self._warned = False
        self._last_warning: float | None = None

    def refusal(self, edge: str, queued: float = 0.0) -> OverloadedError | None:
        """The error to answer a new write with, or None if it may start.

        ``edge`` labels the refusal in the metric: ``socket``, ``bot``, ``upload``.
        ``queued``: how long this write already waited before it could start
        (behind its socket's earlier events), held against ``bound`` like the
        database's backlog: a write that has waited that long is answered at
        once instead of adding its own commit to the backlog.
        """
        bound, lag_bound = self.bound, self.lag_bound
        if bound <= 0 and lag_bound <= 0:
            return None
        wait = max(self._wait(), queued) if bound > 0 else 0.0
        lag = self._lag() if lag_bound > 0 and self._lag is not None else 0.0
        if (bound <= 0 or wait <= bound) and (lag_bound <= 0 or lag <= lag_bound):
            if self._episode:
                if self._warned:
                    log.info("Writes admitted again after {count} refused while overloaded", count=self._episode)
                self._episode, self._warned = 0, False
            return None
        floor = min(b for b in (bound, lag_bound) if b > 0)
        wait = max(wait, lag)
        if self._metrics is not None:
            self._metrics.overloaded(edge)
        self._unlogged += 1
        self._episode += 1
        now = self._clock.seconds()
        if self._last_warning is None or now - self._last_warning >= LOG_INTERVAL:
            log.warn(
                "Overloaded: refusing new writes, a new write would wait {wait:.2f}s "
                "(the oldest write waiting to commit, or the reactor running late; server.overload_wait {bound}s, "
                "server.overload_lag {lag_bound}s); {count} refused since the last warning",
                wait=wait,
                bound=self.bound,
                lag_bound=self.lag_bound,
                count=self._unlogged,
            )
            self._last_warning = now
            self._unlogged = 0
            self._warned = True
        return OverloadedError(round(min(max(wait, floor), MAX_RETRY_AFTER), 1))

    def check(self, edge: str, queued: float = 0.0) -> None:
        """Raise `OverloadedError` unless a new write may start (``queued``: as for `refusal`)."""
        error = self.refusal(edge, queued)
        if error is not None:
            raise error
