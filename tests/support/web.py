"""HTTP requests rendered in-process through a `Site`'s resource tree, with ``DummyRequest``."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.web import server
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

__all__ = ["Response", "request"]


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
