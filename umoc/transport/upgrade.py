"""A connection's first read: a WebSocket upgrade goes straight to the WebSocket, anything else to twisted.web.

Nearly every connection to a chat server is a WebSocket, and for each one
twisted.web built an HTTP channel (its idle timer, its producer
registration), parsed the request line by line into a `Request` (headers
object, URL parse, resource traversal), only for `EngineWebSocketResource`
to hand the socket over: about a third of what a connect cost
(``bench/bench_wire.py connect``).

`UpgradeSite.buildProtocol` gives each connection a `FirstRead` instead.
When the first read holds the whole request and it is the common upgrade
request to a registered path (``/socket.io/``): a plain ``GET`` in
HTTP/1.1, no body, each header once, well-formed lines, within
`MAX_HEAD` bytes, then `EngineWebSocketFactory.check_fields` checks it
exactly as the twisted.web path does (Autobahn's rules, the Origin policy,
the per-address socket quota) and the WebSocket protocol takes the socket
over.  Anything else (another path, a request split over reads, HTTP/2, a
header twice, a request to be refused) becomes an ordinary twisted.web
channel fed those same bytes, so every other request (uploads, static
files, the API, long-polling, and every refusal) is served, bounded and
answered exactly as before.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.web import server
from twisted.web.http import parse_qs

from umoc.transport.websocket import EngineWebSocketFactory

__all__ = ["MAX_HEAD", "FirstRead", "UpgradeSite"]

#: The largest request head the fast path reads; a larger one goes to twisted.web (and its own bounds).
MAX_HEAD = 4096
#: Header lines, each ended by CRLF: an RFC 9110 token, a colon, a value without control characters but HTAB.
_FIELDS = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)+")


class UpgradeSite(server.Site):
    """A twisted.web `Site` whose WebSocket upgrades skip twisted.web (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Request path (``b"/socket.io/"``) -> the factory its WebSockets open with.
        self.upgrades: dict[bytes, EngineWebSocketFactory] = {}

    def add_upgrade(self, path: bytes, factory: EngineWebSocketFactory) -> None:
        """WebSocket upgrades to exactly ``path`` (query aside) open with ``factory`` on the fast path."""
        self.upgrades[path] = factory

    def buildProtocol(self, addr: Any) -> Any:
        if not self.upgrades:
            return self.http_channel(addr)
        return FirstRead(self, addr)

    def http_channel(self, addr: Any) -> Any:
        """twisted.web's channel for a connection that is not a fast upgrade."""
        return server.Site.buildProtocol(self, addr)


def parse_head(head: bytes) -> tuple[bytes, bytes, bytes, dict[str, str]] | None:
    """Method, target, version and headers (lower-case names, values stripped) of a request head; None if unusual.

    Unusual: anything twisted.web would read otherwise or refuse (a line
    folded or without a colon, a bad name or value, a lone CR or LF), a
    header twice, or a request with a body.
    """
    request_line, _, fields = head.partition(b"\r\n")
    if not _FIELDS.fullmatch(fields + b"\r\n"):
        return None
    parts = request_line.split(b" ")
    if len(parts) != 3:
        return None
    lines = fields.decode("iso-8859-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip(" \t")
    if len(headers) != len(lines) or "content-length" in headers or "transfer-encoding" in headers:
        return None
    return parts[0], parts[1], parts[2], headers


class FirstRead(Protocol):
    """What a new connection to an `UpgradeSite` is until its first read says what it carries."""

    _timer: IDelayedCall | None = None
    #: The protocol the connection went to (for a caller that still holds this one: tests).
    _next: Any = None

    def __init__(self, site: UpgradeSite, addr: Any) -> None:
        self.site = site
        self.addr = addr

    def connectionMade(self) -> None:
        # As twisted.web's channel: a connection that sends nothing is closed after the site's timeout.
        timeout = self.site.timeOut
        if timeout:
            self._timer = self.site.reactor.callLater(timeout, self._idle)

    def _idle(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._next is not None:
            self._next.dataReceived(data)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        end = data.find(b"\r\n\r\n", 0, MAX_HEAD)
        if end > 0 and getattr(transport, "negotiatedProtocol", None) in (None, b"http/1.1"):
            fast = self._upgrade(data[:end], transport)
            if fast is not None:
                factory, handshake = fast
                self.transport = None
                self._next = factory.take_over(transport, handshake, data[end + 4 :])
                return
        self._to_http(data)

    def _upgrade(self, head: bytes, transport: Any) -> Any:
        parsed = parse_head(head)
        if parsed is None:
            return None
        method, target, version, headers = parsed
        path, _, query = target.partition(b"?")
        factory = self.site.upgrades.get(path)
        if factory is None or not factory.plain_request(method, version, target):
            return None
        handshake = factory.check_fields(headers, parse_qs(query, 1), transport)
        return None if handshake is None else (factory, handshake)

    def _to_http(self, data: bytes) -> None:
        """Not a fast upgrade: twisted.web's channel takes the connection, these bytes first."""
        transport: Any = self.transport
        self.transport = None
        channel = self._next = self.site.http_channel(self.addr)
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = channel
        else:
            transport.protocol = channel
        channel.makeConnection(transport)
        channel.dataReceived(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self._next is not None:
            self._next.connectionLost(reason)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
