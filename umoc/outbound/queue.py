"""A bounded queue of outbound jobs with bounded concurrency, overall and per destination.

``submit`` never waits: a job is started now, queued, or (the queue being
full) refused, and the caller counts the refusal.  At most ``concurrency``
jobs run at once, and at most ``per_destination`` of them to one
destination (a host and port), so a slow or dead endpoint delays only its
own jobs: the others overtake it in the queue.  A job is a function
returning a Deferred; its failures are the job's business (it logs them),
the queue only frees the slot.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger

__all__ = ["OutboundQueue"]

log = Logger()

Job = Callable[[], "defer.Deferred[Any]"]


class OutboundQueue:
    def __init__(self, concurrency: int, max_queued: int, per_destination: int | None = None) -> None:
        self.concurrency = concurrency
        self.max_queued = max_queued
        self.per_destination = per_destination or max(1, concurrency // 4)
        self._waiting: deque[tuple[str, Job]] = deque()
        self._running: dict[str, int] = {}
        self._in_flight: set[defer.Deferred[Any]] = set()
        self.running = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def submit(self, destination: str, job: Job) -> bool:
        """Start or queue ``job``; False when the queue is full (the job is dropped)."""
        if len(self._waiting) >= self.max_queued:
            return False
        self._waiting.append((destination, job))
        self._pump()
        return True

    def idle(self) -> defer.Deferred[Any]:
        """Fires when the jobs running now are done (for a clean stop and for tests)."""
        return defer.DeferredList(list(self._in_flight), consumeErrors=True)

    def _pump(self) -> None:
        if self.running >= self.concurrency or not self._waiting:
            return
        skipped: list[tuple[str, Job]] = []
        while self._waiting and self.running < self.concurrency:
            destination, job = self._waiting.popleft()
            if self._running.get(destination, 0) >= self.per_destination:
                skipped.append((destination, job))
                continue
            self._start(destination, job)
        # Jobs for busy destinations keep their place at the front, in order.
        self._waiting.extendleft(reversed(skipped))

    def _start(self, destination: str, job: Job) -> None:
        self.running += 1
        self._running[destination] = self._running.get(destination, 0) + 1
        try:
            d = job()
        except Exception:  # noqa: BLE001 - a job that fails to start frees its slot like any other
            d = defer.fail()
        self._in_flight.add(d)

        def done(result: Any) -> None:
            self._in_flight.discard(d)
            self.running -= 1
            left = self._running[destination] - 1
            if left:
                self._running[destination] = left
            else:
                del self._running[destination]
            self._pump()

        d.addErrback(lambda f: log.failure("Outbound job failed", f))
        d.addBoth(done)
