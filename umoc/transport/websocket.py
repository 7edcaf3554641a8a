"""The WebSocket transport: Autobahn moves frames, `EngineSession` does the rest.

One Engine.IO packet per WebSocket frame: text packets as text frames,
binary attachments as binary frames with no prefix.  Frames larger than
``maxPayload`` are refused by Autobahn itself (close code 1009), which ends
that one connection and nothing else.

Fast writers: one TCP read can hold thousands of small frames, and handling
them all at once would make every other client wait.  A connection handles
a bounded number of frames, then stops reading and lets the reactor serve
everyone else before it takes the next batch: a flood costs the flooder
throughput, not the others latency (``bench/bench_flood.py``).

Writes: what one reactor turn sends to a connection is joined and sent
with one ``send()`` at the end of the turn, straight to the socket
(`TurnWriter`).  Twisted's own ``write`` would register the socket for
writability, wait for the next poll, send, and unregister: two
``epoll_ctl`` and a reactor dispatch per connection per turn, most of
what a fan-out to many sockets costs.  A turn that writes to many
connections sends to them in groups of `TurnWriter.EARLY_FLUSH` as it goes,
so a broadcast's first recipients do not wait for its last.  Only when the
kernel's buffer is full does the rest go through Twisted's buffer (and its
registration).
TLS and test transports are written to as before.

Opening handshake: twisted.web has already parsed the upgrade request when
`EngineWebSocketResource` renders it.  Autobahn's own resource writes the
request back out as bytes and parses it again, line by line, with a debug
line per step; for the common request (a plain GET with the usual headers,
one protocol version, no subprotocol, no compression accepted, nothing the
application refuses) the handshake is checked straight from twisted.web's
request, with Autobahn's own rules, and answered in one write.  Anything
else, every request Autobahn or the application would refuse included, goes
through Autobahn's resource unchanged, so refusals are exactly Autobahn's.

Slow readers: the protocol registers as the TCP transport's streaming
producer, so Twisted says when the kernel buffer is full.  Bytes written
while paused are counted; past ``max_buffered`` the client is dropped,
because holding its backlog would hurt everyone else's memory.
"""

from __future__ import annotations

import base64
import collections
import errno
import hashlib
import inspect
import re
from pprint import pformat
from typing import Any, NamedTuple, cast

import autobahn.twisted.websocket as _autobahn_twisted_websocket
import autobahn.websocket.protocol as _autobahn_protocol
import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.util import create_transport_details, peer2str
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PERMESSAGE_COMPRESSION_EXTENSION
from autobahn.websocket.protocol import FrameHeader, TrafficStats, WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

from umoc.protocol.engineio import EnginePacket, encode_packet
from umoc.protocol.websocket import encode_frame, parse_client_frame
from umoc.transport.engine import EngineServer, EngineSession, Outgoing
from umoc.transport.gate import Gatekeeper
from umoc.transport.probe import UpgradeProbe

__all__ = ["EngineWebSocketFactory", "EngineWebSocketProtocol", "EngineWebSocketResource"]

log = Logger()


def _first(params: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in params.items() if v}


class _LazyPformat:
    """``pformat(value)``, computed only when a log line really is written."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return pformat(self.value)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _autobahn_pformat(value: Any, *args: Any, **kwargs: Any) -> Any:
    """Autobahn pretty-prints every connection's ~40 settings for a debug line, logged or not.

    That is a sixth of the CPU a new WebSocket costs.  The one list it
    formats (the settings) becomes a lazy value; anything else (dicts it
    returns from ``__str__``) is formatted at once, as before.
    """
    if type(value) is list and not args and not kwargs:
        return _LazyPformat(value)
    return pformat(value, *args, **kwargs)


_autobahn_protocol.pformat = _autobahn_pformat  # type: ignore[assignment]


class _LazyHltype:
    """``hltype(obj)``, computed only when a log line really is written."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __str__(self) -> str:
        return str(_autobahn_hltype(self.obj))

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


_autobahn_hltype = _autobahn_protocol.hltype
# Autobahn names the method in debug lines on every connect (onConnect, _connectionMade,
# processHandshake, connectionMade, connectionLost): four qualified names coloured per
# connect, logged or not, were about 6% of what a new WebSocket costs (bench_wire connect).
_autobahn_protocol.hltype = _LazyHltype
_autobahn_twisted_websocket.hltype = _LazyHltype


