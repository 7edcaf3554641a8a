"""Engine.IO v4 HTTP long-polling, and the upgrade from it to WebSocket.

Wire protocol (https://socket.io/docs/v4/engine-io-protocol/), on the same
``/socket.io/`` resource as WebSocket::

    GET  ?EIO=4&transport=polling            -> 0{"sid":..,"upgrades":["websocket"],...}
    GET  ?EIO=4&transport=polling&sid=S      -> packets joined by \\x1e, held open until
                                                there is something to send (a PING comes
                                                every pingInterval, so never for long)
    POST ?EIO=4&transport=polling&sid=S      <- packets joined by \\x1e; answered "ok"
    binary data in both directions:             "b" + base64

    Errors are HTTP 400 with {"code": n, "message": ".."}: 0 unknown transport,
    1 unknown sid, 2 bad handshake method, 3 bad request.  A second GET while
    one is pending, an undecodable POST, or a GET the client aborts ends the
    session.  POST bodies larger than maxPayload are refused with 413.

Upgrade (the client keeps polling until the WebSocket is proven)::

    WS  ?EIO=4&transport=websocket&sid=S
    2probe                                   ->
                                             <-  3probe
                                                 (a pending GET is answered "6", noop)
    5                                        ->  from now on the session's transport is
                                                 the WebSocket; frames still queued for
                                                 polling go out on it first, in order

After the upgrade a GET on the sid answers 400 and a second WebSocket with
that sid is closed.  A POST still reaching the sid within `LATE_POST_WINDOW`
seconds of the upgrade (while the session is open) is accepted and its
packets dispatched: a client that sends ``5`` without waiting for a POST it
has in flight (the protocol asks it to wait) sent that POST before the
upgrade, so its packets belong to the session.  Later, or once the session closed, a POST
answers 400 as before.  The WebSocket's own packets are not held back for
such a POST: one whose body completes after later WebSocket packets arrived
is dispatched after them (a client that pauses polling before ``5``, as the
spec asks and the JavaScript client does, never meets this).
"""

from __future__ import annotations

import binascii
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web import server

from umoc.protocol.engineio import (
    RECORD_SEPARATOR,
    EnginePacket,
    ProtocolError,
    decode_payload,
    encode_packet,
)
from umoc.transport.engine import EngineServer, EngineSession, Outgoing
from umoc.transport.errors import BAD_HANDSHAKE_METHOD, BAD_REQUEST, FORBIDDEN, UNKNOWN_SID, engine_error
from umoc.transport.gate import Gatekeeper
from umoc.transport.probe import UpgradeProbe, WebSocketSide

__all__ = ["PollingResource", "PollingTransport"]

log = Logger()

#: The most packets one POST body may hold.
MAX_PACKETS_PER_POST = 1000
#: Seconds after an upgrade during which a POST sent before it is still accepted.
LATE_POST_WINDOW = 10.0
_NOOP = "6"
_CLOSE = "1"


def _polling_text(frame: str | bytes) -> str:
    """One WebSocket-form frame as it is written in a polling body."""
    if isinstance(frame, str):
        return frame
    return "b" + binascii.b2a_base64(frame, newline=False).decode("ascii")


def _headers(request: server.Request) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}


def _query(request: server.Request) -> dict[str, str]:
    return {k.decode("utf-8", "replace"): v[0].decode("utf-8", "replace") for k, v in request.args.items() if v}


def _finish(request: server.Request, body: bytes, content_type: bytes = b"text/plain; charset=UTF-8") -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setHeader(b"Content-Type", content_type)
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    request.write(body)
    request.finish()


