"""Engine.IO's documented HTTP errors, shared by the endpoint and the polling transport."""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest

__all__ = [
    "BAD_HANDSHAKE_METHOD",
    "BAD_REQUEST",
    "FORBIDDEN",
    "UNKNOWN_SID",
    "UNKNOWN_TRANSPORT",
    "UNSUPPORTED_VERSION",
    "engine_error",
]

UNKNOWN_TRANSPORT = (0, "Transport unknown")
UNKNOWN_SID = (1, "Session ID unknown")
BAD_HANDSHAKE_METHOD = (2, "Bad handshake method")
BAD_REQUEST = (3, "Bad request")
FORBIDDEN = (4, "Forbidden")
UNSUPPORTED_VERSION = (5, "Unsupported protocol version")


def engine_error(request: IRequest, error: tuple[int, str], status: int = 400, cors: Any = None) -> bytes:
    """Engine.IO's JSON error body ``{"code": n, "message": "..."}``."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    if cors is not None:
        cors(request)
    return json.dumps({"code": error[0], "message": error[1]}, separators=(",", ":")).encode()
