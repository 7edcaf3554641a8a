"""A bounded, fair queue of outbound jobs: nobody's dead endpoint holds anybody else's pushes.

``submit`` never waits: a job is started now, queued, or refused (the
caller counts the refusal).  Every job has an *owner* (the user a push is
for, the webhook a delivery is for) and a *destination*: the host of its
URL, without the port, so twenty ports on one dead host are one
destination, not twenty.

Bounds, each a *share* of the whole (``owner_share``, ``destination_share``)::

    running   at most ``concurrency`` jobs; per owner and per destination at most their share of it,
              and one owner at one destination at most ``lane_share`` of the owner's (so a user's
              dead push service does not hold up the same user's other devices)
    waiting   at most ``max_queued`` jobs and ``max_bytes`` bytes; per owner and per destination
              at most their share of each (one owner cannot fill the queue: past its share,
              its own new jobs are refused, everyone else's are not)

A slot that frees goes round-robin: to the next destination (in turn) that
is under its cap, and within it to the next owner (in turn) under its cap;
within one owner at one destination (a *lane*), jobs keep their order.  So
a destination that never answers, or one user's twenty registrations
pointing at dead servers, holds at most its own share of the slots, and the
others keep flowing at the rate of their own receivers.

Why destinations first, then owners: finding the next job to start skips
destinations at their cap (at most 1/``destination_share`` of them), and
within a destination owners and lanes at theirs (each holds running slots,
so there are at most ``concurrency`` of them); a turn that finds nothing
looks only at those and at the destinations they wait on.  So it stays
cheap however many jobs wait, even when thousands of users wait on one push
gateway (owners first would look at every one of them on every freed slot).

A job may also be submitted with a ``delay`` (a webhook retry after its
backoff): it counts against the bounds from then on, so what waits for a
retry is bounded in bytes too, and becomes eligible when the delay ends.

A job is a function returning a Deferred; its failures are the job's
business (it logs them), the queue only frees the slot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = ["OutboundQueue", "destination_host"]

log = Logger()

Job = Callable[[], "defer.Deferred[Any]"]


def destination_host(url: str) -> str:
    """What the per-destination bounds count by: the URL's host, lower-case, without port or trailing dot."""
    host = urlsplit(url).hostname
    return host.rstrip(".") if host else url


@dataclass(slots=True, eq=False)
class _Waiting:
    run: Job
    owner: Hashable
    host: str
    size: int
    #: The timer of a job submitted with a delay, until it fires.
    call: IDelayedCall | None = None


class _Tally:
    """Jobs and bytes waiting, per key; keys with nothing waiting are forgotten."""

    __slots__ = ("bytes", "count")

    def __init__(self) -> None:
        self.count: dict[Hashable, int] = {}
        self.bytes: dict[Hashable, int] = {}

    def fits(self, key: Hashable, size: int, max_count: int, max_bytes: int) -> bool:
        return self.count.get(key, 0) < max_count and self.bytes.get(key, 0) + size <= max_bytes

    def add(self, key: Hashable, size: int) -> None:
        self.count[key] = self.count.get(key, 0) + 1
        self.bytes[key] = self.bytes.get(key, 0) + size

    def remove(self, key: Hashable, size: int) -> None:
        left = self.count[key] - 1
        if left:
            self.count[key] = left
            self.bytes[key] -= size
        else:
            del self.count[key], self.bytes[key]


def _share(total: int, share: float) -> int:
    return max(1, int(total * share))