class PollingTransport:
    """The long-polling side of one session: a queue of frames and at most one pending GET."""

    name = "polling"

    def __init__(self, owner: PollingResource) -> None:
        self.owner = owner
        self.session: EngineSession | None = None
        self._queue: list[str | bytes] = []
        self._queued_bytes = 0
        self._request: server.Request | None = None
        #: A WebSocket has answered the probe: GETs are released at once (noop when empty).
        self.upgrading = False
        #: Closed or upgraded away: no more polling on this sid.
        self.done = False
        #: Upgraded away: POSTs sent before the upgrade are still taken (`LATE_POST_WINDOW`).
        self.upgraded = False
        #: The WebSocket trying to take over, if any.
        self.probe: UpgradeProbe | None = None
        self._grace: IDelayedCall | None = None

    # -- EngineTransport ---------------------------------------------------

    def send_packets(self, packets: list[EnginePacket]) -> None:
        for packet in packets:
            self._enqueue(encode_packet(packet))
        self._flush()

    def send_outgoing(self, message: Outgoing) -> None:
        for frame in message.frames:
            self._enqueue(frame)
        self._flush()

    def close(self) -> None:
        """The session ended: tell the client (pending GET, or the next one) when the server chose to."""
        if self.done:
            return
        self.done = True
        if self.probe is not None:
            self.probe.fail()
        session = self.session
        if session is not None and session.notify_close:
            self._queue.append(_CLOSE)
            if self._request is not None:
                self._flush()
                self.owner.forget(self)
            else:
                # Let the next GET collect what is still queued (e.g. a DISCONNECT) and the CLOSE.
                self._grace = self.owner.clock.callLater(
                    self.owner.engine.settings.ping_timeout, self.owner.forget, self
                )
            return
        self._queue.clear()
        self._answer(_NOOP)
        self.owner.forget(self)

    # -- queue -------------------------------------------------------------

    def _enqueue(self, frame: str | bytes) -> None:
        if self.done:
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        if self._queued_bytes > self.owner.engine.settings.max_buffered and self.session is not None:
            log.info("Dropping a polling client that does not poll ({ip})", ip=self.session.remote_ip)
            self._queue.clear()
            self.session.close("backlog too large", notify=False)

    def _flush(self) -> None:
        if self._request is not None and self._queue:
            frames, self._queue, self._queued_bytes = self._queue, [], 0
            self._answer(RECORD_SEPARATOR.join(_polling_text(f) for f in frames))

    def _answer(self, body: str) -> None:
        request, self._request = self._request, None
        if request is not None:
            self.owner.cors(request)
            _finish(request, body.encode("utf-8"))

    def take_queue(self) -> list[str | bytes]:
        """Hand the queued frames to the WebSocket that replaces this transport."""
        frames, self._queue, self._queued_bytes = self._queue, [], 0
        return frames

    # -- requests ----------------------------------------------------------

    def poll(self, request: server.Request) -> Any:
        """A GET: answer now when there is something to send, else hold it."""
        session = self.session
        if self.upgraded:
            # The WebSocket carries the session; the sid stays known only for late POSTs.
            return engine_error(request, UNKNOWN_SID, cors=self.owner.cors)
        if self.done:
            # Closed by the server: collect the last packets, then the sid is gone.
            body = RECORD_SEPARATOR.join(_polling_text(f) for f in self.take_queue())
            self.owner.forget(self)
            if not body:
                return engine_error(request, UNKNOWN_SID, cors=self.owner.cors)
            self.owner.cors(request)
            _finish(request, body.encode("utf-8"))
            return server.NOT_DONE_YET
        if self._request is not None:
            # Two GETs at once means two clients (or a broken one) share the sid.
            refused = engine_error(request, BAD_REQUEST, cors=self.owner.cors)
            if session is not None:
                session.close("duplicate poll")
            return refused
        self._request = request
        request.notifyFinish().addErrback(self._aborted, request)
        if self._queue:
            self._flush()
        elif self.upgrading:
            self._answer(_NOOP)
        return server.NOT_DONE_YET

    def _aborted(self, _failure: Any, request: server.Request) -> None:
        if self._request is request:
            self._request = None
            if self.session is not None:
                self.session.transport_closed(self, "transport close")

    def release(self) -> None:
        """The probe succeeded: end the pending GET so the client can pause polling."""
        self.upgrading = True
        if self._request is not None:
            if self._queue:
                self._flush()
            else:
                self._answer(_NOOP)

    def discard(self) -> None:
        """The WebSocket took over: polling on this sid is over, but for POSTs already sent.

        The sid stays known for `LATE_POST_WINDOW` seconds (at most the
        ping timeout) so such a POST is dispatched rather than refused.
        """
        self.done = True
        self.upgraded = True
        self._queue.clear()
        self._queued_bytes = 0
        self._answer(_NOOP)
        window = min(LATE_POST_WINDOW, self.owner.engine.settings.ping_timeout)
        self._grace = self.owner.clock.callLater(window, self.owner.forget, self)


