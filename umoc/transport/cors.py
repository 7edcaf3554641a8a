"""CORS for the HTTP side: long-polling and ``/api/``.

Browsers on another origin may read responses only when the origin is in
``server.allowed_origins`` (an empty list allows every origin, as the
Gatekeeper decides for WebSockets).  The allowed origin is echoed back,
never ``*``, because polling requests carry credentials (cookies set by a
load balancer for sticky sessions).
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from umoc.transport.gate import Gatekeeper

__all__ = ["Cors"]

_ALLOWED_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
_DEFAULT_HEADERS = b"Content-Type, Authorization, X-Session-ID, X-Session-Token"


class Cors:
    """A callable that adds CORS headers; True when it fully answered a preflight."""

    def __init__(self, gatekeeper: Gatekeeper, max_age: int = 600) -> None:
        self.gatekeeper = gatekeeper
        self.max_age = str(max_age).encode("ascii")

    def __call__(self, request: IRequest) -> bool:
        request.setHeader(b"Vary", b"Origin")
        raw = request.getHeader(b"origin")
        origin = self.gatekeeper.cors_origin(raw.decode("latin-1") if raw is not None else None)
        if origin is not None:
            request.setHeader(b"Access-Control-Allow-Origin", origin.encode("latin-1"))
            request.setHeader(b"Access-Control-Allow-Credentials", b"true")
        if request.method != b"OPTIONS":
            return False
        if origin is not None:
            asked = request.getHeader(b"access-control-request-headers")
            request.setHeader(b"Access-Control-Allow-Methods", _ALLOWED_METHODS)
            request.setHeader(b"Access-Control-Allow-Headers", asked or _DEFAULT_HEADERS)
            request.setHeader(b"Access-Control-Max-Age", self.max_age)
        # A preflight from an origin that is not allowed gets nothing; a plain OPTIONS (no Origin) is fine.
        request.setResponseCode(403 if raw is not None and origin is None else 204)
        request.setHeader(b"Content-Length", b"0")
        return True