class OutboundQueue:
    def __init__(
        self,
        clock: IReactorTime,
        concurrency: int,
        max_queued: int,
        max_bytes: int,
        owner_share: float = 0.25,
        destination_share: float = 0.25,
        lane_share: float = 0.5,
    ) -> None:
        self._clock = clock
        self.concurrency = concurrency
        self.max_queued = max_queued
        self.max_bytes = max_bytes
        #: Running jobs one owner, one destination, one owner at one destination may have.
        self.per_owner = _share(concurrency, owner_share)
        self.per_destination = _share(concurrency, destination_share)
        self.per_lane = _share(self.per_owner, lane_share)
        self._owner_queued = _share(max_queued, owner_share)
        self._owner_bytes = _share(max_bytes, owner_share)
        self._destination_queued = _share(max_queued, destination_share)
        self._destination_bytes = _share(max_bytes, destination_share)
        #: host -> owner -> jobs in order; each host's dict order is its owners' turn order.
        self._lanes: dict[str, dict[Hashable, deque[_Waiting]]] = {}
        #: Hosts with jobs ready to start, in turn order.
        self._turns: deque[str] = deque()
        self._owners_waiting = _Tally()
        self._hosts_waiting = _Tally()
        self._owners_running: dict[Hashable, int] = {}
        self._hosts_running: dict[str, int] = {}
        self._lanes_running: dict[tuple[Hashable, str], int] = {}
        self._delayed: set[_Waiting] = set()
        self._in_flight: set[defer.Deferred[Any]] = set()
        self.running = 0
        #: Bytes of the jobs waiting (delayed ones included).
        self.bytes = 0
        self._count = 0

    def __len__(self) -> int:
        """Jobs waiting, delayed ones (retries in their backoff) included."""
        return self._count

    def submit(self, url: str, job: Job, owner: Hashable, size: int, delay: float = 0) -> bool:
        """Start ``job`` now, queue it, or (a bound reached) refuse it: False, and the job is dropped.

        ``size`` is what the job holds while it waits (its body), counted
        against the byte bounds; ``delay`` makes it wait that many seconds
        before it may start, counted all the while.
        """
        host = destination_host(url)
        item = _Waiting(job, owner, host, size)
        if delay <= 0 and self._startable(host, owner) and self.running < self.concurrency:
            self._start(item)
            return True
        if not self._fits(item):
            return False
        self._count += 1
        self.bytes += size
        self._owners_waiting.add(owner, size)
        self._hosts_waiting.add(host, size)
        if delay > 0:
            item.call = self._clock.callLater(delay, self._ready, item)
            self._delayed.add(item)
        else:
            self._enqueue(item)
            self._pump()
        return True

    def drop_waiting(self) -> int:
        """Forget every job not started yet, delayed ones included (at shutdown); how many there were."""
        dropped = self._count
        for item in self._delayed:
            assert item.call is not None
            item.call.cancel()
        self._delayed.clear()
        self._lanes.clear()
        self._turns.clear()
        self._owners_waiting = _Tally()
        self._hosts_waiting = _Tally()
        self._count = self.bytes = 0
        return dropped

    def idle(self) -> defer.Deferred[Any]:
        """Fires when the jobs running now are done (for a clean stop and for tests)."""
        return defer.DeferredList(list(self._in_flight), consumeErrors=True)

    # -- bookkeeping ----------------------------------------------------------

    def _fits(self, item: _Waiting) -> bool:
        return (
            self._count < self.max_queued
            and self.bytes + item.size <= self.max_bytes
            and self._owners_waiting.fits(item.owner, item.size, self._owner_queued, self._owner_bytes)
            and self._hosts_waiting.fits(item.host, item.size, self._destination_queued, self._destination_bytes)
        )

    def _forget(self, item: _Waiting) -> None:
        self._count -= 1
        self.bytes -= item.size
        self._owners_waiting.remove(item.owner, item.size)
        self._hosts_waiting.remove(item.host, item.size)

    def _startable(self, host: str, owner: Hashable) -> bool:
        return self._hosts_running.get(host, 0) < self.per_destination and self._owner_may_start(owner, host)

    def _owner_may_start(self, owner: Hashable, host: str) -> bool:
        return (
            self._owners_running.get(owner, 0) < self.per_owner
            and self._lanes_running.get((owner, host), 0) < self.per_lane
        )

    def _ready(self, item: _Waiting) -> None:
        self._delayed.discard(item)
        item.call = None
        self._enqueue(item)
        self._pump()

    def _enqueue(self, item: _Waiting) -> None:
        owners = self._lanes.get(item.host)
        if owners is None:
            owners = self._lanes[item.host] = {}
            self._turns.append(item.host)
        lane = owners.get(item.owner)
        if lane is None:
            lane = owners[item.owner] = deque()
        lane.append(item)

    # -- choosing what runs -----------------------------------------------------

    def _next(self) -> _Waiting | None:
        """The next job to start, round-robin over destinations then owners; None when all wait on a cap."""
        for _ in range(len(self._turns)):
            host = self._turns[0]
            self._turns.rotate(-1)
            if self._hosts_running.get(host, 0) >= self.per_destination:
                continue
            owners = self._lanes[host]
            owner = next((o for o in owners if self._owner_may_start(o, host)), None)
            if owner is None:
                continue
            lane = owners.pop(owner)
            item = lane.popleft()
            if lane:
                owners[owner] = lane  # re-inserted: this owner's next turn here is after the others'
            elif not owners:
                del self._lanes[host]
                self._turns.pop()  # the host just rotated to the back
            return item
        return None

    def _pump(self) -> None:
        while self.running < self.concurrency:
            item = self._next()
            if item is None:
                return
            self._forget(item)
            self._start(item)

    def _start(self, item: _Waiting) -> None:
        owner, host = item.owner, item.host
        self.running += 1
        self._owners_running[owner] = self._owners_running.get(owner, 0) + 1
        self._hosts_running[host] = self._hosts_running.get(host, 0) + 1
        lane = (owner, host)
        self._lanes_running[lane] = self._lanes_running.get(lane, 0) + 1
        try:
            d = item.run()
        except Exception:  # noqa: BLE001 - a job that fails to start frees its slot like any other
            d = defer.fail()
        self._in_flight.add(d)

        def done(result: Any) -> None:
            self._in_flight.discard(d)
            self.running -= 1
            counts: tuple[tuple[dict[Any, int], Any], ...] = (
                (self._owners_running, owner),
                (self._hosts_running, host),
                (self._lanes_running, lane),
            )
            for running, key in counts:
                left = running[key] - 1
                if left:
                    running[key] = left
                else:
                    del running[key]
            self._pump()

        d.addErrback(lambda f: log.failure("Outbound job failed", f))
        d.addBoth(done)