class _Lazy:
    """A per-connection attribute made on first use; assigning it (as Autobahn does) just sets it.

    For what Autobahn builds for every connection that few ever use: the
    UTF-8 validator of its own frame parser (the fast path validates by
    decoding), the transport details and the peer string of its logs.
    """

    __slots__ = ("name", "make")

    def __init__(self, name: str, make: Any) -> None:
        self.name = name
        self.make = make

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        value = self.make(obj)
        setattr(obj, self.name, value)  # not through ``__dict__``: see `EngineWebSocketProtocol.onOpen`
        return value


def _transport_details(protocol: Any) -> Any:
    """What Autobahn's Twisted adapter records in ``connectionMade``."""
    details = create_transport_details(protocol.transport, True)
    details.channel_framing = details.CHANNEL_FRAMING_WEBSOCKET
    return details


class TurnWriter:
    """Sends, at the end of each reactor turn, what the turn wrote to each connection: one ``send()`` each.

    A turn that writes to more than `EARLY_FLUSH` connections (a broadcast
    to a large group) sends to each `EARLY_FLUSH` as it goes, so the first
    recipients are reading while the rest are still being written to: a
    fan-out to 1,000 sockets waited for the whole loop before the first
    ``send()``.  A connection written to again after its early send gets
    a second ``send()``, in order.
    """

    #: Connections written to in one turn before their bytes go out without waiting for the turn's end.
    EARLY_FLUSH = 64

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._dirty: list[EngineWebSocketProtocol] = []
        self._scheduled = False

    def mark(self, protocol: EngineWebSocketProtocol) -> None:
        """``protocol`` has bytes waiting (the first connection of a turn schedules the flush)."""
        if not self._scheduled:
            self._scheduled = True
            self._reactor.callLater(0, self._end_of_turn)
        dirty = self._dirty
        dirty.append(protocol)
        if len(dirty) >= self.EARLY_FLUSH:
            self.flush()

    def _end_of_turn(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for protocol in dirty:
            protocol.flush_writes()


def _direct_socket(transport: Any) -> Any:
    """The socket of a plain TCP connection (None for TLS and anything else: those are written to as usual)."""
    if type(transport) is tcp.Server and not getattr(transport, "TLS", False):
        return transport.socket
    return None


_EMPTY: dict[str, Any] = {}

_WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR)

