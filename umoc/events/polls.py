"""Poll events: ``vote_poll`` and ``close_poll`` -> ``poll_updated``.

A poll itself is sent with ``send_message`` (``type: "poll"``, ``poll``).
The rules are `umoc.domain.commands.polls`'; a close repeated is answered
to the asking socket only.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import polls
from umoc.errors import UserError
from umoc.events.router import EventContext, Route
from umoc.records.messages import MAX_POLL_OPTIONS, PollClose, PollVote
from umoc.records.schema import SESSION_ID, Field, Schema, Uuid

__all__ = ["ROUTES"]


def _answer(ctx: EventContext, done: polls.PollAnswer) -> dict[str, Any]:
    if not done.changed:
        ctx.socket.tell(notices.POLL_UPDATED(done.payload))
    return done.payload


def _option_ids(name: str, value: Any) -> list[Any]:
    """A JSON list (`PollVote` checks its ids)."""
    if not isinstance(value, list) or len(value) > MAX_POLL_OPTIONS:
        raise UserError(f"Invalid '{name}': expected a list of option ids", code="invalid_argument")
    return value


async def vote_poll(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    choice = PollVote(payload["message_id"], tuple(payload["option_ids"]))
    return _answer(ctx, await polls.vote(ctx.services, ctx.actor, choice))


async def close_poll(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return _answer(ctx, await polls.close(ctx.services, ctx.actor, PollClose(payload["message_id"])))


ROUTES = [
    Route(
        "vote_poll",
        Schema(
            SESSION_ID,
            Uuid("message_id"),
            Field(
                "option_ids",
                _option_ids,
                schema={"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": MAX_POLL_OPTIONS},
            ),
        ),
        vote_poll,
        rate_class="messages",
    ),
    Route("close_poll", Schema(SESSION_ID, Uuid("message_id")), close_poll, rate_class="messages"),
]