class PollingResource:
    """Handles ``transport=polling`` requests for one `EngineServer`."""

    def __init__(self, engine: EngineServer, gatekeeper: Gatekeeper, cors: Callable[[server.Request], bool]) -> None:
        self.engine = engine
        self.clock = engine.clock
        self.gatekeeper = gatekeeper
        self.cors = cors
        self.transports: dict[str, PollingTransport] = {}
        engine.shutdown_hooks.append(self._drop_all)

    def _drop_all(self) -> None:
        for transport in list(self.transports.values()):
            self.forget(transport)

    def forget(self, transport: PollingTransport) -> None:
        if transport._grace is not None and transport._grace.active():
            transport._grace.cancel()
        transport._grace = None
        session = transport.session
        if session is not None and self.transports.get(session.sid) is transport:
            del self.transports[session.sid]

    def render(self, request: server.Request) -> Any:
        sid = (request.args.get(b"sid") or [b""])[0].decode("utf-8", "replace")
        if not sid:
            return self._handshake(request)
        transport = self.transports.get(sid)
        if transport is None or (
            not transport.done and transport.session is not None and transport.session.heartbeat_expired()
        ):
            return engine_error(request, UNKNOWN_SID, cors=self.cors)
        if request.method == b"GET":
            return transport.poll(request)
        if request.method == b"POST":
            return self._post(request, transport)
        return engine_error(request, BAD_REQUEST, cors=self.cors)

    def _handshake(self, request: server.Request) -> Any:
        if request.method != b"GET":
            return engine_error(request, BAD_HANDSHAKE_METHOD, cors=self.cors)
        headers = _headers(request)
        origin = headers.get("origin")
        if origin is not None and not self.gatekeeper.origin_allowed(origin, headers, request.isSecure()):
            return engine_error(request, FORBIDDEN, status=403, cors=self.cors)
        remote_ip = self.gatekeeper.client_ip(request.getClientAddress().host, headers)
        if not self.engine.may_open(remote_ip):
            return engine_error(request, FORBIDDEN, status=429, cors=self.cors)
        transport = PollingTransport(self)
        # The handshake GET is the first poll: it carries the OPEN packet back.
        transport._request = request
        session = self.engine.open(transport, remote_ip, _query(request), headers, ["websocket"])
        transport.session = session
        if not session.closed:
            self.transports[session.sid] = transport
        transport._flush()
        return server.NOT_DONE_YET

    def _post(self, request: server.Request, transport: PollingTransport) -> Any:
        session = transport.session
        if transport.upgraded and (session is None or session.closed):
            # As if already forgotten: the sid is only kept for late POSTs to an open session.
            return engine_error(request, UNKNOWN_SID, cors=self.cors)
        if (transport.done and not transport.upgraded) or session is None or session.closed:
            return engine_error(request, BAD_REQUEST, cors=self.cors)
        limit = self.engine.settings.max_payload
        content = request.content
        assert content is not None  # twisted.web reads the body before it renders
        content.seek(0, 2)
        if content.tell() > limit:
            session.close("payload too large", notify=False)
            return engine_error(request, BAD_REQUEST, status=413, cors=self.cors)
        content.seek(0)
        try:
            packets = decode_payload(content.read(limit + 1), max_packets=MAX_PACKETS_PER_POST)
        except ProtocolError:
            session.close("protocol error", notify=False)
            return engine_error(request, BAD_REQUEST, cors=self.cors)
        for packet in packets:
            if session.closed:
                break
            session.on_packet(packet)
        self.cors(request)
        _finish(request, b"ok", b"text/html")
        return server.NOT_DONE_YET

    # -- upgrade -----------------------------------------------------------

    def upgrade(self, session: EngineSession, websocket: WebSocketSide) -> None:
        """A WebSocket arrived with this session's sid: probe it, then switch."""
        polling = session.transport
        if session.closed or not isinstance(polling, PollingTransport) or polling.upgrading or polling.done:
            websocket.refuse_upgrade()
            return
        websocket.probe = polling.probe = UpgradeProbe(session, polling, websocket)
