"""A twisted.web resource serving the web client's static files, and nothing else.

Only the regular files directly inside ``static/`` are served, each under its
own name, with ``index.html`` at ``/`` too.  No directory listing, no sub
paths, no dot-files.  Every response carries a strict Content-Security-Policy:
the client has no inline script or style, and inserts what users wrote as text.
Its ``connect-src`` is the server's own origin: CSP Level 3's ``'self'`` matches
``ws:``/``wss:`` on the page's own host and port (Chromium, Firefox, Safari 15.4+), so
the client's socket needs nothing more; ``web_client.connect_src`` adds other origins.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from twisted.web import resource

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "content_security_policy", "web_client_resource"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


def content_security_policy(connect_src: tuple[str, ...] = ()) -> str:
    """The policy, with ``connect-src`` the server's own origin plus ``connect_src`` (configured origins)."""
    sources = " ".join(("'self'", *connect_src))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        f"connect-src {sources}; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


#: The default policy (no ``web_client.connect_src``).
CONTENT_SECURITY_POLICY = content_security_policy()

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


def _security_headers(request: Any, policy: bytes = CONTENT_SECURITY_POLICY.encode("ascii")) -> None:
    request.setHeader(b"Content-Security-Policy", policy)
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Referrer-Policy", b"no-referrer")


class StaticFile(resource.Resource):
    """One file, read once when the server starts (the whole client is some tens of kilobytes)."""

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")

    def __init__(self, path: Path, policy: bytes) -> None:
        super().__init__()
        self.policy = policy
        self.body = path.read_bytes()
        self.content_type = content_type(path.name).encode("ascii")
        self.etag = b'"' + hashlib.sha256(self.body).hexdigest()[:32].encode("ascii") + b'"'

    def render_GET(self, request: Any) -> bytes:
        if request.postpath:  # /app.js/anything is not a file
            return NotFound(self.policy).render(request)
        _security_headers(request, self.policy)
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

    def __init__(self, policy: bytes = CONTENT_SECURITY_POLICY.encode("ascii")) -> None:
        super().__init__()
        self.policy = policy

    def render(self, request: Any) -> bytes:
        _security_headers(request, self.policy)
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Not found\n"


class WebClient(resource.Resource):
    """``/`` is index.html; ``/<name>`` is a file of ``static/``; everything else 404."""

    def __init__(self, directory: Path = STATIC_DIR, connect_src: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.policy = content_security_policy(connect_src).encode("ascii")
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                self.putChild(path.name.encode("utf-8"), StaticFile(path, self.policy))
        index = self.children.get(b"index.html")
        if index is not None:
            self.putChild(b"", index)

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return NotFound(self.policy)


def web_client_resource(connect_src: tuple[str, ...] = ()) -> resource.Resource:
    """The web client: its children are ``b""`` (index.html) and the static file names.

    ``connect_src``: origins the page may connect to besides its own (``web_client.connect_src``).
    """
    return WebClient(connect_src=connect_src)
