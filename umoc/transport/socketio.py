"""Socket.IO v5 on top of an Engine.IO session.

Wire protocol (https://socket.io/docs/v4/socket-io-protocol/), inside
Engine.IO MESSAGE packets::

    0{"sessionID":..,"token":..}      ->             CONNECT (auth payload optional;
                                                     the URL query works too)
                                      <-  0{"sid":".."}                          accepted
                                      <-  44{"message":"Invalid session",        refused, then close
                                             "data":{"code":"not_authenticated"}}
                                      <-  42["connection_successful",{...}]
    42["ping",{..}]                   ->             EVENT
    421["ping",{..}]                  ->             EVENT asking for ack id 1
                                      <-  431[{..}]  ACK
    451-["x",{"_placeholder":true,"num":0}] + <bytes>   BINARY_EVENT
    41                                ->             DISCONNECT (the Engine.IO session stays)
    40/chat,                          ->
                                      <-  44/chat,{"message":"Invalid namespace",...}  (only "/" is served)

With connection state recovery on, the CONNECT answer also carries a
``pid`` and a CONNECT with ``{pid, offset}`` gets back what that socket
missed (see ``umoc.transport.recovery``).  A session that has not connected
any namespace within ``connect_timeout`` is closed.

The application (`SocketApp`) decides who may connect and what events do;
this module only keeps per-namespace sockets and turns packets into calls.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from umoc.errors import Code
from umoc.protocol.engineio import ProtocolError
from umoc.protocol.socketio import (
    Decoder,
    PacketType,
    SocketPacket,
    decode_plain_event,
    encode,
    encode_event,
    plain_ack_text,
)
from umoc.transport.engine import EngineSession, Outgoing

__all__ = ["AuthError", "ClientSocket", "Identity", "Recovery", "Restored", "SocketApp", "SocketIOConnection"]

log = Logger()


class AuthError(Exception):
    """A CONNECT that must be refused; the message and the code go to the client.

    CONNECT_ERROR ``{"message": message, "data": {"code": code}}``: socket.io-client
    shows ``data`` as the ``connect_error`` error's ``data`` property, as
    Socket.IO's own servers send it; ``code`` is one of `umoc.errors.CODES`.
    """

    def __init__(self, message: str, code: Code, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after


def _refusal(message: str, code: Code, retry_after: float | None = None) -> dict[str, Any]:
    """The CONNECT_ERROR payload (``retry_after`` in ``data`` when there is one)."""
    data: dict[str, Any] = {"code": code}
    if retry_after is not None:
        data["retry_after"] = retry_after
    return {"message": message, "data": data}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a socket belongs to, as established at CONNECT."""

    user_id: int
    username: str
    session_id: str
    session_expires: float


class SocketApp(Protocol):
    """What the Socket.IO layer needs from the application."""

    namespaces: frozenset[str]

    def authenticate(self, connection: SocketIOConnection, auth: Any) -> defer.Deferred[Identity]: ...

    def on_connect(self, socket: ClientSocket) -> None: ...

    def on_event(self, socket: ClientSocket, event: str, args: list[Any], ack_id: int | None) -> None: ...

    def on_disconnect(self, socket: ClientSocket, reason: str) -> None: ...


class Restored(Protocol):
    """A socket brought back by connection state recovery: its ids and what it missed."""

    @property
    def sid(self) -> str: ...

    @property
    def pid(self) -> str: ...

    @property
    def missed(self) -> list[Outgoing]: ...

    @property
    def start_seq(self) -> int: ...


class Announcement(Protocol):
    """A built server event (``umoc.domain.notices.Notice``): its name and its Socket.IO arguments.

    Declared here, structurally, so the layers below the domain can send
    notices without importing the registry that builds them.
    """

    @property
    def name(self) -> str: ...

    @property
    def args(self) -> tuple[Any, ...]: ...


class Recovery(Protocol):
    """Connection state recovery as this layer uses it (``umoc.transport.recovery`` implements it)."""

    def restore(self, auth: Any, identity: Identity, namespace: str) -> Restored | None: ...

    def new_pid(self) -> str: ...

    def attach(self, socket: ClientSocket, start_seq: int | None = None) -> None: ...

    def detach(self, socket: ClientSocket, reason: str) -> None: ...


