"""Catch this node's sockets up from the change feed after a gap in the Redis bus.

While a node's bus is down (``umoc.cluster.buswatch``), what other nodes
tell its users does not reach its sockets, and what it tells theirs does not
reach them.  Every change a live event tells of (but typing) is in the
change feed, in commit order, written in the change's own transaction
(``umoc.storage.changes``).  When the bus works again, the node reads each
local user's feed from a position known to precede the gap and sends the
live events the sockets missed, each once, oldest first, with no client
action::

    gap ends (since = T)
      hold live deliveries for every local user
      for each local user, a few at a time (the database is async):
          for each position P among the user's sockets (usually one):
              feed.read(user, P) page by page -> for each change:
                  delivery key K (umoc.domain.notices.replay)
                  K already reached the user (the hub remembers)  -> skip
                  else the live event, built as sync builds it now -> the sockets at P
          release the user's held deliveries (newer, so they come after)

Which changes are replayed: the feed's per-user read (``storage.feed``)
decides what the user may see, so the catch-up replays exactly what
``sync`` would return, as the live events ``sync_result.changes`` names
(``new_message``, ``message_edited``, ``message_deleted``,
``reaction_updated``, ``messages_read``, ``messages_delivered``, the
contact events, ``group_created``, ``group_updated``,
``group_member_added``, ``group_member_removed``, ``profile_updated``).
What they show of a message, a group or a profile is as it is now, as in
``sync``: a message edited twice in the gap gives two ``message_edited``
with the latest text; a message deleted since is replayed as its
``message_deleted`` alone.

Exactly once, by delivery key.  Every live delivery of a feed change
carries a key naming that change (its kind, the ids it names, the time the
command gave the store, which is the row's ``created_at``; see
`umoc.domain.notices.replay`), published with it on the bus.  The hub
remembers which keys reached which of its users (``Hub.delivered``, the
most recent 100 000 keys), whether they came from this node or over the
bus, and whether they went out or wait in a hold.  The catch-up computes
the same key from each feed row and skips the ones the user already got;
what it replays it remembers too, so a late live copy (a publication
delayed past the catch-up) or a second catch-up (another node asking about
the same outage) does not repeat it.

Positions.  A position must precede every change the socket may have
missed, and the hub's memory must reach back to it (else the catch-up
could not tell what was delivered).  Two qualify:

* a *mark*: this node notes where the feed stands (`mark`, a periodic task
  every `MARK_INTERVAL` while it has users and its bus works); one answered
  at least ``MARGIN`` seconds before the gap began is before every change
  of the gap (``MARGIN`` covers a change committed before the mark but
  published after the gap began: the publication follows the commit, on
  another node whose clock may differ a little);
* the socket's own ``connection_successful`` cursor: every change after
  the socket connected is after it, and what precedes it is the client's
  to ``sync`` when it connects.

Each socket reads from the later of the two it has (the shorter read);
sockets of a user at one position share one read.

``sync_needed`` only where an exact catch-up is impossible; the socket is
told ``sync_needed {"reason": "cluster_gap", "cursor": C}`` with the best
position known (``null`` when none is), `HINT_WAIT` seconds after the
catch-up, one per outage however many catch-ups it asked for:

* no position: no mark old enough and no connection cursor (the database
  did not answer when the socket connected);
* the hub has forgotten deliveries made since that position (more than its
  memory's worth of deliveries since): a replay could repeat some;
* the feed has been pruned past the position (``feed.retention``):
  ``cursor`` is null, the client reloads;
* the database failed during the read: ``cursor`` is where to sync from;
* more than `MAX_PER_USER` changes to read: the replay stops there and
  ``cursor`` is where it stopped.

Requests that arrive while a catch-up runs are merged into one more run,
from the earliest time asked.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from umoc.cluster.hub import Hub
from umoc.cluster.presence import Presence
from umoc.domain import notices
from umoc.domain.notices import replay
from umoc.errors import UserError
from umoc.storage import Storage
from umoc.storage.feed import Change
from umoc.transport.socketio import ClientSocket

__all__ = ["CatchUp"]

log = Logger()

#: ``(asked_at, cursor)``: a feed position, and the clock time it was asked for.
_Position = tuple[float, str]


class CatchUp:
    """Replays what this node's users missed during a bus gap from the change feed, each event once."""

    #: Seconds before the gap's start that a mark must have been answered by.
    MARGIN = 10.0
    #: Users read at once.
    CONCURRENCY = 4
    #: Changes read per query.
    PAGE = 200
    #: Changes read per user and position in one catch-up, at most; past it, ``sync_needed``.
    MAX_PER_USER = 5_000
    #: Seconds between two marks of the feed's position (one cheap query, shared with connects).
    MARK_INTERVAL = 5.0
    #: Marks kept: with no marks taken during a gap, about five minutes of history before it.
    MAX_MARKS = 64
    #: Seconds a hint waits after a catch-up for the other nodes' requests about the same outage.
    HINT_WAIT = 3.0
    #: Longest hold of live deliveries between a resubscription and the catch-up it leads to (`hold_for_gap`).
    EARLY_HOLD_LIMIT = 2.0

    def __init__(
        self,
        hub: Hub,
        storage: Storage,
        clock: IReactorTime,
        bus_ok: Callable[[], bool] = lambda: True,
        presence: Presence | None = None,
    ) -> None:
        self._hub = hub
        self._storage = storage
        self._clock = clock
        self._bus_ok = bus_ok
        self._presence = presence
        self._pending: float | None = None
        #: True from the moment a run is started until it has finished (whether it waited or not).
        self._busy = False
        self._waiters: list[defer.Deferred[None]] = []
        #: ``(asked_at, answered_at, cursor)``: where the feed stood, oldest first.
        self._marks: deque[tuple[float, float, str]] = deque(maxlen=self.MAX_MARKS)
        #: Sockets to tell ``sync_needed``, with the cursor each is to sync from, and the call that will.
        self._hints: dict[ClientSocket, str | None] = {}
        self._hint_call: IDelayedCall | None = None
        #: How many events the catch-ups replayed, one per user (for tests, logs and metrics).
        self.replayed = 0
        #: How many ``sync_needed`` hints the catch-ups sent.
        self.hinted = 0
        #: Users whose live deliveries `hold_for_gap` holds until a catch-up releases them.
        self._early: set[int] = set()
        self._early_call: IDelayedCall | None = None

    def hold_for_gap(self) -> None:
        """The bus is subscribed again during a gap: hold live deliveries until the catch-up has replayed.

        The gap ends (and the catch-up starts) only when this node's own ping
        comes back over the new subscription; other nodes' publications can
        arrive on it before that.  Delivered at once, one would overtake the
        older changes the catch-up is about to replay (each still arrives
        once, but out of order).  Held from the resubscription, they come
        after the replay, as in the module's outline.  If no catch-up follows
        within `EARLY_HOLD_LIMIT` (the ping was lost: the gap goes on), they
        are released as they are.
        """
        users = list(self._hub.by_user)
        self._hub.hold(users)
        self._early.update(users)
        if self._early_call is None or not self._early_call.active():
            self._early_call = self._clock.callLater(self.EARLY_HOLD_LIMIT, self._release_early)

    def _release_early(self) -> None:
        call, self._early_call = self._early_call, None
        if call is not None and call.active():
            call.cancel()
        early, self._early = self._early, set()
        for user_id in early:
            self._hub.release(user_id)

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
            self._release_early()  # those the runs did not release (gone, or no run had users)
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    async def _catch_up(self, since: float) -> None:
        users = list(self._hub.by_user)
        if not users:
            return
        started = self._clock.seconds()
        before = self.replayed
        mark = self._mark_before(since - self.MARGIN)
        self._hub.hold(users)
        semaphore = defer.DeferredSemaphore(self.CONCURRENCY)
        try:
            await defer.gatherResults(
                [semaphore.run(self._user_deferred, user_id, mark) for user_id in users], consumeErrors=True
            )
        finally:
            for user_id in users:
                self._hub.release(user_id)
        log.info(
            "Caught up {users} users from the feed after a bus gap since {since}: {count} events in {seconds:.2f}s",
            users=len(users),
            since=since,
            count=self.replayed - before,
            seconds=self._clock.seconds() - started,
        )

    def _user_deferred(self, user_id: int, mark: _Position | None) -> defer.Deferred[Any]:
        d = defer.ensureDeferred(self._user(user_id, mark))
        d.addErrback(lambda f: log.failure("Catch-up of user {user_id} failed", f, user_id=user_id))
        d.addBoth(lambda _: self._hub.release(user_id))
        return d

    async def _user(self, user_id: int, mark: _Position | None) -> None:
        """Replay to each of the user's sockets from its position; hint those with none that will do."""
        groups: dict[str, list[ClientSocket]] = {}
        hints: list[tuple[ClientSocket, str | None]] = []
        for socket in list(self._hub.by_user.get(user_id, ())):
            position = self._position_for(socket, mark)
            if position is None:
                hints.append((socket, None))
            elif position[0] < self._hub.delivered.complete_since:
                hints.append((socket, position[1]))  # what reached it since is forgotten: a replay could repeat
            else:
                groups.setdefault(position[1], []).append(socket)
        replayed: set[str] = set()
        for cursor, sockets in groups.items():
            try:
                rest = await self._replay(user_id, cursor, sockets, replayed)
            except UserError as exc:  # pruned past the position: nothing exact to sync from
                log.warn("No catch-up for user {user_id}: {why}", user_id=user_id, why=exc.message)
                hints.extend((socket, None) for socket in sockets)
                continue
            except Exception:  # noqa: BLE001 - the others are caught up still; these sync from here
                log.failure("Catch-up of user {user_id} failed", user_id=user_id)
                hints.extend((socket, cursor) for socket in sockets)
                continue
            if rest is not None:
                hints.extend((socket, rest) for socket in sockets)
        self._hint_later(hints)

    async def _replay(self, user_id: int, cursor: str, sockets: list[ClientSocket], replayed: set[str]) -> str | None:
        """The user's feed from ``cursor`` to these sockets; None when read to its end, else where it stopped.

        ``replayed``: the keys this catch-up replayed to the user's other
        sockets (at another position): those go to these sockets too.
        """
        hub, read = self._hub, 0
        while True:
            page = await self._storage.feed.read(user_id, cursor, self.PAGE)
            online = await self._online(page.changes)
            for change in page.changes:
                key = replay.key(change)
                if key is None or (key not in replayed and hub.delivered.has(key, user_id)):
                    continue
                notice = replay.notice(change, user_id, online)
                connected = hub.by_user.get(user_id, {})
                hub.replay([s for s in sockets if s in connected], notice.name, *notice.args)
                if key not in replayed:
                    replayed.add(key)
                    hub.delivered.add(key, [user_id])  # a late live copy is not sent again
                    self.replayed += 1
            read += len(page.changes)
            cursor = page.cursor
            if not page.has_more or not hub.is_local(user_id):
                return None
            if read >= self.MAX_PER_USER:
                return cursor

    def _online(self, changes: Iterable[Change]) -> defer.Deferred[set[int]]:
        """Who is online among the members of the groups created in these changes (``group_created`` shows it)."""
        members = sorted({m.user_id for change in changes if change.group for m in change.group.members})
        if not members or self._presence is None:
            return defer.succeed(set())
        return self._presence.online_among(members)

    def _position_for(self, socket: ClientSocket, mark: _Position | None) -> _Position | None:
        """The later of the mark and the socket's connection cursor (both precede what it missed)."""
        own = getattr(socket.identity, "cursor", None)
        joined = self._hub.joined.get(socket, 0.0)
        if mark is not None and (not isinstance(own, str) or mark[0] >= joined):
            return mark
        return (joined, own) if isinstance(own, str) else None

    # -- marks ----------------------------------------------------------------------

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
        except Exception as exc:  # noqa: BLE001 - a mark missed costs a longer read, nothing more
            log.debug("No feed mark: {why}", why=str(exc) or type(exc).__name__)
            return
        self._marks.append((asked, self._clock.seconds(), cursor))

    def _mark_before(self, limit: float) -> _Position | None:
        """The latest mark answered by ``limit``."""
        for asked, answered, cursor in reversed(self._marks):
            if answered <= limit:
                return asked, cursor
        return None

    # -- the resync hint, where no exact catch-up was possible ----------------------------

    def _hint_later(self, hints: list[tuple[ClientSocket, str | None]]) -> None:
        """Tell these sockets ``sync_needed`` `HINT_WAIT` from now; one scheduled already keeps its cursor.

        The wait lets the other nodes' requests about the same outage arrive
        first: one hint per outage, sent after every request it covers.
        """
        for socket, cursor in hints:
            self._hints.setdefault(socket, cursor)
        if self._hints and self._hint_call is None:
            self._hint_call = self._clock.callLater(self.HINT_WAIT, self._hint)

    def _hint(self) -> None:
        hints, self._hints, self._hint_call = self._hints, {}, None
        told = 0
        for socket, cursor in hints.items():
            if socket in self._hub.by_user.get(socket.user_id, {}):
                socket.tell(notices.SYNC_NEEDED({"reason": "cluster_gap", "cursor": cursor}))
                told += 1
        self.hinted += told
        log.info("Told {sockets} sockets to sync after a bus gap they could not be caught up from", sockets=told)

    def stop(self) -> None:
        """Drop a scheduled hint (the node is stopping: its sockets are closing anyway)."""
        if self._hint_call is not None and self._hint_call.active():
            self._hint_call.cancel()
        self._hint_call = None
        self._hints = {}