# The fast handshake's checks, each as strict as Autobahn's or stricter (stricter: Autobahn decides).
#: A request target of printable ASCII: no space, no control character, no fragment ("#").
_PLAIN_TARGET = re.compile(rb"/[\x21\x22\x24-\x7e]*")
#: RFC 9110 token (Autobahn's ``_HTTP_FIELD_NAME``).
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Control characters but HTAB, and DEL (Autobahn's ``_HTTP_FIELD_VALUE_INVALID``).
_FIELD_VALUE_INVALID = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: 16 bytes in base64, as Autobahn checks a Sec-WebSocket-Key.
_WEBSOCKET_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")
_WS_MAGIC = WebSocketProtocol._WS_MAGIC
# Autobahn's states as module constants for the per-frame methods: CPython 3.11 does not specialise
# reading a class attribute through an instance (``self.STATE_OPEN``), a global it does.
_OPEN, _CLOSING, _CLOSED = WebSocketProtocol.STATE_OPEN, WebSocketProtocol.STATE_CLOSING, WebSocketProtocol.STATE_CLOSED
_txaio: Any = txaio
#: What an open connection keeps nothing of (`EngineWebSocketProtocol.onOpen`).
_HANDSHAKE_FIELDS = (
    "_query",
    "_headers",
    "http_request_data",
    "http_response_data",
    "http_headers",
    "http_request_params",
    "http_status_line",
    "http_request_uri",
    "http_request_path",
    "http_request_host",
    "websocket_origin",
    "websocket_protocols",
    "websocket_extensions",
    "_wskey",
)


#: What an open connection sets on itself, in the order the class first learns them (`_learn_fields`).
_OPEN_FIELDS = (
    "is_closed",
    "is_open",
    "session",
    "factory",
    "connected",
    "transport",
    "trafficStats",
    "state",
    "data",
    "openHandshakeTimeout",
    "_fast_limit",
    "_socket",
    "_query",
    "_headers",
    "http_headers",
    "_remote_ip",
    "_out",
    "_paused",
    "_backlog",
    "_next_batch",
    "probe",
)


def _learn_fields(protocol: type) -> None:
    """Have ``protocol`` learn the names `_OPEN_FIELDS` first, on a throwaway instance.

    CPython 3.11 keeps an instance's attributes in a compact array indexed by
    names its class learns from the first instances, at most 30 of them; an
    instance that sets a name past those gets a plain dict for good, and the
    interpreter's fast attribute reads refuse it (see `EngineWebSocketProtocol.onOpen`).
    A connection through Autobahn's own handshake sets some 34 names: were it
    the first of a node, every later connection would set ``_out`` (its first
    write) past the 30 and lose the fast reads.
    """
    seed: Any = object.__new__(protocol)
    for name in _OPEN_FIELDS:
        object.__setattr__(seed, name, None)


class _Handshake(NamedTuple):
    """What a checked upgrade request says, for `EngineWebSocketProtocol.accept_handshake`."""

    headers: dict[str, str]
    query: dict[str, str]
    key: str
    remote_ip: str


def _has_token(value: str | None, token: str) -> bool:
    """Whether the comma-separated header ``value`` holds ``token`` (case-insensitive), as Autobahn reads it."""
    return value is not None and any(part.strip().lower() == token for part in value.split(","))


class EngineWebSocketProtocol(WebSocketServerProtocol):
    """Carries one Engine.IO session over one WebSocket."""

    name = "websocket"
    factory: EngineWebSocketFactory
    #: TCP, TLS or a test's transport: `flush_writes` reads TCP's buffer fields, `_direct_socket` checks which.
    transport: Any
    # What Autobahn sets at run time (its settings become class attributes, see `setProtocolOptions`) or
    # types narrower than it uses them: declared so the checker knows them.
    maxFramePayloadSize: int
    maxMessagePayloadSize: int
    logFrames: bool
    logOctets: bool
    autoPingRestartOnAnyTraffic: bool
    current_frame: FrameHeader | None  # type: ignore[assignment]
    autoPingTimeoutCall: Any  # a timer once auto-ping is on
    openHandshakeTimeout: float
    tcpNoDelay: bool
    http_request_data: bytes | None  # type: ignore[assignment]
    http_response_data: str | None  # type: ignore[assignment]

    #: Autobahn steps (about two per frame) one connection may run per reactor turn.
    STEPS_PER_TURN = 40

    # What Autobahn's ``_connectionMade`` sets to the same value on every connection, set once here
    # (see `_connectionMade`); Autobahn assigns them on a connection when they change.
    _perMessageCompress = None
    trackedTimings: Any = None
    send_state = WebSocketProtocol.SEND_STATE_GROUND
    triggered = False
    wasMaxFramePayloadSizeExceeded = False
    wasMaxMessagePayloadSizeExceeded = False
    closedByMe = False
    failedByMe = False
    droppedByMe = False
    wasClean = False
    wasNotCleanReason: Any = None
    wasServerConnectionDropTimeout = False
    wasOpenHandshakeTimeout = False
    wasCloseHandshakeTimeout = False
    wasServingFlashSocketPolicyFile = False
    localCloseCode = None
    localCloseReason = None
    remoteCloseCode = None
    remoteCloseReason = None
    openHandshakeTimeoutCall = None
    closeHandshakeTimeoutCall = None
    autoPingTimeoutCall = None
    autoPingPending = None
    autoPingPendingCall = None
    autoPingPendingSeq = 0
    autoPingPendingSent = None
    # Autobahn's ``set_valid_events(["message"])``, its observers' table made when asked.
    _valid_events = ["message"]  # noqa: RUF012 - read only
    _results = _Lazy("_results", lambda protocol: {"message": None})
    # What Autobahn's opening handshake sets that an open connection still reads, as its
    # ``succeedHandshake`` leaves them (`accept_handshake` has nothing else to set).
    websocket_version = 13
    inside_message = False
    current_frame = None
    # What the handshake keeps only until `onOpen`: an idle socket should not hold its request for life.
    http_request_data = None
    http_response_data = None
    http_headers: dict[str, str] = _EMPTY
    http_request_params: dict[str, list[str]] = _EMPTY
    _query: dict[str, str] = _EMPTY
    _headers: dict[str, str] = _EMPTY
    # Per connection, set when they change.
    _paused = False
    _backlog = 0
    _remote_ip = ""
    #: Set while this WebSocket is proving itself to replace long-polling.
    probe: UpgradeProbe | None = None
    _next_batch: IDelayedCall | None = None
    _fast_limit = 0
    #: The socket written to directly, and what this reactor turn wrote (see `TurnWriter`).
    _socket: Any = None
    _out: list[bytes] | None = None
    utf8validator = _Lazy("utf8validator", lambda protocol: Utf8Validator())
    #: Autobahn's queue of chopped or synchronous writes, which UMOC never makes (its close and pong may).
    send_queue = _Lazy("send_queue", lambda protocol: collections.deque())
    _transport_details = _Lazy("_transport_details", _transport_details)
    peer = _Lazy("peer", lambda protocol: peer2str(protocol.transport))

    def __init__(self) -> None:
        # Autobahn's ``WebSocketProtocol.__init__`` but its transport details, made when asked (`_Lazy`).
        self.is_closed = _txaio.create_future()
        self.is_open = _txaio.create_future()
        self.session: EngineSession | None = None

    # -- handshake --------------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> None:
        query = _first(request.params)
        self._query = query
        self._headers = dict(request.headers)
        self._remote_ip = self.factory.remote_ip_of(self)
        secure = ISSLTransport.providedBy(self.transport)
        problem = self.factory.refuse_reason(query, self._headers, self._remote_ip, secure)
        if problem:
            raise ConnectionDeny(problem[0], problem[1])

    def accept_handshake(self, handshake: _Handshake, rest: bytes) -> None:
        """Open on a request `EngineWebSocketFactory.check_handshake` accepted: Autobahn's ``succeedHandshake``.

        What it leaves on the connection is what Autobahn's handshake
        leaves that the open connection still reads (the protocol version,
        the frame parser's state); the rest it would drop in `onOpen`.
        """
        self._query = handshake.query
        self._headers = self.http_headers = handshake.headers
        self._remote_ip = handshake.remote_ip
        accept = base64.b64encode(hashlib.sha1(handshake.key.encode("ascii") + _WS_MAGIC).digest())
        server = self.factory.server
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            + (f"Server: {server}\r\n".encode() if server else b"")
            + b"Upgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept
            + b"\r\n\r\n"
        )
        self.trafficStats.preopenOutgoingOctetsWireLevel += len(response)
        self.transport.write(response)
        self.state = self.STATE_OPEN
        self.data = rest
        self._onOpen()
        _txaio.resolve(self.is_open, None)
        if self.data:
            self.consumeData()

    def _connectionMade(self) -> None:
        """Autobahn's, for a connection whose settings are its class's (`EngineWebSocketFactory.setProtocolOptions`).

        Autobahn copies each setting the connection lacks from the factory
        and pretty-prints them all for a debug line, then sets some thirty
        fields: those with the same value on every connection are class
        attributes here, the rest are set below.  A test compares the result
        with Autobahn's own.
        """
        self.trafficStats = TrafficStats()
        if self.trackTimings:
            self.setTrackTimings(True)
        self.state = self.STATE_CONNECTING
        self.data = b""
        if self.openHandshakeTimeout > 0:
            self.openHandshakeTimeoutCall = self.factory._batched_timer.call_later(
                self.openHandshakeTimeout, self.onOpenHandshakeTimeout
            )
        self.factory.countConnections += 1

    def _onOpen(self) -> None:
        # Autobahn's Twisted adapter records a TLS connection's channel id and certificate first.
        if ISSLTransport.providedBy(self.transport):
            super()._onOpen()
        else:
            self.onOpen()

    def connectionMade(self) -> None:
        # Autobahn's Twisted adapter, but its transport details and peer string are made when asked (`_Lazy`).
        try:
            self.transport.setTcpNoDelay(self.tcpNoDelay)
        except Exception:  # noqa: BLE001 - as Autobahn: not every transport has Nagle's algorithm
            pass
        self._connectionMade()
        # Largest frame the fast path takes: one Autobahn would not refuse (limits are set by now).
        limits = [n for n in (self.maxFramePayloadSize, self.maxMessagePayloadSize) if n > 0]
        self._fast_limit = min(limits, default=65535)
        # Take over flow control from twisted.web's HTTP channel.
        transport = self.transport
        self._socket = _direct_socket(transport)
        try:
            transport.unregisterProducer()
        except Exception:  # noqa: BLE001 - no producer registered is fine
            pass
        try:
            transport.registerProducer(self, True)
        except Exception:  # noqa: BLE001 - a transport without flow control still works
            log.debug("transport does not accept a producer")

    def onOpen(self) -> None:
        try:
            self._open()
        finally:
            # What only the handshake needed: back to the class's empty values (None, `_EMPTY`, or
            # unset).  Never through ``self.__dict__``: on CPython 3.11 reading an instance's
            # ``__dict__`` moves its attributes into a dict object for good, and the interpreter's
            # specialised attribute reads refuse such an object, so every ``self.x`` of every frame
            # after it took the slow generic lookup (bench_wire ingest1: about 3,700 instructions).
            for name in _HANDSHAKE_FIELDS:
                value = getattr(self, name, None)
                if value is not None and value is not _EMPTY:
                    delattr(self, name)

    def _open(self) -> None:
        sid = self._query.get("sid")
        if sid:
            # An upgrade from long-polling: the polling transport hands over.
            session = self.factory.engine.sessions.get(sid)
            upgrade = self.factory.upgrade_handler
            if session is None or upgrade is None:
                self.sendClose(4001, "unknown sid")
                return
            self.session = session
            upgrade(session, self)
            return
        self.session = self.factory.engine.open(self, self._remote_ip, self._query, self._headers, [])

    def refuse_upgrade(self) -> None:
        """This WebSocket may not take over its session (already upgraded, closed, bad probe)."""
        self.probe = None
        self.session = None
        if self.state == self.STATE_OPEN:
            self.sendClose(4002, "upgrade refused")

    # -- frames -----------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None:
            return
        if isBinary:
            frame: str | bytes = payload
        else:
            try:
                frame = payload.decode("utf-8")
            except UnicodeDecodeError:
                if self.probe is not None:
                    self.probe.fail()
                elif self.session is not None:
                    self.session.close("protocol error", notify=False)
                return
        self._on_frame(frame)

    def _on_frame(self, frame: str | bytes) -> None:
        session = self.session
        if session is None:
            return
        if type(frame) is str and frame[:1] == "4" and self.probe is None and session.transport is self:
            # An Engine.IO MESSAGE, nearly every frame: straight to the Socket.IO side, as
            # `EngineSession.on_packet` would hand it, without decoding a packet object first.
            handler = session.handler
            if handler is not None:
                handler.on_message(frame[1:])
            return
        if self.probe is not None:
            self.probe.on_frame(frame)
        elif session.transport is self:
            session.on_frame(frame)

    def _fast_frame(self) -> bool | None:
        """Handle one common frame without Autobahn's general machinery.

        Nearly every frame a Socket.IO client sends is a small, masked,
        unfragmented text frame.  Autobahn handles each one in two steps
        through a dozen methods, a UTF-8 state machine, a per-frame masker
        object and a Deferred for its "message" observers; here it is a few
        lines.  Anything else (control frames, fragments, large or partial
        frames, invalid UTF-8, a connection that is not plainly open) returns
        None and goes through Autobahn unchanged, so every protocol error is
        still reported exactly as Autobahn reports it.

        Returns whether more bytes are buffered, or None when the frame was
        not handled.
        """
        if (
            not self._fast_limit  # connectionMade has not run: nothing is set up yet
            or self.current_frame is not None
            or self.inside_message
            or self.state != _OPEN
            or self.failedByMe
            or self.logFrames
        ):
            return None
        parsed = parse_client_frame(self.data, self._fast_limit)
        if parsed is None:
            return None
        frame, consumed, length = parsed
        self.data = self.data[consumed:]
        stats = self.trafficStats
        stats.incomingOctetsWebSocketLevel += length
        stats.incomingOctetsAppLevel += length
        stats.incomingWebSocketFrames += 1
        stats.incomingWebSocketMessages += 1
        if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
            self._cancelAutoPingTimeoutCall()
        self._on_frame(frame)
        return len(self.data) > 0

    def dataReceived(self, data: bytes) -> None:
        """Autobahn's, without the debug line its Twisted adapter builds on every read.

        That line's arguments (``hltype``, ``hlval``: colour escapes around a
        qualified name, the peer and the length) are computed before the
        logger looks at the level, so each read paid for a message nobody
        logs.  Only an open connection takes the short path; the handshake
        and Autobahn's octet logging go through Autobahn unchanged.
        """
        if self.state != _OPEN or self.logOctets:
            self._dataReceived(data)
            return
        self.trafficStats.incomingOctetsWireLevel += len(data)
        self.data += data
        self.consumeData()

    def consumeData(self) -> None:
        """Autobahn's loop, with a budget per reactor turn (see the module docstring)."""
        if self.state != _OPEN and self.state != _CLOSING:
            super().consumeData()
            return
        budget = self.STEPS_PER_TURN
        while budget > 0 and self.state != _CLOSED:
            more = self._fast_frame()
            if more is None:
                if not self.processData():
                    break
                budget -= 1
            elif more:
                budget -= 2  # the two steps Autobahn takes for one frame
            else:
                break
        if budget <= 0 and self.state != _CLOSED and self._next_batch is None:
            self.transport.pauseProducing()
            self._next_batch = self.factory.engine.clock.callLater(0, self._take_next_batch)

    def _take_next_batch(self) -> None:
        self._next_batch = None
        if self.state == self.STATE_CLOSED:
            return
        self.consumeData()
        if self._next_batch is None:
            self.transport.resumeProducing()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._next_batch is not None and self._next_batch.active():
            self._next_batch.cancel()
        self._next_batch = None
        if self.probe is not None:
            probe, self.probe = self.probe, None
            probe.on_close()
        elif self.session is not None:
            self.session.transport_closed(self, "transport close")

    # -- EngineTransport --------------------------------------------------

    def send_packets(self, packets: list[EnginePacket]) -> None:
        for packet in packets:
            self.send_frame(encode_packet(packet))

    def send_frame(self, frame: str | bytes) -> None:
        """One Engine.IO frame: text as a text message, bytes as a binary one."""
        if self._admit(len(frame)):
            self._send_wire(encode_frame(frame))

    def send_outgoing(self, message: Outgoing) -> None:
        """Every frame of ``message`` as WebSocket messages, in one write.

        The wire bytes are built once per `Outgoing` and shared by every
        WebSocket it goes to.
        """
        wire = message.cache.get("websocket")
        if wire is None:
            frames = message.frames
            wire = encode_frame(frames[0]) if len(frames) == 1 else b"".join(encode_frame(f) for f in frames)
            message.cache["websocket"] = wire
        if self._admit(message.size):
            self._send_wire(wire)

    def _send_wire(self, wire: bytes) -> None:
        """Autobahn's ``sendData`` without its per-call debug-log arguments, built even when unused."""
        # ``triggered`` is Autobahn's "the send queue is draining" (set whenever it queues), read instead
        # of the queue itself so the lazy queue is not made, nor ``__dict__`` read (see `onOpen`).
        if self.triggered or self.logOctets:
            self.sendData(wire)  # behind Autobahn's queued writes, or logged
            return
        self.trafficStats.outgoingOctetsWireLevel += len(wire)
        if self._socket is None:
            self.transport.write(wire)
        elif self._out is None:
            self._out = [wire]
            self.factory.writer_for(self.transport.reactor).mark(self)
        else:
            self._out.append(wire)

    def flush_writes(self) -> None:
        """Send what this turn wrote: straight to the socket while Twisted's buffer is empty."""
        out, self._out = self._out, None
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        transport = self.transport
        if transport is None or not transport.connected or transport.disconnecting:
            return
        sent = 0
        if not transport._tempDataLen and transport.offset == len(transport.dataBuffer):
            try:
                sent = self._socket.send(data)
            except OSError as e:
                if e.errno not in _WOULD_BLOCK:
                    transport.write(data)  # Twisted finds the error on its next write and closes
                    return
        if sent < len(data):
            # The kernel's buffer is full (or Twisted's holds older bytes): Twisted waits for writability.
            transport.write(data[sent:] if sent else data)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Autobahn's own writes (close, pong) go after what this turn wrote before them."""
        if self._out is not None:
            self.flush_writes()
        super().sendData(data, sync, chopsize)

    def dropConnection(self, abort: bool = False) -> None:
        if self._out is not None and not abort:
            self.flush_writes()
        super().dropConnection(abort)

    def _admit(self, size: int) -> bool:
        """Count what a paused (slow) client owes; drop it when it owes too much."""
        if self.state != _OPEN:
            return False
        if self._paused:
            self._backlog += size
            if self._backlog > self.factory.engine.settings.max_buffered:
                log.info("Dropping a client that does not read ({ip})", ip=self._remote_ip)
                self.dropConnection(abort=True)
                return False
        return True

    def close(self) -> None:
        if self.state == self.STATE_OPEN:
            self.sendClose(1000)

    # -- IPushProducer (the TCP transport tells us when it is full) -------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._backlog = 0

    def stopProducing(self) -> None:
        self._paused = True