class ClientSocket:
    """One authenticated client in one namespace."""

    __slots__ = (
        "sid",
        "connection",
        "namespace",
        "identity",
        "connected",
        "auth",
        "pid",
        "recovery_start",
        "__weakref__",
    )

    def __init__(
        self,
        connection: SocketIOConnection,
        namespace: str,
        identity: Identity,
        auth: Any = None,
        sid: str | None = None,
    ) -> None:
        self.sid = sid or secrets.token_urlsafe(15)
        self.connection = connection
        self.namespace = namespace
        self.identity = identity
        self.connected = True
        #: The CONNECT packet's payload (None when it had none).
        self.auth = auth
        #: Private id for connection state recovery; None when recovery is off.
        self.pid: str | None = None
        self.recovery_start = 0

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
        return self.connection.engine.remote_ip

    def tell(self, notice: Announcement) -> None:
        """Send one declared server event to this socket only."""
        self.emit(notice.name, *notice.args)

    def emit(self, event: str, *args: Any) -> None:
        """Send one event to this socket only (the conformance server's echo; the chat server uses `tell`)."""
        if self.connected:
            self.send(Outgoing.from_socketio(encode_event(event, *args, namespace=self.namespace)))

    def send(self, message: Outgoing) -> None:
        """Send an already-encoded message (a broadcast encodes once for all sockets)."""
        if self.connected:
            self.connection.engine.send(message)

    def ack(self, ack_id: int, *args: Any) -> None:
        if self.connected:
            text = plain_ack_text(ack_id, args, self.namespace)
            if text is not None:
                text = "4" + text
                self.connection.engine.send(Outgoing([text], len(text)))
            else:
                frames = encode(SocketPacket(PacketType.ACK, self.namespace, list(args), ack_id))
                self.connection.engine.send(Outgoing.from_socketio(frames))

    def disconnect(self, reason: str = "server disconnect") -> None:
        """Server-initiated disconnect: DISCONNECT for the namespace, then close the connection."""
        if not self.connected:
            return
        frames = encode(SocketPacket(PacketType.DISCONNECT, self.namespace))
        self.connection.engine.send(Outgoing.from_socketio(frames))
        self.connection.engine.close(reason)


