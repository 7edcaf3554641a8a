"""Who is connected where, and delivery to them.

`Hub` keeps this node's sockets by user and by session and delivers
events to them, encoding each event once for all its sockets.  When Redis
is configured, a `RemoteBus` carries the same deliveries to the other
nodes (see ``umoc.cluster.redisbus``); with none, the node runs alone.

Two things serve the catch-up after a bus gap (``umoc.domain.catchup``):
the hub remembers which recent deliveries (by a *key* naming the change
each told, ``umoc.domain.notices.replay``) it made to which of its users,
so nothing is delivered twice, and it can *hold* a user's live deliveries
while older missed changes are replayed to them, so a client sees them in
order.

A delivery to more users than `Hub.SENDS_PER_TURN` (a broadcast channel's
readers) goes out over several reactor turns, and every delivery made
while one is under way queues behind it, so each socket still gets events
in the order they were sent.  Otherwise one message to 10,000 readers
would hold the reactor for its whole fan-out (about 0.2 s here): every
other client's events, and the sender's own ack, would wait for it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Callable, Iterable, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from umoc.protocol.socketio import encode_event
from umoc.transport.engine import Outgoing
from umoc.transport.recovery import RecoveryStore
from umoc.transport.socketio import Announcement, ClientSocket

__all__ = ["Delivered", "Hub", "RemoteBus", "is_message_key"]


def is_message_key(key: str) -> bool:
    """A ``new_message``'s key (its message id) rather than another change's (a JSON array)."""
    return not key.startswith("[")


class RemoteBus(Protocol):
    """Fan-out to other nodes (Redis pub/sub)."""

    def publish_to_users(
        self, user_ids: list[int], frames: list[str | bytes], offset: str | None = None, key: str | None = None
    ) -> None: ...

    def publish_end_session(self, session_id: str, message: str) -> None: ...


class Delivered:
    """The most recent ``size`` delivery keys this node used, each with the local users it reached.

    Bounded by count, oldest (least recently added to) first out.
    `complete_since` says from when on nothing was forgotten: a catch-up
    that reads the feed from a position taken before it cannot tell what
    reached its sockets, and does not replay from there.
    """

    def __init__(self, clock: IReactorTime | None = None, size: int = 100_000) -> None:
        self.size = size
        self._clock = clock
        self._users: OrderedDict[str, tuple[float, set[int]]] = OrderedDict()
        #: Every delivery made at or after this time (clock seconds) is remembered.
        self.complete_since = 0.0

    def has(self, key: str, user_id: int) -> bool:
        entry = self._users.get(key)
        return entry is not None and user_id in entry[1]

    def reached(self, key: str) -> set[int] | None:
        """The local users ``key`` reached (None: none yet); not to be changed."""
        entry = self._users.get(key)
        return None if entry is None else entry[1]

    def add(self, key: str, user_ids: Iterable[int]) -> None:
        now = self._clock.seconds() if self._clock is not None else 0.0
        entry = self._users.pop(key, None)
        users = entry[1] if entry is not None else set()
        users.update(user_ids)
        self._users[key] = (now, users)
        while len(self._users) > self.size:
            _, (added, _) = self._users.popitem(last=False)
            self.complete_since = max(self.complete_since, added)


class Hub:
    """This node's sockets, indexed for delivery."""

    #: Deliveries held for one user during a catch-up, at most; past it they go out at once.
    MAX_HELD = 10_000
    #: Users one reactor turn delivers a queued fan-out to, at most (about 20 ms of sends here).
    SENDS_PER_TURN = 1_000

    def __init__(
        self,
        recovery: RecoveryStore | None = None,
        remote: RemoteBus | None = None,
        clock: IReactorTime | None = None,
        session_ended: Callable[[str], Announcement] | None = None,
    ) -> None:
        #: Builds what a socket is told when its session ends (``umoc.domain.notices.session_ended``).
        self.session_ended = session_ended
        self.by_user: dict[int, dict[ClientSocket, None]] = {}
        self.by_session: dict[str, dict[ClientSocket, None]] = {}
        #: Fan-out to the other nodes (None: this node runs alone).
        self.remote = remote
        #: Connection state recovery: offsets and the replay log (None when off).
        self.recovery = recovery
        self._clock = clock
        #: When each socket joined (a catch-up does not replay to a socket what predates it).
        self.joined: dict[ClientSocket, float] = {}
        #: Which recent delivery keys reached which local users.
        self.delivered = Delivered(clock)
        #: Users whose live deliveries wait while a catch-up replays older messages to them.
        self._held: dict[int, list[Outgoing]] = {}
        #: ``new_message`` sent to a socket of this node (a plain number: read by metrics when scraped).
        self.messages_delivered = 0
        #: Called with the id of every session ended here or on another node (caches forget it).
        self.session_end_listeners: list[Callable[[str], None]] = []
        #: Fan-outs going out over several turns, and the deliveries queued behind them, in order.
        self._fanouts: deque[_Fanout] = deque()
        self._next_turn: IDelayedCall | None = None

    # -- membership -------------------------------------------------------

    def add(self, socket: ClientSocket) -> bool:
        """Register a socket; True when it is its user's first on this node."""
        sockets = self.by_user.setdefault(socket.user_id, {})
        first = not sockets
        sockets[socket] = None
        self.joined[socket] = self._clock.seconds() if self._clock is not None else 0.0
        self.by_session.setdefault(socket.session_id, {})[socket] = None
        return first

    def remove(self, socket: ClientSocket) -> bool:
        """Forget a socket; True when it was its user's last on this node."""
        sockets = self.by_user.get(socket.user_id)
        if sockets is None or socket not in sockets:
            return False
        del sockets[socket]
        self.joined.pop(socket, None)
        session = self.by_session.get(socket.session_id)
        if session is not None:
            session.pop(socket, None)
            if not session:
                del self.by_session[socket.session_id]
        if not sockets:
            del self.by_user[socket.user_id]
            return True
        return False

    def is_local(self, user_id: int) -> bool:
        return user_id in self.by_user

    def session_socket_count(self, session_id: str) -> int:
        return len(self.by_session.get(session_id, ()))

    def socket_count(self) -> int:
        return sum(len(s) for s in self.by_user.values())

    def sockets_by_transport(self) -> dict[str, int]:
        """``{"websocket": n, "polling": m}``: what each socket's Engine.IO session runs over now."""
        counts = {"websocket": 0, "polling": 0}
        for sockets in self.by_user.values():
            for socket in sockets:
                name = getattr(getattr(socket.connection.engine, "transport", None), "name", "other")
                counts[name] = counts.get(name, 0) + 1
        return counts

    # -- delivery ---------------------------------------------------------

    def tell(self, user_ids: Iterable[int], notice: Announcement, key: str | None = None, unique: bool = False) -> None:
        """Deliver one declared server event to every socket of these users, on every node."""
        self.emit_to_users(user_ids, notice.name, *notice.args, key=key, unique=unique)

    def tell_all(
        self, user_ids: Iterable[int], notices: Iterable[tuple[Announcement, str | None]], unique: bool = False
    ) -> None:
        """Deliver several declared events, in order, each with its key (or None), to the same users.

        As `tell` for each, but the audience is looked through once for the
        users with a socket here: a thread reply's ``new_message`` and
        ``thread_updated`` to a group of 1,000 cost one pass over its members,
        not two.  And when they can go out at once (no fan-out is queued, the
        audience is within a turn, no key already reached anyone here), each
        socket is sent them as one message of several frames: one call per
        socket, not one per event, and one write (the WebSocket frames are
        joined).  Each event is still encoded once, remembered under its own
        key, kept for recovery under its own offset (for the sockets that may
        come back, found once for all) and published on its own.
        """
        notices = list(notices)
        targets = list(user_ids) if unique else list(dict.fromkeys(user_ids))
        local = list(self._here(targets))
        if len(notices) < 2 or not self._at_once(targets, notices):
            for notice, key in notices:
                self._emit(targets, local, notice.name, notice.args, key)
            return
        frames: list[str | bytes] = []
        counted = False
        keepers = self.recovery.keepers(targets) if self.recovery is not None else frozenset()
        for notice, key in notices:
            encoded, offset = self._encode(notice.name, notice.args)
            frames.extend(encoded)
            if key is not None:
                self.delivered.add(key, local)
                counted = counted or is_message_key(key)
            if offset is not None and self.recovery is not None:
                self.recovery.record(offset, targets, Outgoing.from_socketio(encoded), keepers)
            if self.remote is not None:
                self.remote.publish_to_users(targets, encoded, offset, key)
        self._send(local, Outgoing.from_socketio(frames), counted)

    def _at_once(self, targets: list[int], notices: list[tuple[Announcement, str | None]]) -> bool:
        """Whether `tell_all` may send these together now: nothing queued before them, nobody to skip."""
        if self._queues(len(targets)):
            return False
        return not any(key is not None and self.delivered.reached(key) for _, key in notices)

    def emit_to_users(
        self, user_ids: Iterable[int], event: str, *args: Any, key: str | None = None, unique: bool = False
    ) -> None:
        """Deliver one event to every socket of these users, on every node.

        ``key`` names the change the event tells of (a feed change's delivery
        key): a catch-up after a bus gap will not deliver it again to whoever
        it reaches now.  ``unique``: the caller knows ``user_ids`` has no
        repeats (a chat's members), so they are not looked for (a dict of a
        group's 1,000 members, per event, otherwise).
        """
        targets = list(user_ids) if unique else list(dict.fromkeys(user_ids))
        self._emit(targets, None, event, args, key)

    def _emit(self, targets: list[int], local: list[int] | None, event: str, args: Any, key: str | None) -> None:
        """Encode once, deliver here and publish to the other nodes; ``local``: those of ``targets`` found here."""
        frames, offset = self._encode(event, args)
        self._deliver(targets, local, Outgoing.from_socketio(frames), offset, key)
        if self.remote is not None:
            self.remote.publish_to_users(targets, frames, offset, key)

    def _encode(self, event: str, args: Any) -> tuple[list[str | bytes], str | None]:
        """The event's Socket.IO frames, and its recovery offset (None when recovery is off)."""
        if self.recovery is None:
            return encode_event(event, *args), None
        # One offset per broadcast, the same for every recipient: still encoded once.
        offset = self.recovery.next_offset()
        return encode_event(event, *args, offset), offset

    def deliver_local(
        self, user_ids: Iterable[int], message: Outgoing, offset: str | None = None, key: str | None = None
    ) -> None:
        """Send to this node's sockets of these users; ``offset`` (the event's last argument) keeps it for recovery.

        With a ``key``, users it already reached are skipped, and the rest
        are remembered as reached.
        """
        self._deliver(list(user_ids), None, message, offset, key)

    def _deliver(
        self, user_ids: list[int], local: list[int] | None, message: Outgoing, offset: str | None, key: str | None
    ) -> None:
        """`deliver_local`, given (when known) ``local``: those of ``user_ids`` with a socket or hold here, in order."""
        here = local
        if key is not None:
            # The key's users are looked up once, not once per user, and those here found once for the key
            # and the sends: a group's 1,000 members cost C-level passes, not thousands of calls.
            reached = self.delivered.reached(key)
            if reached:
                user_ids = [u for u in user_ids if u not in reached]
                if here is not None:
                    here = [u for u in here if u not in reached]
            if here is None:
                here = list(self._here(user_ids))
            self.delivered.add(key, here)
        kept = False
        if offset is not None and self.recovery is not None:
            self.recovery.record(offset, user_ids, message)
            kept = True
        counted = key is not None and is_message_key(key)
        if self._queues(len(user_ids)):
            self._fanouts.append(_Fanout(user_ids, message, counted, kept))
            if self._next_turn is None:
                self._next_turn = self._clock.callLater(0, self._next_fanouts)  # type: ignore[union-attr]
            return
        self._send(self._here(user_ids) if here is None else here, message, counted)
        if kept:
            message.cache.clear()  # the replay log keeps the frames, not each transport's copy

    def _queues(self, audience: int) -> bool:
        """Whether a delivery to ``audience`` users waits its turn: one is under way, or it is too big for one turn."""
        return bool(self._fanouts) or (audience > self.SENDS_PER_TURN and self._clock is not None)

    def _here(self, user_ids: list[int]) -> Iterable[int]:
        """Those of ``user_ids`` with a socket here or held deliveries, in order: only they are sent anything."""
        if self._held:
            return [u for u in user_ids if u in self.by_user or u in self._held]
        return filter(self.by_user.__contains__, user_ids)

    def _send(self, here: Iterable[int], message: Outgoing, counted: bool) -> None:
        """Send to the sockets of ``here``: users already found to have a socket or a hold on this node."""
        for user_id in here:
            held = self._held.get(user_id)
            if held is not None and len(held) < self.MAX_HELD:
                held.append(message)
                continue
            sockets = list(self.by_user.get(user_id, ()))
            for socket in sockets:
                socket.send(message)
            if counted:
                self.messages_delivered += len(sockets)

    def _next_fanouts(self) -> None:
        """One turn's share of the queued deliveries, oldest first; the rest in the next turn."""
        self._next_turn = None
        budget = self.SENDS_PER_TURN
        fanouts = self._fanouts
        while fanouts and budget > 0:
            fanout = fanouts[0]
            part = fanout.user_ids[fanout.done : fanout.done + budget]
            self._send(self._here(part), fanout.message, fanout.counted)
            fanout.done += len(part)
            budget -= len(part)
            if fanout.done >= len(fanout.user_ids):
                fanouts.popleft()
                if fanout.kept:
                    fanout.message.cache.clear()
        if fanouts and self._clock is not None:
            self._next_turn = self._clock.callLater(0, self._next_fanouts)

    @property
    def queued_fanouts(self) -> int:
        """Deliveries waiting for a later turn (0 unless a fan-out past `SENDS_PER_TURN` is under way)."""
        return len(self._fanouts)

    # -- catch-up after a bus gap --------------------------------------------

    def hold(self, user_ids: Iterable[int]) -> None:
        """Queue these users' live deliveries until `release` (a catch-up goes first)."""
        for user_id in user_ids:
            self._held.setdefault(user_id, [])

    def release(self, user_id: int) -> None:
        """Send what was held for this user, in the order it came."""
        for message in self._held.pop(user_id, ()):
            for socket in list(self.by_user.get(user_id, ())):
                socket.send(message)
            if self.recovery is not None:
                message.cache.clear()

    def replay(self, sockets: Iterable[ClientSocket], event: str, *args: Any) -> None:
        """Send one missed event to these sockets (a catch-up's), past a hold; kept for recovery like any other."""
        sockets = list(sockets)
        if not sockets:
            return
        if self.recovery is None:
            message = Outgoing.from_socketio(encode_event(event, *args))
        else:
            offset = self.recovery.next_offset()
            message = Outgoing.from_socketio(encode_event(event, *args, offset))
            self.recovery.record(offset, list(dict.fromkeys(s.user_id for s in sockets)), message)
        for socket in sockets:
            socket.send(message)
        if self.recovery is not None:
            message.cache.clear()

    def end_session(self, session_id: str, message: str) -> None:
        """Tell every socket of a session it is no longer valid, then close them, on every node."""
        self.end_session_local(session_id, message)
        if self.remote is not None:
            self.remote.publish_end_session(session_id, message)

    def end_session_local(self, session_id: str, message: str) -> None:
        for listener in self.session_end_listeners:
            listener(session_id)
        for socket in list(self.by_session.get(session_id, ())):
            if self.session_ended is not None:
                socket.tell(self.session_ended(message))
            socket.disconnect("session ended")


class _Fanout:
    """A delivery going out over several turns: to ``user_ids[done:]`` still."""

    __slots__ = ("user_ids", "message", "counted", "kept", "done")

    def __init__(self, user_ids: list[int], message: Outgoing, counted: bool, kept: bool) -> None:
        self.user_ids = user_ids
        self.message = message
        self.counted = counted
        self.kept = kept
        self.done = 0
