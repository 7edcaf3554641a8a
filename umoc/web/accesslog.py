"""The access log line: the client address as seen through trusted proxies, and no secrets.

Socket.IO clients put ``sessionID`` and ``token`` in the URL query (the
spec's way to authenticate), and downloads may too, so the query of every
logged URL keeps only the keys known to carry nothing secret; every other
value is replaced by ``[redacted]``.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qsl, quote

from twisted.web.http import combinedLogFormatter

from umoc.transport.gate import Gatekeeper

__all__ = ["access_log_formatter", "redact_uri"]

#: Engine.IO's own query keys: a protocol version, a transport name, a session id, a cache buster.
SAFE_QUERY_KEYS = frozenset({"EIO", "transport", "sid", "t", "b64"})


def redact_uri(uri: bytes) -> bytes:
    """``/socket.io/?EIO=4&token=abc`` -> ``/socket.io/?EIO=4&token=[redacted]``."""
    path, sep, query = uri.partition(b"?")
    if not sep:
        return uri
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    kept = [f"{quote(k)}={quote(v) if k in SAFE_QUERY_KEYS else '[redacted]'}" for k, v in pairs]
    return path + b"?" + "&".join(kept).encode("latin-1")


class _Logged:
    """The request as the log formatter sees it: the real client address, the redacted URI."""

    def __init__(self, request: Any, client: str) -> None:
        self._request = request
        self._client = client
        self.uri = redact_uri(request.uri)

    def getClientAddress(self) -> Any:
        address = self._request.getClientAddress()
        return type(address)(address.type, self._client, address.port) if hasattr(address, "port") else address

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def access_log_formatter(gate: Gatekeeper) -> Callable[[str, Any], str]:
    """Twisted's combined log format over `_Logged`."""

    def formatter(timestamp: str, request: Any) -> str:
        headers = {k.decode("latin-1"): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
        peer = request.getClientAddress()
        client = gate.client_ip(getattr(peer, "host", "-"), headers)
        return combinedLogFormatter(timestamp, _Logged(request, client))

    return formatter
