"""Catch this node's sockets up from the database after a gap in the Redis bus.

While a node's bus is down (``umoc.cluster.buswatch``), messages stored by
other nodes do not reach its sockets live, and its own publications do not
reach theirs.  The database has them all.  When the bus works again, the
node replays to each of its users the ``new_message`` events stored since
the gap began, oldest first, skipping every message the hub already
delivered to that user (the hub remembers recent message ids), so each
reaches each socket exactly once, with no client action::

    gap ends (since = T)
      hold live deliveries for every local user
      for each local user, a few at a time (the database is async):
          missed_since(user, T - margin)  ->  new_message, oldest first, unless delivered
          release the user's held deliveries (newer, so they come after)
      HINT_WAIT seconds later, every local socket  <-  sync_needed {"reason": "cluster_gap", "cursor": C}

``margin`` covers a message stamped before the gap but published after
it began (the stamp is taken inside the transaction, the publication
follows the commit), and clocks that differ a little between nodes.  A
socket that joined after a message (beyond the margin) does not get it:
what predates a socket is what ``sync`` and connection state recovery are
for.  Requests that arrive while a catch-up runs are merged into one more
run, from the earliest time asked.

Only ``new_message`` is replayed.  Edits, deletions, reactions, receipts,
contact, group and profile changes of the gap are in the change feed, so
each socket is then told ``sync_needed``, with a cursor from before the gap
to ``sync`` from.  One outage usually asks twice: this node's own gap ends,
and another node whose publications failed asks for a catch-up when its own
gap ends, a moment later (each node notices at its next self-ping, after
its own reconnection).  So the hint waits `HINT_WAIT` seconds after a
catch-up, and every catch-up asked for meanwhile shares it: one hint per
outage.  A hint sent after a request arrived covers it: every change that
request is about was committed before the other node asked, so a ``sync``
after the hint returns it.

The cursor must be no later than any change the socket may have missed;
two positions qualify:

* a *mark*: this node notes where the feed stands (`mark`, a periodic task
  every `MARK_INTERVAL` while it has users and its bus works); one answered
  at least ``margin`` before the gap began is before every change of the gap;
* the socket's own ``connection_successful`` cursor: every change after
  the socket connected is after it.

Each socket gets the later of the two it has (the shorter sync); ``null``
when it has neither (the database did not answer when it connected, and no
mark is old enough): the client then syncs from the last cursor it holds.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from umoc.cluster.hub import Hub
from umoc.domain import notices
from umoc.domain.notices import shapes
from umoc.storage import Storage
from umoc.transport.socketio import ClientSocket

__all__ = ["CatchUp"]

log = Logger()


class CatchUp:
    """Replays missed ``new_message`` events to this node's users, then tells every socket to ``sync``."""

    #: Seconds before the gap's start that are looked at again.
    MARGIN = 10.0
    #: Users queried at once.
    CONCURRENCY = 4
    #: Messages fetched per query, and at most per user and catch-up.
    PAGE = 200
    MAX_PER_USER = 2_000
    #: Seconds between two marks of the feed's position (one cheap query, shared with connects).
    MARK_INTERVAL = 5.0
    #: Marks kept: with no marks taken during a gap, about five minutes of history before it.
    MAX_MARKS = 64
    #: Seconds a hint waits after a catch-up for the other nodes' requests about the same outage.
    HINT_WAIT = 3.0

    def __init__(
        self, hub: Hub, storage: Storage, clock: IReactorTime, bus_ok: Callable[[], bool] = lambda: True
    ) -> None:
        self._hub = hub
        self._storage = storage
        self._clock = clock
        self._bus_ok = bus_ok
        self._pending: float | None = None
        #: True from the moment a run is started until it has finished (whether it waited or not).
        self._busy = False
        self._waiters: list[defer.Deferred[None]] = []
        #: ``(asked_at, answered_at, cursor)``: where the feed stood, oldest first.
        self._marks: deque[tuple[float, float, str]] = deque(maxlen=self.MAX_MARKS)
        #: The earliest gap start the scheduled hint is for, and its call.
        self._hint_since: float | None = None
        self._hint_call: IDelayedCall | None = None
        #: How many events the catch-ups replayed (for tests and logs).
        self.replayed = 0
        #: How many ``sync_needed`` hints the catch-ups sent.
        self.hinted = 0

    def request(self, since: float) -> defer.Deferred[None]:
        """Catch up from ``since`` (epoch seconds); fires when every run asked for so far is done.

        The busy flag is set before the run starts, and cleared by the run
        itself: a run that finishes without waiting (no local users) must
        leave the state as it found it, else later gaps are never caught up.
        """
        self._pending = since if self._pending is None else min(self._pending, since)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)
        if not self._busy:
            self._busy = True
            defer.ensureDeferred(self._run())
        return waiter

    @property
    def running(self) -> bool:
        """Whether a catch-up is under way."""
        return self._busy

    async def _run(self) -> None:
        try:
            while self._pending is not None:
                since, self._pending = self._pending, None
                try:
                    await self._catch_up(since)
                except Exception:  # noqa: BLE001 - the next gap must still be caught up
                    log.failure("Catch-up since {since} failed", since=since)
        finally:
            self._busy = False
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    async def _catch_up(self, since: float) -> None:
        users = list(self._hub.by_user)
        if not users:
            return
        started = self._clock.seconds()
        before = self.replayed
        self._hub.hold(users)
        semaphore = defer.DeferredSemaphore(self.CONCURRENCY)
        try:
            await defer.gatherResults(
                [semaphore.run(self._user_deferred, user_id, since - self.MARGIN) for user_id in users],
                consumeErrors=True,
            )
        finally:
            for user_id in users:
                self._hub.release(user_id)
        self._hint_later(since)
        log.info(
            "Caught up {users} users from {since}: {count} missed messages in {seconds:.2f}s",
            users=len(users),
            since=since,
            count=self.replayed - before,
            seconds=self._clock.seconds() - started,
        )

    def _user_deferred(self, user_id: int, since: float) -> defer.Deferred[Any]:
        d = defer.ensureDeferred(self._user(user_id, since))
        d.addErrback(lambda f: log.failure("Catch-up of user {user_id} failed", f, user_id=user_id))
        d.addBoth(lambda _: self._hub.release(user_id))
        return d

    async def _user(self, user_id: int, since: float) -> None:
        after_seq, count = 0, 0
        while count < self.MAX_PER_USER and self._hub.is_local(user_id):
            found = await self._storage.messages.missed_since(user_id, since, self.PAGE, after_seq)
            for message in found:
                if self._hub.deliver_missed(
                    user_id, message.id, message.created_at, self.MARGIN, "new_message", shapes.new_message(message)
                ):
                    self.replayed += 1
            count += len(found)
            if len(found) < self.PAGE:
                return
            after_seq = found[-1].seq

    # -- the resync hint ----------------------------------------------------------

    async def mark(self) -> None:
        """Note where the change feed stands (a periodic task); nothing while idle or during a gap.

        Skipped with no local users (a socket that connects later has its own
        cursor) and while the bus is down (the marks from before the gap are
        the ones it needs; later ones would push them out).
        """
        if not self._hub.by_user or not self._bus_ok():
            return
        asked = self._clock.seconds()
        try:
            cursor = await self._storage.feed.position()
        except Exception as exc:  # noqa: BLE001 - a mark missed costs a longer sync, nothing more
            log.debug("No feed mark: {why}", why=str(exc) or type(exc).__name__)
            return
        self._marks.append((asked, self._clock.seconds(), cursor))

    def _mark_before(self, limit: float) -> tuple[float, str] | None:
        """The latest mark answered by ``limit``: ``(asked_at, cursor)``."""
        for asked, answered, cursor in reversed(self._marks):
            if answered <= limit:
                return asked, cursor
        return None

    def _hint_later(self, since: float) -> None:
        """Schedule the hint for a gap since ``since``, or fold it into the one scheduled."""
        self._hint_since = since if self._hint_since is None else min(self._hint_since, since)
        if self._hint_call is None:
            self._hint_call = self._clock.callLater(self.HINT_WAIT, self._hint)

    def _hint(self) -> None:
        """Tell every local socket to ``sync``: what else the gap held is in the feed."""
        since, self._hint_since, self._hint_call = self._hint_since, None, None
        assert since is not None
        mark = self._mark_before(since - self.MARGIN)
        told = 0
        for sockets in list(self._hub.by_user.values()):
            for socket in list(sockets):
                socket.tell(notices.SYNC_NEEDED({"reason": "cluster_gap", "cursor": self._cursor_for(socket, mark)}))
                told += 1
        self.hinted += told
        log.info("Told {sockets} sockets to sync after a bus gap since {since}", sockets=told, since=since)

    def stop(self) -> None:
        """Drop a scheduled hint (the node is stopping: its sockets are closing anyway)."""
        if self._hint_call is not None and self._hint_call.active():
            self._hint_call.cancel()
        self._hint_call = self._hint_since = None

    def _cursor_for(self, socket: ClientSocket, mark: tuple[float, str] | None) -> str | None:
        """The later of the mark and the socket's connection cursor (both are before what it missed)."""
        own = getattr(socket.identity, "cursor", None)
        if mark is not None and (own is None or mark[0] >= self._hub.joined.get(socket, 0.0)):
            return mark[1]
        return own if isinstance(own, str) else None