class EngineWebSocketFactory(WebSocketServerFactory):
    """Autobahn factory bound to one `EngineServer`."""

    # The base's protocol type does not know that a protocol's ``factory`` is this factory.
    protocol = EngineWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, engine: EngineServer, gatekeeper: Gatekeeper, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.gatekeeper = gatekeeper
        #: Called with (session, protocol) when a WebSocket names an existing sid.
        self.upgrade_handler: Any = None
        self._writers: dict[int, TurnWriter] = {}
        self.setProtocolOptions(
            maxFramePayloadSize=engine.settings.max_payload,
            maxMessagePayloadSize=engine.settings.max_payload,
            autoPingInterval=0,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
            perMessageCompressionAccept=lambda offers: None,
            # Tell a client why it is cut off (1009 for an oversized frame) instead of just dropping TCP.
            failByDrop=False,
        )

    def setProtocolOptions(self, *args: Any, **options: Any) -> None:
        """Autobahn's, then the settings as class attributes of a protocol class of this factory's own.

        Autobahn copies its ~30 settings from the factory into every
        connection unless the connection already has them: as class
        attributes they are shared, which saves each idle socket about a
        kilobyte (its attribute dict stays in a smaller size class).
        """
        super().setProtocolOptions(*args, **options)
        base = type(self).protocol
        # staticmethod: a function setting (perMessageCompressionAccept) must not become a method.
        settings = {a: getattr(self, a) for a in base.CONFIG_ATTRS}
        self.protocol = cast(
            "type[EngineWebSocketProtocol]",
            type(
                base.__name__,
                (base,),
                {a: staticmethod(v) if inspect.isfunction(v) else v for a, v in settings.items()},
            ),
        )
        _learn_fields(self.protocol)

    def writer_for(self, reactor: Any) -> TurnWriter:
        """The `TurnWriter` of the reactor that runs these connections (one in production)."""
        writer = self._writers.get(id(reactor))
        if writer is None:
            writer = self._writers[id(reactor)] = TurnWriter(reactor)
        return writer

    def check_handshake(self, request: IRequest, transport: Any) -> _Handshake | None:
        """The common upgrade request checked as Autobahn and `refuse_reason` would; None for any other.

        None sends the request through Autobahn's own handshake: anything
        unusual, and every request that is to be refused, so a refusal
        reads exactly as Autobahn (or `EngineWebSocketProtocol.onConnect`)
        writes it.  No side effects: the connection is not touched here.
        """
        if not self.plain_request(request.method, cast(Any, request).clientproto, request.uri):
            return None
        # Autobahn's resource joins a header's values with "," and gives it one line: one value per name.
        headers: dict[str, str] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            value = values[0] if len(values) == 1 else b",".join(values)
            if not _FIELD_NAME.fullmatch(name) or _FIELD_VALUE_INVALID.search(value):
                return None
            headers[name.decode("ascii").lower()] = value.decode("iso-8859-1").strip(" \t")
        return self.check_fields(headers, cast(Any, request).args, transport)

    def plain_request(self, method: bytes, version: bytes, target: bytes) -> bool:
        """`check_handshake`'s first part: the request line, and settings the fast handshake does not cover."""
        protocol: Any = self.protocol  # its settings are class attributes
        return not (
            method != b"GET"
            or version != b"HTTP/1.1"
            or not _PLAIN_TARGET.fullmatch(target)
            or target[:2] == b"//"
            or self.externalPort
            or self.headers
            or self.trustXForwardedFor
            or protocol.maxConnections > 0
            or protocol.autoPingInterval
            or protocol.trackTimings
            or 13 not in protocol.versions
        )

    def check_fields(
        self, headers: dict[str, str], args: dict[bytes, list[bytes]], transport: Any
    ) -> _Handshake | None:
        """`check_handshake`'s second part: the headers (lower-case names, checked values) and the query."""
        protocol: Any = self.protocol
        host = headers.get("host")
        if host is None:
            return None
        host = host.strip()
        if ":" in host and not host.endswith("]"):
            port = host.rsplit(":", 1)[1].strip()
            if not (port.isascii() and port.isdigit()):
                return None
        if (
            not _has_token(headers.get("upgrade"), "websocket")
            or not _has_token(headers.get("connection"), "upgrade")
            or headers.get("sec-websocket-version") != "13"
            or "sec-websocket-protocol" in headers
        ):
            return None
        key = headers.get("sec-websocket-key", "").strip()
        if not _WEBSOCKET_KEY.fullmatch(key):
            return None
        origin = headers.get("origin")
        if origin is not None:
            try:
                where = _autobahn_protocol._url_to_origin(origin.strip())
            except Exception:  # noqa: BLE001 - Autobahn refuses it (or fails): let it
                return None
            if not (where == "null" and self.allowNullOrigin) and not _autobahn_protocol._is_same_origin(
                where,
                "https" if self.isSecure else "http",
                self.externalPort or self.port,
                protocol.allowedOriginsPatterns,
            ):
                return None
        offered = headers.get("sec-websocket-extensions")
        if offered is not None:
            offers = []
            for name, params in WebSocketProtocol._parseExtensionsHeader(cast(Any, None), offered):
                kind: Any = PERMESSAGE_COMPRESSION_EXTENSION.get(name)
                if kind is not None:
                    try:
                        offers.append(kind["Offer"].parse(params))
                    except Exception:  # noqa: BLE001 - Autobahn refuses a bad offer
                        return None
            if offers and protocol.perMessageCompressionAccept(offers) is not None:
                return None  # compression accepted: Autobahn sets it up
        # twisted.web's parse of the (ASCII) query, read as Autobahn's: blank values dropped, text decoded.
        query: dict[str, str] = {}
        for name, values in args.items():
            for value in values:
                if value:
                    query[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
                    break
        remote_ip = self.gatekeeper.client_ip(getattr(transport.getPeer(), "host", ""), headers)
        if self.refuse_reason(query, headers, remote_ip, ISSLTransport.providedBy(transport)):
            return None
        return _Handshake(headers, query, key, remote_ip)

    def take_over(
        self, transport: Any, handshake: _Handshake, rest: bytes, paused: Any = None
    ) -> EngineWebSocketProtocol:
        """A new `EngineWebSocketProtocol` on ``transport``, open on the checked ``handshake``; the protocol.

        ``rest``: what the client sent after the request.  ``paused``: the
        producer twisted.web paused while it handled the request, to resume.
        """
        protocol = cast(EngineWebSocketProtocol, self.buildProtocol(transport.getPeer()))
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        elif isinstance(transport.protocol, ProtocolWrapper):
            transport.protocol.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        # The handshake completes below, before the reactor runs again: no opening-handshake timer to set.
        protocol.openHandshakeTimeout = 0
        try:
            protocol.makeConnection(transport)
        finally:
            del protocol.openHandshakeTimeout
        if paused is not None:
            paused.resumeProducing()
        protocol.accept_handshake(handshake, rest)
        return protocol

    def remote_ip_of(self, protocol: EngineWebSocketProtocol) -> str:
        peer = protocol.transport.getPeer()
        return self.gatekeeper.client_ip(getattr(peer, "host", ""), protocol.http_headers)

    def refuse_reason(
        self, query: dict[str, str], headers: dict[str, str], remote_ip: str, secure: bool = False
    ) -> tuple[int, str] | None:
        """Why this WebSocket must not open, as (HTTP status, reason), or None."""
        if query.get("EIO") != "4":
            return (400, "Unsupported protocol version")
        if query.get("transport") != "websocket":
            return (400, "Transport unknown")
        if not self.gatekeeper.origin_allowed(headers.get("origin"), headers, secure):
            return (403, "Origin not allowed")
        if not self.engine.may_open(remote_ip):
            return (429, "Too many connections")
        return None


class EngineWebSocketResource(WebSocketResource):
    """Autobahn's resource, with the common upgrade request answered straight from twisted.web's parse."""

    _factory: EngineWebSocketFactory

    def render(self, request: IRequest) -> Any:
        channel = cast(Any, request).channel
        transport = channel.transport
        handshake = None if transport is None else self._factory.check_handshake(request, transport)
        if handshake is None:
            return super().render(request)
        # Take over the transport from twisted.web, as Autobahn's resource does.
        channel.transport = None
        producer = getattr(transport, "_networkProducer", None)
        if producer is None and hasattr(transport, "resumeProducing"):
            producer = transport
        self._factory.take_over(transport, handshake, cast(Any, request).content.read(), producer)
        return NOT_DONE_YET
