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

Slow readers: the protocol registers as the TCP transport's streaming
producer, so Twisted says when the kernel buffer is full.  Bytes written
while paused are counted; past ``max_buffered`` the client is dropped,
because holding its backlog would hurt everyone else's memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from umoc.protocol.engineio import EnginePacket, encode_packet
from umoc.transport.engine import EngineServer, EngineSession, Outgoing

if TYPE_CHECKING:
    from umoc.transport.polling import _Probe

__all__ = ["EngineWebSocketFactory", "EngineWebSocketProtocol"]

log = Logger()


def _first(params: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in params.items() if v}


class EngineWebSocketProtocol(WebSocketServerProtocol):
    """Carries one Engine.IO session over one WebSocket."""

    name = "websocket"
    factory: "EngineWebSocketFactory"

    #: Autobahn steps (about two per frame) one connection may run per reactor turn.
    STEPS_PER_TURN = 40

    def __init__(self) -> None:
        super().__init__()
        self.session: EngineSession | None = None
        self._query: dict[str, str] = {}
        self._headers: dict[str, str] = {}
        self._paused = False
        self._backlog = 0
        self._remote_ip = ""
        #: Set while this WebSocket is proving itself to replace long-polling.
        self.probe: _Probe | None = None
        self._next_batch: IDelayedCall | None = None

    # -- handshake --------------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> None:
        query = _first(request.params)
        self._query = query
        self._headers = dict(request.headers)
        self._remote_ip = self.factory.remote_ip_of(self)
        problem = self.factory.refuse_reason(query, self._headers, self._remote_ip)
        if problem:
            raise ConnectionDeny(problem[0], problem[1])

    def connectionMade(self) -> None:
        super().connectionMade()
        # Take over flow control from twisted.web's HTTP channel.
        transport = self.transport
        try:
            transport.unregisterProducer()
        except Exception:  # noqa: BLE001 - no producer registered is fine
            pass
        try:
            transport.registerProducer(self, True)
        except Exception:  # noqa: BLE001 - a transport without flow control still works
            log.debug("transport does not accept a producer")

    def onOpen(self) -> None:
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
        session = self.session
        if session is None:
            return
        if isBinary:
            frame: str | bytes = payload
        else:
            try:
                frame = payload.decode("utf-8")
            except UnicodeDecodeError:
                if self.probe is not None:
                    self.probe.fail()
                else:
                    session.close("protocol error", notify=False)
                return
        if self.probe is not None:
            self.probe.on_frame(frame)
        elif session.transport is self:
            session.on_frame(frame)

    def consumeData(self) -> None:
        """Autobahn's loop, with a budget per reactor turn (see the module docstring)."""
        if self.state != self.STATE_OPEN and self.state != self.STATE_CLOSING:
            super().consumeData()
            return
        budget = self.STEPS_PER_TURN
        while budget > 0 and self.processData() and self.state != self.STATE_CLOSED:
            budget -= 1
        if budget == 0 and self.state != self.STATE_CLOSED and self._next_batch is None:
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
        if isinstance(frame, str):
            self._write(frame.encode("utf-8"), False)
        else:
            self._write(frame, True)

    def send_outgoing(self, message: Outgoing) -> None:
        prepared = message.cache.get("websocket")
        if prepared is None:
            prepared = message.cache["websocket"] = [
                self.factory.prepareMessage(f.encode("utf-8") if isinstance(f, str) else f, isinstance(f, bytes))
                for f in message.frames
            ]
        if not self._admit(message.size):
            return
        for item in prepared:
            self.sendPreparedMessage(item)

    def _write(self, payload: bytes, binary: bool) -> None:
        if self._admit(len(payload)):
            self.sendMessage(payload, binary)

    def _admit(self, size: int) -> bool:
        """Count what a paused (slow) client owes; drop it when it owes too much."""
        if self.state != self.STATE_OPEN:
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

    protocol = EngineWebSocketProtocol

    def __init__(self, engine: EngineServer, gatekeeper: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.gatekeeper = gatekeeper
        #: Called with (session, protocol) when a WebSocket names an existing sid.
        self.upgrade_handler: Any = None
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

    def remote_ip_of(self, protocol: EngineWebSocketProtocol) -> str:
        peer = protocol.transport.getPeer()
        return self.gatekeeper.client_ip(getattr(peer, "host", ""), protocol.http_headers)

    def refuse_reason(self, query: dict[str, str], headers: dict[str, str], remote_ip: str) -> tuple[int, str] | None:
        """Why this WebSocket must not open, as (HTTP status, reason), or None."""
        if query.get("EIO") != "4":
            return (400, "Unsupported protocol version")
        if query.get("transport") != "websocket":
            return (400, "Transport unknown")
        if not self.gatekeeper.origin_allowed(headers.get("origin")):
            return (403, "Origin not allowed")
        if not self.engine.may_open(remote_ip):
            return (429, "Too many connections")
        return None
