"""A twisted.web resource serving the web client's static files, and nothing else.

Only the regular files directly inside ``static/`` are served, each under its
own name, with ``index.html`` at ``/`` too.  No directory listing, no sub
paths, no dot-files.  Every response carries a strict Content-Security-Policy:
the client has no inline script or style, and inserts what users wrote as text.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from twisted.web import resource

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "web_client_resource"]

STATIC_DIR = Path(__file__).resolve().parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".LICENSE": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


def content_type(name: str) -> str:
    for suffix, kind in _TYPES.items():
        if name.endswith(suffix):
            return kind
    return "application/octet-stream"


def _security_headers(request: Any) -> None:
    request.setHeader(b"Content-Security-Policy", CONTENT_SECURITY_POLICY.encode("ascii"))
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Referrer-Policy", b"no-referrer")


class StaticFile(resource.Resource):
    """One file, read once when the server starts (the whole client is some tens of kilobytes)."""

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.body = path.read_bytes()
        self.content_type = content_type(path.name).encode("ascii")
        self.etag = b'"' + hashlib.sha256(self.body).hexdigest()[:32].encode("ascii") + b'"'

    def render_GET(self, request: Any) -> bytes:
        if request.postpath:  # /app.js/anything is not a file
            return NotFound().render(request)
        _security_headers(request)
        request.setHeader(b"Content-Type", self.content_type)
        # Revalidate every time: a new server version is picked up at once, unchanged files cost a 304.
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"ETag", self.etag)
        if request.getHeader(b"if-none-match") == self.etag:
            request.setResponseCode(304)
            return b""
        request.setHeader(b"Content-Length", str(len(self.body)).encode("ascii"))
        if request.method == b"HEAD":
            return b""
        return self.body

    def render_HEAD(self, request: Any) -> bytes:
        return self.render_GET(request)


class NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        _security_headers(request)
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Not found\n"


class WebClient(resource.Resource):
    """``/`` is index.html; ``/<name>`` is a file of ``static/``; everything else 404."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        super().__init__()
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                self.putChild(path.name.encode("utf-8"), StaticFile(path))
        index = self.children.get(b"index.html")
        if index is not None:
            self.putChild(b"", index)

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return NotFound()


def web_client_resource() -> resource.Resource:
    """The web client: its children are ``b""`` (index.html) and the static file names."""
    return WebClient()
