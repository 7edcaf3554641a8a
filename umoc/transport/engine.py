"""Engine.IO v4 sessions, independent of the transport that carries them.

Wire protocol (https://socket.io/docs/v4/engine-io-protocol/), as UMOC speaks it::

    client                                   server
    GET /socket.io/?EIO=4&transport=websocket   (or polling)
                                      <-     0{"sid":..,"upgrades":[..],"pingInterval":25000,
                                                "pingTimeout":20000,"maxPayload":1000000}
                                      <-     2            every pingInterval
    3                                 ->                  within pingTimeout, or the session closes
    4<socket.io packet>               <->    4<socket.io packet>   (text)
    <raw bytes>                       <->    <raw bytes>           (binary attachment, WebSocket)
    1                                 ->                  close

An `EngineSession` owns the heartbeat and the sid; a transport (WebSocket or
long-polling) only moves frames.  Upward, each decoded MESSAGE goes to the
session's `EngineHandler` (the Socket.IO layer).
"""

from __future__ import annotations

import secrets
from typing import Any, Callable, Container, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from umoc.protocol.engineio import (
    EnginePacket,
    EnginePacketType,
    ProtocolError,
    decode_packet,
    open_packet,
)

__all__ = ["EngineHandler", "EngineServer", "EngineSession", "EngineTransport", "Outgoing"]

log = Logger()


class Outgoing:
    """One Engine.IO-level message, encoded once, sent to any number of sessions.

    ``frames`` are WebSocket-form frames: str (``"42[...]"``) or raw bytes
    (binary attachments).  Transports cache their own encoding in ``cache``
    under their name, so a broadcast to N sockets, whatever mix of
    WebSocket and long-polling they use, frames its bytes once per kind.
    """

    __slots__ = ("frames", "cache", "size")

    def __init__(self, frames: list[str | bytes], size: int | None = None) -> None:
        self.frames = frames
        self.cache: dict[str, Any] = {}
        #: What the frames hold (characters of text, bytes of binary), for the slow-reader bound;
        #: a caller that knows it (one text frame: its length) saves the sum.
        self.size = sum(len(f) for f in frames) if size is None else size

    @classmethod
    def from_socketio(cls, frames: list[str | bytes]) -> Outgoing:
        """Wrap Socket.IO frames (from ``socketio.encode``) in Engine.IO MESSAGE packets."""
        if len(frames) == 1:
            first = frames[0]
            if type(first) is str:  # nearly always: one text packet, no attachments
                text = "4" + first
                return cls([text], len(text))
        return cls([("4" + f) if isinstance(f, str) else f for f in frames])


class EngineTransport(Protocol):
    """What a session needs from whatever carries its frames."""

    name: str

    def send_outgoing(self, message: Outgoing) -> None: ...

    def send_packets(self, packets: list[EnginePacket]) -> None: ...

    def close(self) -> None: ...


class EngineHandler(Protocol):
    """The layer above Engine.IO: Socket.IO."""

    def on_message(self, data: str | bytes) -> None: ...

    def on_close(self, reason: str) -> None: ...

    def on_ping(self) -> None:
        """The session just sent a PING: the heartbeat is a clock the layer above may time things by."""


