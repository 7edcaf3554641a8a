"""Session events: ``verify_session`` and the application-level ``ping``."""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.events.router import EventContext, Route
from umoc.records.schema import SESSION_ID, Number, Schema, Str

__all__ = ["ROUTES"]


INVALID = {"valid": False, "message": "Your session has expired or is invalid"}


async def verify_session(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Valid when the socket's session still exists, has not expired and (if given) the token matches.

    A ``sessionID`` other than the socket's own is, as the spec's answer to
    any invalid session, ``{"valid": false, ...}``: a socket can only vouch
    for its own session, and says nothing about anyone else's.
    """
    claimed = payload["sessionID"]
    if claimed is not None and claimed != ctx.session_id:
        return dict(INVALID)
    record = await ctx.services.sessions.authenticate(ctx.session_id, payload["token"])
    if record is None:
        return dict(INVALID)
    return {"valid": True, "expires_at": int(record.expires_at)}


async def ping(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``latency`` is server_time - timestamp: one-way, as the client's clock allows."""
    server_time = int(ctx.now() * 1000)
    timestamp = payload["timestamp"]
    return {"timestamp": timestamp, "server_time": server_time, "latency": server_time - int(timestamp)}


ROUTES = [
    Route(
        "verify_session",
        Schema(SESSION_ID, Str("token", required=False, max_length=256)),
        verify_session,
        response=notices.SESSION_STATUS,
        foreign_session_refused=False,
        writes=False,
    ),
    Route(
        "ping",
        Schema(SESSION_ID, Number("timestamp")),
        ping,
        response=notices.PONG,
        writes=False,
    ),
]
