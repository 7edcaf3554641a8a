"""Session events: ``verify_session`` and the application-level ``ping``."""

from __future__ import annotations

from typing import Any

from umoc.credentials import token_matches
from umoc.events.router import EventContext, Route
from umoc.events.schema import Number, Schema, Str

__all__ = ["ROUTES"]


async def verify_session(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Valid when the socket's session still exists, has not expired and (if given) the token matches."""
    invalid = {"valid": False, "message": "Your session has expired or is invalid"}
    record = await ctx.app.storage.users.session(ctx.session_id)
    if record is None or record.expires_at <= ctx.now():
        return invalid
    token = payload["token"]
    if token is not None and not token_matches(token, record.token_hash):
        return invalid
    return {"valid": True, "expires_at": int(record.expires_at)}


async def ping(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``latency`` is server_time - timestamp: one-way, as the client's clock allows."""
    server_time = int(ctx.now() * 1000)
    timestamp = payload["timestamp"]
    return {"timestamp": timestamp, "server_time": server_time, "latency": server_time - int(timestamp)}


ROUTES = [
    Route(
        "verify_session",
        Schema(Str("sessionID", required=False, max_length=64), Str("token", required=False, max_length=256)),
        verify_session,
        response="session_status",
    ),
    Route(
        "ping",
        Schema(Str("sessionID", required=False, max_length=64), Number("timestamp")),
        ping,
        response="pong",
    ),
]
