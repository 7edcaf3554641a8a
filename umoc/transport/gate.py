"""Who is asking: client IP (behind trusted proxies) and Origin checks.

One object answers both for WebSocket, long-polling and the HTTP API, so the
three can never disagree about an origin or an address.

What ``server.allowed_origins`` is for, and so what it lets through: it
stops a *web page on another site* from using a visitor's browser against
this server (cross-site WebSocket hijacking, CSRF on ``/api/``).  Only a
browser makes that threat, and a browser always sends the page's ``Origin``
and cannot forge it.  Hence three kinds of request are allowed whatever the
list holds:

* **No Origin**: not a browser page (curl, a mobile app, python-socketio's
  long-polling through ``requests``).  Refusing it would protect nothing: a
  program can send any Origin it likes.
* **An Origin in the list**: a page the operator trusts.
* **The server's own origin**: ``scheme://Host`` of the request itself, the
  scheme being the connection's (``https`` over TLS) or a proxy's
  ``X-Forwarded-Proto``.  A same-origin request is not cross-site by
  definition: a page can only carry this Origin if it was served by this
  very host.  Non-browser clients send it too: the stock python-socketio
  client's WebSocket (websocket-client) sends ``Origin: http://<host:port
  it connects to>``, which without this rule was refused with 403, after
  which the client silently stayed on long-polling.  ``X-Forwarded-Proto``
  needs no trust in the sender: a page cannot set it on a cross-site
  WebSocket (the WebSocket API sends no custom headers), and on ``fetch``
  it needs a preflight, which is refused first.
"""

from __future__ import annotations

import ipaddress
from typing import Mapping

__all__ = ["Gatekeeper", "own_origins"]


def own_origins(headers: Mapping[str, str] | None, secure: bool = False) -> frozenset[str]:
    """``scheme://host[:port]`` of the request itself, as a browser on this server would send it."""
    host = (headers or {}).get("host", "").strip().lower()
    if not host:
        return frozenset()
    schemes = {"https" if secure else "http"}
    forwarded = (headers or {}).get("x-forwarded-proto", "")
    if forwarded:
        schemes.add(forwarded.split(",")[0].strip().lower())
    return frozenset(f"{scheme}://{host}" for scheme in schemes if scheme in ("http", "https"))


class Gatekeeper:
    """Origin allow-list and X-Forwarded-For handling from `ServerConfig`."""

    def __init__(self, allowed_origins: tuple[str, ...] = (), trusted_proxies: tuple[str, ...] = ()) -> None:
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.trusted_proxies = frozenset(trusted_proxies)
        #: Entries may be networks ("172.16.0.0/12": a container network whose proxy's address changes).
        self._proxy_networks = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies if "/" in p)

    def origin_allowed(
        self, origin: str | None, headers: Mapping[str, str] | None = None, secure: bool = False
    ) -> bool:
        """An empty allow-list allows all; no Origin, a listed one or the request's own is allowed.

        ``headers`` (lower-case names) give the request's ``host`` and
        ``x-forwarded-proto``; ``secure`` says whether it came over TLS.
        """
        if not self.allowed_origins or origin is None:
            return True
        origin = origin.rstrip("/").lower()
        return origin in self.allowed_origins or origin in own_origins(headers, secure)

    def cors_origin(self, origin: str | None) -> str | None:
        """The value for Access-Control-Allow-Origin, or None to send no CORS header.

        Only listed origins: a same-origin request needs no CORS header.
        """
        if origin is None or not self.origin_allowed(origin):
            return None
        return origin

    def is_proxy(self, address: str) -> bool:
        """Whether ``address`` is one of ``server.trusted_proxies``, or in one of its networks."""
        if address in self.trusted_proxies:
            return True
        if not self._proxy_networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._proxy_networks)

    def client_ip(self, peer_host: str, headers: Mapping[str, str] | None) -> str:
        """The peer address, or the last untrusted X-Forwarded-For hop behind a trusted proxy."""
        if self.is_proxy(peer_host) and headers:
            forwarded = None
            for key, value in headers.items():
                if key.lower() == "x-forwarded-for":
                    forwarded = value
            if forwarded:
                hops = [h.strip() for h in forwarded.split(",") if h.strip()]
                for hop in reversed(hops):
                    if not self.is_proxy(hop):
                        return hop
        return peer_host