class SocketIOConnection:
    """The Socket.IO side of one Engine.IO session (an `EngineHandler`)."""

    def __init__(
        self,
        engine: EngineSession,
        app: SocketApp,
        max_attachments: int = 10,
        max_depth: int = 32,
        connect_timeout: float | None = None,
        recovery: Recovery | None = None,
    ) -> None:
        self.engine = engine
        self.app = app
        self.recovery = recovery
        self.sockets: dict[str, ClientSocket] = {}
        self._pending: set[str] = set()
        self._decoder = Decoder(max_attachments=max_attachments, max_depth=max_depth)
        if connect_timeout is None:
            connect_timeout = engine.server.settings.connect_timeout
        self._connect_timeout = connect_timeout
        self._connect_timer: IDelayedCall | None = None
        #: When a connection with no socket is closed, while no timer is set for it yet (see `on_ping`).
        self._connect_deadline: float | None = None
        self._arm_connect_timer()

    def _arm_connect_timer(self) -> None:
        """A connection with no authenticated socket holds a slot of its IP's quota for nothing.

        A deadline after the next PING (the defaults: 45 s, the PING at 25 s)
        sets no timer yet: PINGs come on their own timer, and the last one
        before the deadline sets it (`on_ping`).  Nearly every connection
        sends its CONNECT within a round trip, so nearly none ever sets one:
        a timer fewer to make and cancel per connect.
        """
        timeout = self._connect_timeout
        if not timeout:
            return
        server = self.engine.server
        if timeout > server.settings.ping_interval:
            self._connect_deadline = server.clock.seconds() + timeout
        else:
            self._connect_timer = server.clock.callLater(timeout, self._connect_timed_out)

    def on_ping(self) -> None:
        """Time the connect deadline now if it may come before the next PING.

        The next PING follows the client's PONG (within ``ping_timeout``, else
        the session ends) by ``ping_interval``.
        """
        deadline = self._connect_deadline
        if deadline is None or self.sockets:
            return
        server = self.engine.server
        left = deadline - server.clock.seconds()
        if left <= server.settings.ping_interval + server.settings.ping_timeout:
            self._connect_deadline = None
            self._connect_timer = server.clock.callLater(max(0.0, left), self._connect_timed_out)

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if not self.sockets:
            self.engine.close("connect timeout", notify=False)

    def _cancel_connect_timer(self) -> None:
        self._connect_deadline = None
        if self._connect_timer is not None and self._connect_timer.active():
            self._connect_timer.cancel()
        self._connect_timer = None

    def send_packet(self, packet: SocketPacket) -> None:
        self.engine.send(Outgoing.from_socketio(encode(packet)))

    # -- EngineHandler ----------------------------------------------------

    def on_message(self, data: str | bytes) -> None:
        decoder = self._decoder
        if type(data) is str and data[:1] == "2" and not decoder.waiting:
            # The common case (an EVENT on "/") without the general decoder's steps.
            try:
                event = decode_plain_event(data, decoder.max_depth)
            except ProtocolError:
                self.engine.close("parse error", notify=False)
                return
            if event is not None:
                socket = self.sockets.get("/")
                if socket is not None:
                    payload = event[1]
                    self.app.on_event(socket, payload[0], payload[1:], event[0])
                return
        try:
            packet = decoder.feed(data)
        except ProtocolError:
            self.engine.close("parse error", notify=False)
            return
        if packet is not None:
            self._on_packet(packet)

    def on_close(self, reason: str) -> None:
        self._cancel_connect_timer()
        sockets, self.sockets = list(self.sockets.values()), {}
        for socket in sockets:
            self._drop(socket, reason)

    # -- packets ----------------------------------------------------------

    def _on_packet(self, packet: SocketPacket) -> None:
        kind = packet.type
        nsp = packet.namespace
        if kind is PacketType.CONNECT:
            self._on_connect(nsp, packet.data)
        elif kind in (PacketType.EVENT, PacketType.BINARY_EVENT):
            socket = self.sockets.get(nsp)
            if socket is None:
                return
            event, *args = packet.data
            self.app.on_event(socket, event, args, packet.id)
        elif kind is PacketType.DISCONNECT:
            socket = self.sockets.pop(nsp, None)
            if socket is not None:
                self._drop(socket, "client namespace disconnect")
                if not self.sockets and self._connect_timer is None and self._connect_deadline is None:
                    self._arm_connect_timer()
        elif kind in (PacketType.ACK, PacketType.BINARY_ACK):
            # UMOC never asks clients for acks; a stray one is harmless.
            return
        else:
            # CONNECT_ERROR from a client is not a thing.
            self.engine.close("parse error", notify=False)

    def _on_connect(self, nsp: str, auth: Any) -> None:
        if nsp not in self.app.namespaces:
            self.send_packet(SocketPacket(PacketType.CONNECT_ERROR, nsp, _refusal("Invalid namespace", "not_found")))
            return
        if nsp in self.sockets or nsp in self._pending:
            return
        self._pending.add(nsp)
        d = self.app.authenticate(self, auth)
        d.addCallbacks(lambda identity: self._accepted(nsp, identity, auth), lambda f: self._refused(nsp, f))
        d.addErrback(lambda f: log.failure("Error finishing a CONNECT", f))

    def _accepted(self, nsp: str, identity: Identity, auth: Any) -> None:
        """CONNECT answer, replay of missed events (recovery), then the application's welcome.

        All in one reactor turn, so no broadcast can slip between the
        replayed events and live delivery.
        """
        self._pending.discard(nsp)
        if self.engine.closed:
            return
        self._cancel_connect_timer()
        recovery = self.recovery
        restored = recovery.restore(auth, identity, nsp) if recovery is not None else None
        if self.engine.closed:
            return
        socket = ClientSocket(self, nsp, identity, auth, restored.sid if restored else None)
        self.sockets[nsp] = socket
        answer: dict[str, Any] = {"sid": socket.sid}
        if recovery is not None:
            socket.pid = restored.pid if restored else recovery.new_pid()
            answer["pid"] = socket.pid
            recovery.attach(socket, restored.start_seq if restored else None)
        self.send_packet(SocketPacket(PacketType.CONNECT, nsp, answer))
        if restored is not None:
            for message in restored.missed:
                socket.send(message)
        self.app.on_connect(socket)

    def _refused(self, nsp: str, failure: Any) -> None:
        self._pending.discard(nsp)
        if failure.check(AuthError):
            refusal = _refusal(failure.value.message, failure.value.code, failure.value.retry_after)
        else:
            log.failure("Error authenticating a socket", failure)
            refusal = _refusal("Authentication failed", "internal")
        if self.engine.closed:
            return
        self.send_packet(SocketPacket(PacketType.CONNECT_ERROR, nsp, refusal))
        if not self.sockets:
            self.engine.close("authentication failed")

    def _drop(self, socket: ClientSocket, reason: str) -> None:
        if socket.connected:
            socket.connected = False
            if self.recovery is not None:
                self.recovery.detach(socket, reason)
            self.app.on_disconnect(socket, reason)
