"""`FeedConsumer`: tails the change feed for one consumer (webhooks, push), from a position stored in the database.

The feed is the outbox: every change is written in its own transaction
(`umoc.storage.changes`), so once a client is answered the change is
durable, and whatever must follow it (a webhook, a push) is found again
from the feed after any crash.  A consumer::

    claim the lease  ->  read a batch after the position  ->  deliver each row  ->  store the position
        (one node)       (feed order, rows rendered now)      (retries, back-off)    (after every row
                                                                                       before it is done)

* Positions: `umoc.storage.outbox` reads in feed order (ids on SQLite,
  snapshot windows on PostgreSQL) and says why nothing is skipped; the
  position stored is always one whose rows are all done (delivered, or
  dead-lettered after their attempts), so a crash repeats deliveries at
  most, never loses one: at least once.
* Pipelining: reading does not wait for a batch's deliveries; up to
  ``MAX_BATCHES`` batches' worth of rows are under way, and the stored
  position moves to the end of the oldest batches that are done, in
  order (batches finishing within ``STORE_DELAY`` share one write).  A
  receiver that is down holds the position back only until its deliveries
  are dead-lettered; the others' keep flowing meanwhile (the queue is
  fair), until it holds that many rows: then reading waits, nothing is
  dropped.
* Waking: a command that wrote a change this consumer reads calls `wake`
  (in-process, after the commit): the next read starts at once, and reads
  that pile up while one runs become one.  A wake is kept until a read
  whose snapshot was taken after it has run: on PostgreSQL the pages of a
  window all read the snapshot its first page took.  Changes committed by
  another process (another node, ``umoc-admin``) are found by the poll
  every ``feed.consumer_poll_interval``.
* One node at a time: a lease row (see `umoc.storage.outbox` for why not an
  advisory lock).  The holder renews it with each position stored and at
  least every third of ``feed.consumer_lease``; the others try to take it
  as often, and do once it has expired (its holder died) or was given up
  (its holder stopped cleanly).  A holder that finds its lease taken drops
  what it was doing: the new holder starts from the stored position.
  SQLite has one node: a restarted node takes the lease back at once.
* Cost on the send path: `wake` only; the reads, the renderings and the
  position writes happen after the answer, shared by whatever committed
  meanwhile.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from umoc.config import FeedConfig
from umoc.storage.outbox import OutboxBatch, OutboxRow, OutboxStore

__all__ = ["FeedConsumer", "Tail", "halt_deliveries", "hand_over", "node_holder"]

log = Logger()

#: Seconds a finished batch waits before its position is stored, so that the batches finishing meanwhile
#: share one write: a crash then repeats at most this much more.
STORE_DELAY = 0.05
#: Rows read but not delivered yet, at most, in batches of ``feed.consumer_batch``: what a consumer holds in
#: memory is bounded by this many batches' rows (reading waits past it).
MAX_BATCHES = 4


def node_holder() -> str:
    """How this process names itself in a lease: host, pid and a random part (a restarted pid is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Tail:
    """What a consumer needs to tail the feed: the store, the settings, and this node's name in leases."""

    store: OutboxStore
    config: FeedConfig
    holder: str


@dataclass(eq=False)
class _Batch:
    position: str
    remaining: int
    had_rows: bool


class FeedConsumer:
    """One consumer's tail of the feed; ``deliver(row)`` returns a Deferred that fires when the row is done."""

    def __init__(
        self,
        name: str,
        tail: Tail,
        clock: IReactorTime,
        kinds: tuple[str, ...],
        deliver: Callable[[OutboxRow], defer.Deferred[Any]],
        max_rows: int | None = None,
        push_only: bool = False,
    ) -> None:
        """``max_rows``: rows read and not done yet, at most (``MAX_BATCHES`` batches by default); a consumer
        whose rows wait on purpose (push, for ``push.delay``) needs more.  ``push_only``: read only the rows
        that concern a user with a push registration (`OutboxStore.read`)."""
        self.name = name
        self._max_rows = max_rows or MAX_BATCHES * tail.config.consumer_batch
        self._store = tail.store
        self._config = tail.config
        self.holder = tail.holder
        self._clock = clock
        self.kinds = kinds
        self._deliver = deliver
        self._push_only = push_only
        self.holding = False
        #: Bumped when the lease is lost: answers and deliveries of an older generation are ignored.
        self._generation = 0
        #: Where the next read starts (ahead of what is stored while batches are under way).
        self._read_from: str | None = None
        #: The position of the last batch whose rows, and every earlier batch's, are done.
        self._done_at: str | None = None
        self._stored_at: str | None = None
        self._batches: deque[_Batch] = deque()
        self._rows_in_flight = 0
        #: Reading waits for rows to complete (past ``MAX_BATCHES`` batches' worth).
        self._blocked = False
        self._reading = False
        #: Read once more after the read under way: a change this consumer reads was committed meanwhile.
        self._again = False
        #: The next read pages on in a snapshot taken earlier (`OutboxBatch.same_snapshot`), so it cannot
        #: see a change committed since: a wake then keeps ``_again`` for the read after that window.
        self._same_snapshot = False
        self._storing: defer.Deferred[Any] | None = None
        self._store_again = False
        self._claiming = False
        self._renewed = 0.0
        self._next_claim = 0.0
        self._timer: IDelayedCall | None = None
        self._store_call: IDelayedCall | None = None
        #: A read `wake` put off until ``feed.consumer_wake_delay`` after the last one began.
        self._wake_call: IDelayedCall | None = None
        self._last_read = float("-inf")
        self._stopped = True
        self._busy: set[defer.Deferred[Any]] = set()

    # -- running ------------------------------------------------------------

    def start(self) -> defer.Deferred[Any]:
        """Try to take the lease now, then poll every ``feed.consumer_poll_interval``; fires after that first try.

        A consumer seen for the first time starts at the feed's position when
        it first claims, so a node waits for this before it takes requests.
        """
        if not self._stopped:
            return defer.succeed(None)
        self._stopped = False
        self._tick()
        return self.idle()

    def idle(self) -> defer.Deferred[Any]:
        """Fires when the claim, read and store under way now are done (for a clean stop and for tests)."""
        return defer.DeferredList(list(self._busy), consumeErrors=True)

    def wake(self) -> None:
        """A change this consumer reads was committed here: read it soon (if this node holds the lease).

        At once when the last read began ``feed.consumer_wake_delay`` ago or
        more; otherwise when that much has passed, so the commits of that
        moment share one read (at 1,000 messages a second, a read per
        commit cost more than the deliveries).
        """
        if not self.holding or self._stopped or self._wake_call is not None:
            return
        wait = self._last_read + self._config.consumer_wake_delay - self._clock.seconds()
        if wait <= 0:
            self._pump(woken=True)
        else:
            self._wake_call = self._clock.callLater(wait, self._woken)

    def _woken(self) -> None:
        self._wake_call = None
        self._pump(woken=True)

    async def stop(self) -> None:
        """Stop reading; store how far deliveries got; give the lease up so another node takes over at once.

        Deliveries still waiting are the deliverer's to drop (its queue): their
        rows are after the stored position, so the next holder repeats them.
        """
        self.halt()
        await defer.DeferredList(list(self._busy), consumeErrors=True)
        if self.holding:
            if self._done_at is not None and self._done_at != self._stored_at:
                self._store_done()
            while self._storing is not None:
                await defer.DeferredList([self._storing], consumeErrors=True)
            try:
                await self._store.release(self.name, self.holder)
            except Exception as exc:  # noqa: BLE001 - the lease then expires by itself
                log.warn("Feed consumer {name} could not give its lease up: {why}", name=self.name, why=repr(exc))
        self.holding = False

    def halt(self) -> None:
        """Read nothing more (deliveries under way still count when they finish); `stop` then stores and releases."""
        self._stopped = True
        for call in (self._timer, self._store_call, self._wake_call):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._store_call = self._wake_call = None

    def _track(self, d: defer.Deferred[Any]) -> defer.Deferred[Any]:
        self._busy.add(d)

        def settled(result: Any) -> Any:
            self._busy.discard(d)
            return result

        d.addBoth(settled)
        return d

    def _tick(self) -> None:
        self._timer = None
        if self._stopped:
            return
        now = self._clock.seconds()
        lease = self._config.consumer_lease
        if not self.holding:
            if not self._claiming and now >= self._next_claim:
                self._claim(now)
        else:
            if now - self._renewed >= lease / 3:
                self._store_done()
            self._pump()
        self._timer = self._clock.callLater(self._config.consumer_poll_interval, self._tick)

    def _claim(self, now: float) -> None:
        self._claiming = True
        self._next_claim = now + self._config.consumer_lease / 3

        def claimed(position: str | None) -> None:
            self._claiming = False
            if position is None or self._stopped:
                return
            log.info("Feed consumer {name} tailed by this node ({holder})", name=self.name, holder=self.holder)
            self.holding = True
            self._renewed = now
            self._read_from = self._done_at = self._stored_at = position
            self._same_snapshot = True  # a stored position may be inside a window (PostgreSQL)
            self._pump()

        def failed(failure: Any) -> None:
            self._claiming = False
            log.warn(
                "Feed consumer {name} could not claim its lease: {why}", name=self.name, why=failure.getErrorMessage()
            )

        self._track(self._store.claim(self.name, self.holder, now, self._config.consumer_lease)).addCallbacks(
            claimed, failed
        )

    def _lost(self) -> None:
        log.warn("Feed consumer {name}: another node took the lease over; stopping here", name=self.name)
        self.holding = False
        self._generation += 1
        self._batches.clear()
        self._rows_in_flight = 0
        self._read_from = self._done_at = self._stored_at = None
        self._next_claim = self._clock.seconds() + self._config.consumer_lease / 3

    # -- reading ------------------------------------------------------------

    def _pump(self, woken: bool = False) -> None:
        """Start the next read unless one is under way or too many rows are; ``woken``: by a commit (`wake`)."""
        if self._stopped or not self.holding:
            return
        if woken and self._same_snapshot:
            self._again = True  # the next read cannot see that commit: read again after its window
        if self._reading:
            self._again = True
            return
        if self._rows_in_flight >= self._max_rows:
            self._blocked = True  # a row that completes pumps again
            return
        self._blocked = False
        assert self._read_from is not None
        self._reading = True
        if not self._same_snapshot:
            self._again = False  # this read's fresh snapshot sees every commit so far
        self._last_read = self._clock.seconds()
        generation = self._generation
        d = self._store.read(self._read_from, self.kinds, self._config.consumer_batch, self._push_only)

        def read(batch: OutboxBatch) -> None:
            self._reading = False
            if generation != self._generation or self._stopped:
                return
            if batch.expired:
                log.error(
                    "Feed consumer {name} was behind feed.retention: changes pruned before it reached them were "
                    "never delivered",
                    name=self.name,
                )
            self._read_from = batch.position
            self._same_snapshot = batch.same_snapshot
            # Rows read past without delivery (a push nobody can get) move the stored position too.
            entry = _Batch(batch.position, len(batch.rows), bool(batch.rows) or batch.skipped)
            self._batches.append(entry)
            self._rows_in_flight += len(batch.rows)
            for row in batch.rows:
                self._start(row, entry, generation)
            if not batch.rows:
                self._completed()
            if batch.full or self._again:
                self._clock.callLater(0, self._pump)

        def failed(failure: Any) -> None:
            self._reading = False
            log.warn(
                "Feed consumer {name} could not read the feed: {why}", name=self.name, why=failure.getErrorMessage()
            )

        self._track(d).addCallbacks(read, failed)

    def _start(self, row: OutboxRow, entry: _Batch, generation: int) -> None:
        try:
            d = self._deliver(row)
        except Exception:  # noqa: BLE001 - a row that cannot be rendered must not stop the consumer
            log.failure("Feed consumer {name} failed on change {id}", name=self.name, id=row.change_id)
            d = defer.succeed(None)

        def done(result: Any) -> None:
            if generation != self._generation:
                return
            entry.remaining -= 1
            self._rows_in_flight -= 1
            if entry.remaining == 0:
                self._completed()
            if self._blocked:
                self._pump()

        d.addErrback(
            lambda f: log.failure("Feed consumer {name} failed on change {id}", f, name=self.name, id=row.change_id)
        )
        d.addBoth(done)

    def _completed(self) -> None:
        """Move the done position past the batches at the head that are done; store it if rows were delivered."""
        delivered = False
        while self._batches and self._batches[0].remaining <= 0:
            entry = self._batches.popleft()
            self._done_at = entry.position
            delivered = delivered or entry.had_rows
        if delivered and self._store_call is None and not self._stopped:
            # Batches completing within this moment share one write (the position moves once).
            self._store_call = self._clock.callLater(STORE_DELAY, self._store_soon)

    def _store_soon(self) -> None:
        self._store_call = None
        self._store_done()

    # -- storing ------------------------------------------------------------

    def _store_done(self) -> None:
        """Store the done position (renewing the lease); one write at a time, the last position wins."""
        if not self.holding or self._done_at is None:
            return
        if self._storing is not None:
            self._store_again = True
            return
        position, generation, now = self._done_at, self._generation, self._clock.seconds()
        d = self._store.advance(self.name, self.holder, position, now, self._config.consumer_lease)

        def stored(ok: bool) -> None:
            if generation != self._generation:
                return
            if not ok:
                self._lost()
                return
            self._stored_at, self._renewed = position, now

        def failed(failure: Any) -> None:
            log.warn(
                "Feed consumer {name} could not store its position: {why}",
                name=self.name,
                why=failure.getErrorMessage(),
            )

        def finished(_: Any) -> None:
            self._storing = None
            if self._store_again and generation == self._generation:
                self._store_again = False
                if self._done_at != self._stored_at:
                    self._store_done()

        self._storing = self._track(d)
        d.addCallbacks(stored, failed).addBoth(finished)


def halt_deliveries(consumer: FeedConsumer | None, timers: set[Any]) -> None:
    """A deliverer stopping: its consumer reads nothing more and its retry timers are cancelled."""
    if consumer is not None:
        consumer.halt()
    for call in list(timers):
        if call.active():
            call.cancel()
    timers.clear()


async def hand_over(consumer: FeedConsumer | None, queue: Any, left: int, what: str) -> None:
    """Let the deliveries in flight finish, then store how far the consumer got and give its lease up.

    ``left`` deliveries were dropped unsent: their rows are after the stored
    position, so whichever node tails the feed next sends them.
    """
    if left:
        log.info("{count} {what} left for the next node to tail the feed", count=left, what=what)
    await queue.idle()
    if consumer is not None:
        await consumer.stop()
