"""Socket.IO connection state recovery (the v4.6 feature), kept in memory per node.

How it looks on the wire::

                                          <-  40{"sid":"S","pid":"P"}        CONNECT answer
                                          <-  42["new_message",{..},"OFF"]   every event sent
                                                                             through the hub
                                                                             carries an offset
    ... the TCP connection breaks ...
    40{"sessionID":..,"token":..,"pid":"P","offset":"OFF"}  ->
                                          <-  40{"sid":"S","pid":"P"}        same sid and pid:
                                                                             recovered
                                          <-  42[..missed events, in order..]

A hub broadcast is still encoded once: its offset is per broadcast, the
same for every recipient.  The log keeps each broadcast for
``engineio.recovery_window`` seconds, but only when one of its users has a
socket on this node (live or waiting to be recovered).  Recovery needs the
normal authentication too, and the pid must belong to the same login
session and namespace; it works once per disconnection.  When it cannot
work (window passed, offset unknown, another node) the client gets a fresh
pid and catches up with the ``sync`` event instead.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

from twisted.internet.interfaces import IReactorTime

from umoc.transport.engine import Outgoing
from umoc.transport.socketio import ClientSocket, Identity

__all__ = ["RECOVERABLE_REASONS", "Recovered", "RecoveryStore"]

#: Disconnections the client did not ask for: only these keep a socket's state.
RECOVERABLE_REASONS = frozenset({"transport close", "ping timeout", "server shutting down"})


@dataclass(slots=True)
class _Entry:
    seq: int
    users: frozenset[int]
    message: Outgoing
    at: float


@dataclass(slots=True)
class _Persisted:
    sid: str
    user_id: int
    session_id: str
    namespace: str
    start_seq: int
    at: float


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a recovered socket gets back: its ids and the events it missed, in order."""

    sid: str
    pid: str
    missed: list[Outgoing]
    #: Where the log stands for this socket: a later recovery without an offset replays from here.
    start_seq: int


class RecoveryStore:
    """Offsets, the recent-broadcast log, and the sockets that may come back."""

    def __init__(self, clock: IReactorTime, window: float, max_entries: int = 50_000) -> None:
        self.clock = clock
        self.window = window
        self.max_entries = max_entries
        self._node = secrets.token_hex(4)
        self._counter = 0
        #: Position in the log: every kept broadcast gets the next one.
        self._seq = 0
        self._log: deque[_Entry] = deque()
        self._seq_by_offset: dict[str, int] = {}
        self._offset_by_seq: dict[int, str] = {}
        #: Highest seq dropped from the log: an offset at or before it cannot be recovered from.
        self._pruned_through = 0
        self._live: dict[str, ClientSocket] = {}
        self._persisted: dict[str, _Persisted] = {}
        #: user_id -> live or persisted sockets on this node (who the log is kept for).
        self._users: dict[int, int] = {}

    # -- the log ------------------------------------------------------------

    def next_offset(self) -> str:
        """A new offset, unique across nodes (the node id is part of it)."""
        self._counter += 1
        return f"{self._node}-{self._counter:x}"

    def keepers(self, user_ids: Iterable[int]) -> frozenset[int]:
        """Those of ``user_ids`` with a socket here that may come back: whom a broadcast to them is kept for.

        An intersection in C (a group's 1,000 members per broadcast, not a
        Python loop over them), and none at all while no socket here has
        recovery; `Hub.tell_all` finds them once for several events.
        """
        if not self._users:
            return frozenset()
        return frozenset(self._users.keys() & user_ids)

    def record(
        self, offset: str, user_ids: Iterable[int], message: Outgoing, keepers: frozenset[int] | None = None
    ) -> None:
        """Keep a broadcast made with ``offset`` (here or on another node) if one of its users may want it back.

        ``keepers``: `keepers` of ``user_ids``, when the caller found them already.
        """
        users = self.keepers(user_ids) if keepers is None else keepers
        if not users or offset in self._seq_by_offset:
            return
        self._seq += 1
        seq = self._seq
        self._log.append(_Entry(seq, users, message, self.clock.seconds()))
        self._seq_by_offset[offset] = seq
        self._offset_by_seq[seq] = offset
        self._prune()

    def _prune(self) -> None:
        horizon = self.clock.seconds() - self.window
        log = self._log
        while log and (log[0].at < horizon or len(log) > self.max_entries):
            entry = log.popleft()
            self._pruned_through = entry.seq
            offset = self._offset_by_seq.pop(entry.seq, None)
            if offset is not None:
                self._seq_by_offset.pop(offset, None)
        for pid in [p for p, s in self._persisted.items() if s.at < horizon]:
            self._forget_persisted(pid)

    # -- sockets ------------------------------------------------------------

    def new_pid(self) -> str:
        return secrets.token_urlsafe(18)

    def attach(self, socket: ClientSocket, start_seq: int | None = None) -> None:
        """A socket is connected (new, or recovered from ``start_seq``)."""
        assert socket.pid is not None
        self._live[socket.pid] = socket
        socket.recovery_start = self._seq if start_seq is None else start_seq
        self._users[socket.user_id] = self._users.get(socket.user_id, 0) + 1

    def detach(self, socket: ClientSocket, reason: str) -> None:
        """A socket is gone; keep its state for the window when the client may come back."""
        if socket.pid is None or self._live.get(socket.pid) is not socket:
            return
        del self._live[socket.pid]
        if reason in RECOVERABLE_REASONS and self.window > 0:
            self._persisted[socket.pid] = _Persisted(
                socket.sid,
                socket.user_id,
                socket.session_id,
                socket.namespace,
                socket.recovery_start,
                self.clock.seconds(),
            )
        else:
            self._release_user(socket.user_id)

    def _forget_persisted(self, pid: str) -> None:
        state = self._persisted.pop(pid, None)
        if state is not None:
            self._release_user(state.user_id)

    def _release_user(self, user_id: int) -> None:
        left = self._users.get(user_id, 1) - 1
        if left > 0:
            self._users[user_id] = left
        else:
            self._users.pop(user_id, None)

    def restore(self, auth: Any, identity: Identity, namespace: str) -> Recovered | None:
        """The missed events for a CONNECT carrying ``{pid, offset}``, or None to start afresh.

        Call right before the socket is attached, in the same reactor turn,
        so no broadcast can fall between the replay and live delivery.
        """
        if not isinstance(auth, dict):
            return None
        pid, offset = auth.get("pid"), auth.get("offset")
        if not isinstance(pid, str) or (offset is not None and not isinstance(offset, str)):
            return None
        live = self._live.get(pid)
        if live is not None and live.session_id == identity.session_id and live.namespace == namespace:
            # The old connection is dead but nobody noticed yet (half-open TCP).
            live.connection.engine.close("transport close", notify=False)
        self._prune()
        state = self._persisted.get(pid)
        if state is None or state.session_id != identity.session_id or state.namespace != namespace:
            return None
        after = state.start_seq if offset is None else self._seq_by_offset.get(offset)
        if after is None or after < self._pruned_through:
            return None
        self._forget_persisted(pid)
        user_id = state.user_id
        missed: list[Outgoing] = []
        for entry in reversed(self._log):
            if entry.seq <= after:
                break
            if user_id in entry.users:
                missed.append(entry.message)
        missed.reverse()
        return Recovered(state.sid, pid, missed, after)
