"""HTTP requests in-process: through a `Site`'s resource tree (``DummyRequest``), or its real channel.

`request` renders one resource with a ``DummyRequest`` (fast, for a
resource's own logic); `exchange` feeds the raw request to the site's HTTP
channel on a `StringTransport` and parses the raw answer, so streaming
uploads, chunked answers and every header are as a client would get them.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http_headers import Headers
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

__all__ = ["Response", "WireResponse", "exchange", "request"]


class Response:
    """What a resource answered: status, headers and body."""

    def __init__(self, req: DummyRequest) -> None:
        self.code: int = req.responseCode or 200
        self.headers = req.responseHeaders
        self.body = b"".join(req.written)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


async def request(
    site: server.Site,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    peer: str = "127.0.0.1",
) -> Response:
    """Render ``method path`` through ``site``; ``body`` is JSON-encoded unless it is bytes."""
    path_part, _, query = path.partition("?")
    req = DummyRequest([part.encode() for part in path_part.lstrip("/").split("/")])
    req.method = method.encode("ascii")
    req.uri = path.encode()
    req.path = path_part.encode()
    req.client = IPv4Address("TCP", peer, 40000)
    req.isSecure = lambda: False  # IRequest.isSecure, which DummyRequest lacks: plain HTTP
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        req.args.setdefault(key.encode(), []).append(value.encode())
    for key, value in (headers or {}).items():
        req.requestHeaders.setRawHeaders(key, [value])
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req.content = io.BytesIO(data or b"")
    finished = req.notifyFinish()
    resource = getChildForRequest(site.resource, req)
    result = resource.render(req)
    if result is not server.NOT_DONE_YET:
        req.write(result)
        req.finish()
    await finished
    return Response(req)


class _ClosingTransport(StringTransport):
    """A `StringTransport` that says when the server is done with it (``Connection: close``)."""

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.closed: defer.Deferred[None] = defer.Deferred()

    def loseConnection(self) -> None:
        super().loseConnection()
        if not self.closed.called:
            self.closed.callback(None)


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)


class WireResponse:
    """A whole HTTP/1.1 answer parsed from the bytes the server wrote: what a client would get."""

    def __init__(self, raw: bytes) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.code = int(status_line.split(" ", 2)[1])
        self.headers = Headers()
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers.addRawHeader(name.strip(), value.strip())
        chunked = (self.header("transfer-encoding") or "").lower() == "chunked"
        self.body = _dechunk(body) if chunked else body

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8")


async def exchange(
    site: server.Site, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> WireResponse:
    """One request through the site's real HTTP channel (parser, streaming uploads, chunked answers) in memory."""
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = _ClosingTransport()
    channel.makeConnection(transport)
    lines = [f"{method} {path} HTTP/1.1", "Host: umoc", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    try:
        await transport.closed
    finally:
        channel.connectionLost(Failure(ConnectionDone()))
    return WireResponse(transport.value())
