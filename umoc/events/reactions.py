"""Reaction events: ``add_reaction`` and ``remove_reaction`` -> ``reaction_updated``.

The rules are `umoc.domain.commands.reactions`'; an unchanged reaction
(an add or a remove repeated) is answered to the asking socket only.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import reactions
from umoc.events.router import EventContext, Route
from umoc.records.messages import Reaction
from umoc.records.schema import SESSION_ID, Schema, Str, Uuid

__all__ = ["ROUTES"]


def _answer(ctx: EventContext, reacted: reactions.Reacted) -> dict[str, Any]:
    if not reacted.changed:
        ctx.socket.tell(notices.REACTION_UPDATED(reacted.payload))
    return reacted.payload


async def add_reaction(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    reaction = Reaction.put_on(payload["message_id"], payload["emoji"])
    return _answer(ctx, await reactions.react(ctx.services, ctx.actor, reaction))


async def remove_reaction(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    reaction = Reaction(payload["message_id"], payload["emoji"])
    return _answer(ctx, await reactions.unreact(ctx.services, ctx.actor, reaction))


#: The schema says only "a string"; `Reaction` checks what an emoji may be.
_REACTION = Schema(SESSION_ID, Uuid("message_id"), Str("emoji", min_length=0, max_length=1000))

ROUTES = [
    Route(
        "add_reaction",
        _REACTION,
        add_reaction,
        rate_class="messages",
    ),
    Route(
        "remove_reaction",
        _REACTION,
        remove_reaction,
        rate_class="messages",
    ),
]
