"""Who is asking: client IP (behind trusted proxies) and Origin checks.

One object answers both for WebSocket, long-polling and the HTTP API, so the
three can never disagree about an origin or an address.
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["Gatekeeper"]


class Gatekeeper:
    """Origin allow-list and X-Forwarded-For handling from `ServerConfig`."""

    def __init__(self, allowed_origins: tuple[str, ...] = (), trusted_proxies: tuple[str, ...] = ()) -> None:
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.trusted_proxies = frozenset(trusted_proxies)

    def origin_allowed(self, origin: str | None) -> bool:
        """An empty allow-list allows all; a request with no Origin is not from a browser."""
        if not self.allowed_origins or origin is None:
            return True
        return origin.rstrip("/").lower() in self.allowed_origins

    def cors_origin(self, origin: str | None) -> str | None:
        """The value for Access-Control-Allow-Origin, or None to send no CORS header."""
        if origin is None or not self.origin_allowed(origin):
            return None
        return origin

    def client_ip(self, peer_host: str, headers: Mapping[str, str] | None) -> str:
        """The peer address, or the last untrusted X-Forwarded-For hop behind a trusted proxy."""
        if peer_host in self.trusted_proxies and headers:
            forwarded = None
            for key, value in headers.items():
                if key.lower() == "x-forwarded-for":
                    forwarded = value
            if forwarded:
                hops = [h.strip() for h in forwarded.split(",") if h.strip()]
                for hop in reversed(hops):
                    if hop not in self.trusted_proxies:
                        return hop
        return peer_host