class EngineSession:
    """One Engine.IO session: sid, heartbeat, and the current transport."""

    def __init__(
        self,
        server: EngineServer,
        sid: str,
        transport: EngineTransport,
        remote_ip: str,
        query: dict[str, str],
        headers: dict[str, str],
    ) -> None:
        self.server = server
        self.sid = sid
        self.transport = transport
        self.remote_ip = remote_ip
        self.query = query
        self.headers = headers
        self.closed = False
        #: Whether the client is told about the close (False: it left, or broke the protocol).
        self.notify_close = True
        self.handler: EngineHandler | None = None
        self._clock = server.clock
        self._ping_call: IDelayedCall | None = None
        self._timeout_call: IDelayedCall | None = None
        self._deadline = 0.0

    # -- lifecycle --------------------------------------------------------

    def start(self, upgrades: list[str]) -> None:
        """Send OPEN, build the Socket.IO handler, start the heartbeat."""
        cfg = self.server.settings
        self.transport.send_packets(
            [
                open_packet(
                    self.sid,
                    upgrades,
                    int(cfg.ping_interval * 1000),
                    int(cfg.ping_timeout * 1000),
                    cfg.max_payload,
                )
            ]
        )
        self.handler = self.server.handler_factory(self)
        self._schedule_ping()

    def _schedule_ping(self) -> None:
        cfg = self.server.settings
        # The PONG is due pingInterval + pingTimeout from now, however late the PING timer runs.
        self._deadline = self._clock.seconds() + cfg.ping_interval + cfg.ping_timeout
        self._ping_call = self._clock.callLater(cfg.ping_interval, self._send_ping)

    def _send_ping(self) -> None:
        self._ping_call = None
        if self.closed:
            return
        self.transport.send_packets([EnginePacket(EnginePacketType.PING)])
        delay = max(0.0, self._deadline - self._clock.seconds())
        self._timeout_call = self._clock.callLater(delay, self._ping_timed_out)
        if self.handler is not None:
            self.handler.on_ping()

    def heartbeat_expired(self) -> bool:
        """Close the session if its PONG is overdue; True when it is (or already was) closed.

        Long-polling asks on every request, so a session whose timer has
        not run yet never answers a request after its deadline.
        """
        if not self.closed and self._clock.seconds() >= self._deadline:
            self.close("ping timeout", notify=False)
        return self.closed

    def _ping_timed_out(self) -> None:
        self._timeout_call = None
        self.close("ping timeout", notify=False)

    def close(self, reason: str = "server close", notify: bool = True) -> None:
        """End the session.

        ``notify`` is for the transport: True when the server decided to
        close (logout, bad auth), so packets still queued and a CLOSE reach
        the client; False when the client left or broke the protocol, so
        nothing more is owed to it.
        """
        if self.closed:
            return
        self.closed = True
        self.notify_close = notify
        for call in (self._ping_call, self._timeout_call):
            if call is not None and call.active():
                call.cancel()
        self._ping_call = self._timeout_call = None
        self.server.forget(self)
        try:
            self.transport.close()
        finally:
            if self.handler is not None:
                handler, self.handler = self.handler, None
                handler.on_close(reason)

    def transport_closed(self, transport: EngineTransport, reason: str) -> None:
        """The transport went away (TCP closed, error); only the current one counts."""
        if transport is self.transport:
            self.close(reason, notify=False)

    # -- traffic ----------------------------------------------------------

    def send(self, message: Outgoing) -> None:
        if not self.closed:
            self.transport.send_outgoing(message)

    def on_packet(self, packet: EnginePacket) -> None:
        """A decoded Engine.IO packet from the client."""
        kind = packet.type
        if kind is EnginePacketType.MESSAGE:
            if self.handler is not None and packet.data is not None:
                self.handler.on_message(packet.data)
            elif self.handler is not None:
                self.handler.on_message("")
        elif kind is EnginePacketType.PONG:
            if self._timeout_call is not None and self._timeout_call.active():
                self._timeout_call.cancel()
                self._timeout_call = None
                self._schedule_ping()
        elif kind is EnginePacketType.CLOSE:
            self.close("client close", notify=False)
        elif kind is EnginePacketType.NOOP:
            pass
        else:
            # PING from a client, OPEN, or UPGRADE outside an upgrade: not allowed.
            self.close("protocol error", notify=False)

    def on_frame(self, frame: str | bytes) -> None:
        """A raw WebSocket frame; bad frames end this session only."""
        try:
            packet = decode_packet(frame)
        except ProtocolError:
            self.close("protocol error", notify=False)
            return
        self.on_packet(packet)


class EngineServer:
    """Registry of live Engine.IO sessions and their settings."""

    def __init__(
        self,
        clock: IReactorTime,
        settings: Any,
        handler_factory: Callable[[EngineSession], EngineHandler],
        unlimited: Container[str] = (),
    ) -> None:
        self.clock = clock
        self.settings = settings
        self.handler_factory = handler_factory
        #: Addresses exempt from ``max_sockets_per_ip`` (``ratelimits.trusted_networks``).
        self.unlimited = unlimited
        self.sessions: dict[str, EngineSession] = {}
        self._per_ip: dict[str, int] = {}
        #: Run by `close_all` after the sessions are closed (transports drop their leftovers).
        self.shutdown_hooks: list[Callable[[], None]] = []

    def new_sid(self) -> str:
        return secrets.token_urlsafe(15)

    def may_open(self, remote_ip: str) -> bool:
        """Whether ``remote_ip`` is under its connection limit (or has none: a trusted network)."""
        return self._per_ip.get(remote_ip, 0) < self.settings.max_sockets_per_ip or remote_ip in self.unlimited

    def open(
        self,
        transport: EngineTransport,
        remote_ip: str,
        query: dict[str, str],
        headers: dict[str, str],
        upgrades: list[str],
    ) -> EngineSession:
        session = EngineSession(self, self.new_sid(), transport, remote_ip, query, headers)
        self.sessions[session.sid] = session
        self._per_ip[remote_ip] = self._per_ip.get(remote_ip, 0) + 1
        session.start(upgrades)
        return session

    def forget(self, session: EngineSession) -> None:
        if self.sessions.pop(session.sid, None) is not None:
            left = self._per_ip.get(session.remote_ip, 1) - 1
            if left > 0:
                self._per_ip[session.remote_ip] = left
            else:
                self._per_ip.pop(session.remote_ip, None)

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            # Nothing is kept for polling clients to collect: the server is going away.
            session.close("server shutting down", notify=False)
        for hook in self.shutdown_hooks:
            hook()
