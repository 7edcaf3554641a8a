"""The session of an HTTP request, as downloads and the export take it.

The session id and token come as ``sessionID`` / ``token`` query
parameters or ``X-Session-ID`` / ``X-Session-Token`` headers (a browser's
``<a href>`` can only give the former); each at most 256 bytes.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from umoc.domain.sessions import SessionManager
from umoc.records.sessions import SessionRecord

__all__ = ["request_session"]


async def request_session(sessions: SessionManager, request: IRequest) -> SessionRecord | None:
    """The live session the request names, or None (missing, malformed, wrong token, expired, ended)."""

    def first(arg: bytes, header: bytes) -> str | None:
        values = request.args.get(arg) or [request.getHeader(header)]
        value = values[0]
        if not isinstance(value, bytes) or not 0 < len(value) <= 256:
            return None
        return value.decode("latin-1")

    session_id = first(b"sessionID", b"x-session-id")
    token = first(b"token", b"x-session-token")
    if session_id is None or token is None:
        return None
    return await sessions.authenticate(session_id, token)
