"""Who is connected where, and delivery to them.

`Hub` keeps this node's sockets by user and by session and delivers
events to them, encoding each event once for all its sockets.  When Redis
is configured, a `RemoteBus` carries the same deliveries to the other
nodes (see ``umoc.cluster.redisbus``); with none, the node runs alone.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from umoc.protocol.socketio import encode_event
from umoc.transport.engine import Outgoing
from umoc.transport.recovery import RecoveryStore
from umoc.transport.socketio import ClientSocket

__all__ = ["Hub", "RemoteBus"]


class RemoteBus(Protocol):
    """Fan-out to other nodes (Redis pub/sub)."""

    def publish_to_users(self, user_ids: list[int], frames: list[str | bytes], offset: str | None = None) -> None: ...

    def publish_end_session(self, session_id: str, message: str) -> None: ...


class Hub:
    """This node's sockets, indexed for delivery."""

    def __init__(self, recovery: RecoveryStore | None = None, remote: RemoteBus | None = None) -> None:
        self.by_user: dict[int, dict[ClientSocket, None]] = {}
        self.by_session: dict[str, dict[ClientSocket, None]] = {}
        #: Fan-out to the other nodes (None: this node runs alone).
        self.remote = remote
        #: Connection state recovery: offsets and the replay log (None when off).
        self.recovery = recovery

    # -- membership -------------------------------------------------------

    def add(self, socket: ClientSocket) -> bool:
        """Register a socket; True when it is its user's first on this node."""
        sockets = self.by_user.setdefault(socket.user_id, {})
        first = not sockets
        sockets[socket] = None
        self.by_session.setdefault(socket.session_id, {})[socket] = None
        return first

    def remove(self, socket: ClientSocket) -> bool:
        """Forget a socket; True when it was its user's last on this node."""
        sockets = self.by_user.get(socket.user_id)
        if sockets is None or socket not in sockets:
            return False
        del sockets[socket]
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

    # -- delivery ---------------------------------------------------------

    def emit_to_users(self, user_ids: Iterable[int], event: str, *args: Any) -> None:
        """Deliver one event to every socket of these users, on every node."""
        targets = list(dict.fromkeys(user_ids))
        offset = None
        if self.recovery is None:
            frames = encode_event(event, *args)
        else:
            # One offset per broadcast, the same for every recipient: still encoded once.
            offset = self.recovery.next_offset()
            frames = encode_event(event, *args, offset)
        self.deliver_local(targets, Outgoing.from_socketio(frames), offset)
        if self.remote is not None:
            self.remote.publish_to_users(targets, frames, offset)

    def deliver_local(self, user_ids: Iterable[int], message: Outgoing, offset: str | None = None) -> None:
        """Send to this node's sockets of these users; ``offset`` (the event's last argument) keeps it for recovery."""
        kept = offset is not None and self.recovery is not None
        if kept:
            user_ids = list(user_ids)
            self.recovery.record(offset, user_ids, message)
        for user_id in user_ids:
            for socket in list(self.by_user.get(user_id, ())):
                socket.send(message)
        if kept:
            message.cache.clear()  # the replay log keeps the frames, not each transport's copy

    def end_session(self, session_id: str, message: str) -> None:
        """Tell every socket of a session it is no longer valid, then close them, on every node."""
        self.end_session_local(session_id, message)
        if self.remote is not None:
            self.remote.publish_end_session(session_id, message)

    def end_session_local(self, session_id: str, message: str) -> None:
        for socket in list(self.by_session.get(session_id, ())):
            socket.emit("session_status", {"valid": False, "message": message})
            socket.disconnect("session ended")
