"""Stand-ins for a socket, its transport and an Engine.IO handler, for tests without a network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from umoc.protocol.engineio import EnginePacket
from umoc.protocol.socketio import Decoder, PacketType
from umoc.transport.engine import EngineSession, Outgoing
from umoc.transport.socketio import Identity

__all__ = ["FakeConnection", "FakeEngine", "FakeSocket", "FakeTransport", "Recorder"]


class FakeTransport:
    """An `EngineTransport` that records what it would send: packets, and the frames of messages."""

    name = "fake"

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False

    def send_outgoing(self, message: Outgoing) -> None:
        self.sent.extend(message.frames)

    def send_packets(self, packets: list[EnginePacket]) -> None:
        self.sent.extend(packets)

    def close(self) -> None:
        self.closed = True


class Recorder:
    """An `EngineHandler` that keeps what it is given: messages, and the reasons it was closed."""

    def __init__(self, session: EngineSession | None = None) -> None:
        self.session = session
        self.messages: list[str | bytes] = []
        self.reasons: list[str] = []

    @property
    def closed_with(self) -> str | None:
        """The reason of the last close, if any."""
        return self.reasons[-1] if self.reasons else None

    def on_message(self, data: str | bytes) -> None:
        self.messages.append(data)

    def on_close(self, reason: str) -> None:
        self.reasons.append(reason)

    def on_ping(self) -> None:
        pass


@dataclass
class FakeEngine:
    closed_with: list[str] = field(default_factory=list)
    remote_ip: str = "192.0.2.1"

    def close(self, reason: str, notify: bool = True) -> None:
        self.closed_with.append(reason)


@dataclass
class FakeConnection:
    engine: FakeEngine = field(default_factory=FakeEngine)


class FakeSocket:
    """What the hub, the router and recovery need of a `ClientSocket`; records what the server does to it.

    ``emitted``: events sent to this socket alone; ``acks``: answers to its
    acknowledged events; ``received``: every event that reached it, broadcasts
    included, decoded from the frames as a client would.
    """

    def __init__(
        self,
        user_id: int = 1,
        session_id: str = "s1",
        username: str | None = None,
        *,
        pid: str | None = None,
        sid: str = "sid-1",
        session_expires: float = 0.0,
    ) -> None:
        self.identity = Identity(user_id, username or f"user{user_id}", session_id, session_expires)
        self.sid = sid
        self.namespace = "/"
        self.pid = pid
        self.recovery_start = 0
        self.connection = FakeConnection()
        self.connected = True
        self.disconnected: str | None = None
        self.emitted: list[tuple[Any, ...]] = []
        self.acks: list[tuple[Any, ...]] = []
        self.received: list[tuple[Any, ...]] = []
        self._decoder = Decoder()
        self._waiting: dict[int, defer.Deferred[Any]] = {}

    @classmethod
    def of(cls, identity: Identity) -> FakeSocket:
        return cls(identity.user_id, identity.session_id, identity.username, session_expires=identity.session_expires)

    @property
    def user_id(self) -> int:
        return self.identity.user_id

    @property
    def username(self) -> str:
        return self.identity.username

    @property
    def session_id(self) -> str:
        return self.identity.session_id

    @property
    def remote_ip(self) -> str:
        return "127.0.0.1"

    def tell(self, notice: Any) -> None:
        self.emit(notice.name, *notice.args)

    def emit(self, event: str, *args: Any) -> None:
        self.emitted.append((event, *args))
        self.received.append((event, *args))

    def send(self, message: Outgoing) -> None:
        for frame in message.frames:
            packet = self._decoder.feed(frame[1:] if isinstance(frame, str) else frame)
            if packet is not None and packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT):
                self.received.append(tuple(packet.data))

    def ack(self, ack_id: int, *args: Any) -> None:
        self.acks.append((ack_id, *args))
        waiting = self._waiting.pop(ack_id, None)
        if waiting is not None:
            waiting.callback(args[0] if len(args) == 1 else list(args))

    def answer(self, ack_id: int) -> defer.Deferred[Any]:
        """Fires with the payload of the ack ``ack_id`` (call before the event is dispatched)."""
        d: defer.Deferred[Any] = defer.Deferred()
        self._waiting[ack_id] = d
        return d

    def events(self, name: str) -> list[Any]:
        """The payloads of every ``name`` event received so far."""
        return [args[1] if len(args) == 2 else list(args[1:]) for args in self.received if args[0] == name]

    def disconnect(self, reason: str = "") -> None:
        self.connected = False
        self.disconnected = reason
