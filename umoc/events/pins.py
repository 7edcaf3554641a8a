"""Pin events: ``pin_message`` / ``unpin_message`` -> ``message_pinned``; ``get_pinned`` -> ``pinned_messages``.

The rules are `umoc.domain.commands.pins`'; an unchanged pin (a pin or an
unpin repeated) is answered to the asking socket only.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import pins
from umoc.events.router import EventContext, Route
from umoc.records.messages import Pin, PinnedQuery
from umoc.records.schema import SESSION_ID, Bool, Int, Schema, Uuid

__all__ = ["ROUTES"]


def _answer(ctx: EventContext, done: pins.Pinned) -> dict[str, Any]:
    if not done.changed:
        ctx.socket.tell(notices.MESSAGE_PINNED(done.payload))
    return done.payload


async def pin_message(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return _answer(ctx, await pins.pin(ctx.services, ctx.actor, Pin(payload["message_id"], True)))


async def unpin_message(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return _answer(ctx, await pins.pin(ctx.services, ctx.actor, Pin(payload["message_id"], False)))


async def get_pinned(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await pins.pinned(ctx.services, ctx.actor, PinnedQuery(payload["chat_id"], payload["is_group"]))


_PIN = Schema(SESSION_ID, Uuid("message_id"))

ROUTES = [
    Route("pin_message", _PIN, pin_message, rate_class="messages"),
    Route("unpin_message", _PIN, unpin_message, rate_class="messages"),
    Route(
        "get_pinned",
        Schema(SESSION_ID, Int("chat_id"), Bool("is_group", required=False, default=False)),
        get_pinned,
        response=notices.PINNED_MESSAGES,
        rate_class="reads",
        writes=False,
    ),
]
