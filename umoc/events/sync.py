"""``sync``: catch up after a disconnection too long for connection state recovery.

Socket.IO connection state recovery (``umoc.transport.recovery``) replays
what a socket missed for ``engineio.recovery_window`` seconds, on the node
that held it.  Past that (or on another node, or after a server restart) a
client asks for the messages stored since the last one it saw::

    sync {"sessionID": "...", "since": "2023-01-01T12:00:00Z", "limit": 100}
      -> sync_result {"since": "2023-01-01T12:00:00Z",
                      "messages": [<new_message objects, oldest first>],
                      "has_more": false, "server_time": "2023-01-01T12:05:00Z"}

``since`` is ISO 8601 (``Z`` or an offset; fractions allowed) or epoch
time: seconds, or milliseconds when larger than 1e11 (JavaScript's
``Date.now()``).  With ``has_more`` the client asks again from the last
message's timestamp.  Messages come from
``storage.messages.missed_since(user_id, since_epoch, limit)``: the chats the
user belongs to, newest state, deleted ones left out.

The complete change feed goes by cursor instead (``docs/api.md``, "Connection
state recovery and sync"): every kind of change, in order, each exactly once, whatever the
timestamps::

    connection_successful {..., "cursor": "<opaque>"}
    sync {"cursor": "<opaque>", "limit": 100}
      -> sync_result {"changes": [{"kind": "message", "event": "new_message", ...}, ...],
                      "cursor": "<opaque>", "has_more": false}

The client keeps the last ``cursor`` it got and asks again with it (at once
while ``has_more``).  `umoc.storage.feed` says what a user sees and why the
position is exact on both databases.  A payload gives ``since`` or
``cursor``, never both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from umoc.domain import notices
from umoc.domain.notices import shapes
from umoc.errors import UserError
from umoc.events.router import EventContext, Route
from umoc.records.feed import MAX_CURSOR_LENGTH
from umoc.records.schema import SESSION_ID, Field, Int, Schema, Str
from umoc.timefmt import iso

__all__ = ["ROUTES", "parse_since"]

MAX_LIMIT = 500
#: Epoch numbers above this are milliseconds (1e11 seconds is the year 5138).
_MILLISECONDS_ABOVE = 1e11


def parse_since(name: str, value: Any) -> float:
    """``since`` as epoch seconds, from ISO 8601 or an epoch number."""
    if isinstance(value, bool):
        raise UserError(f"Invalid '{name}': expected an ISO 8601 time or epoch seconds", code="invalid_argument")
    if isinstance(value, (int, float)):
        if not -_MILLISECONDS_ABOVE * 1000 <= value <= _MILLISECONDS_ABOVE * 1000:  # also NaN, inf, 10**400
            raise UserError(f"Invalid '{name}': out of range", code="invalid_argument")
        seconds = value / 1000 if value > _MILLISECONDS_ABOVE else float(value)
    elif isinstance(value, str) and 0 < len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise UserError(
                f"Invalid '{name}': expected an ISO 8601 time like 2023-01-01T12:00:00Z", code="invalid_argument"
            ) from exc
        if parsed.tzinfo is None:
            raise UserError(f"Invalid '{name}': the time needs a zone (Z or +00:00)", code="invalid_argument")
        seconds = parsed.timestamp()
    else:
        raise UserError(f"Invalid '{name}': expected an ISO 8601 time or epoch seconds", code="invalid_argument")
    if not 0 <= seconds < _MILLISECONDS_ABOVE:
        raise UserError(f"Invalid '{name}': out of range", code="invalid_argument")
    return seconds


async def sync(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    since, cursor = payload["since"], payload["cursor"]
    if (since is None) == (cursor is None):
        raise UserError(
            "Give either 'cursor' (the change feed) or 'since' (messages since a time)", code="invalid_argument"
        )
    if cursor is not None:
        return await _changes(ctx, cursor, payload["limit"])
    limit = payload["limit"]
    found = await ctx.services.storage.messages.missed_since(ctx.user_id, since, limit + 1)
    return {
        "since": iso(since),
        "messages": [shapes.new_message(m, ctx.now()) for m in found[:limit]],
        "has_more": len(found) > limit,
        "server_time": iso(ctx.now()),
    }


async def _changes(ctx: EventContext, cursor: str, limit: int) -> dict[str, Any]:
    page = await ctx.services.storage.feed.read(ctx.user_id, cursor, limit)
    members = sorted({m.user_id for change in page.changes if change.group for m in change.group.members})
    online = await ctx.services.presence.online_among(members) if members else set()
    return {
        "changes": [shapes.feed_change(change, ctx.user_id, online) for change in page.changes],
        "cursor": page.cursor,
        "has_more": page.has_more,
    }


ROUTES = [
    Route(
        "sync",
        Schema(
            SESSION_ID,
            Field("since", parse_since, required=False, schema={"type": ["string", "number"]}),
            Str("cursor", required=False, max_length=MAX_CURSOR_LENGTH),
            Int("limit", required=False, minimum=1, maximum=MAX_LIMIT, default=100),
        ),
        sync,
        response=notices.SYNC_RESULT,
        writes=False,
    ),
]
