"""Reaction events: ``add_reaction`` and ``remove_reaction`` -> ``reaction_updated``.

A change reaches every socket of every member (the reacting user's other
devices too); repeating an add or a remove changes nothing, and then only
the asking socket is answered.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.notices import shapes
from umoc.errors import UserError, check_visible
from umoc.events.router import EventContext, Route
from umoc.events.schema import SESSION_ID, Field, Schema, Uuid
from umoc.storage.reactions import ReactionChange

__all__ = ["MAX_EMOJI", "MAX_REACTIONS_PER_USER", "ROUTES"]

MAX_EMOJI = 32
#: Different emoji one user may put on one message.
MAX_REACTIONS_PER_USER = 20
_BAD_EMOJI = f"Invalid 'emoji': expected 1 to {MAX_EMOJI} characters with no whitespace"


def _emoji(field: str, value: Any) -> str:
    """An emoji or a short code: 1-32 characters, no whitespace or control characters.

    Anything else is allowed (an emoji is often several code points joined by
    U+200D, with variation selectors): clients decide what they show.  This
    is what ``remove_reaction`` takes, so one put on before the rule below
    can still be taken off.
    """
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_EMOJI:
        raise UserError(_BAD_EMOJI)
    if any(char.isspace() or ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in value):
        raise UserError(_BAD_EMOJI)
    return value


def _new_emoji(field: str, value: Any) -> str:
    """What ``add_reaction`` takes: `_emoji`, and nothing invisible outside an emoji sequence (issue 22, G12)."""
    return check_visible(field, _emoji(field, value))


def _announce(ctx: EventContext, change: ReactionChange, emoji: str, added: bool) -> dict[str, Any]:
    target = change.target
    if change.changed:
        for users, chat_id in target.views():
            updated = shapes.reaction_updated(
                target.id, chat_id, target.is_group, ctx.user_id, emoji, added, change.reactions
            )
            ctx.services.hub.tell(users, notices.REACTION_UPDATED(updated))
    mine = shapes.reaction_updated(
        target.id, target.chat_id_for(ctx.user_id), target.is_group, ctx.user_id, emoji, added, change.reactions
    )
    if not change.changed:
        ctx.socket.tell(notices.REACTION_UPDATED(mine))
    return mine


async def add_reaction(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    change = await ctx.services.storage.reactions.add(
        ctx.user_id, payload["message_id"], payload["emoji"], ctx.now(), MAX_REACTIONS_PER_USER
    )
    return _announce(ctx, change, payload["emoji"], True)


async def remove_reaction(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    change = await ctx.services.storage.reactions.remove(
        ctx.user_id, payload["message_id"], payload["emoji"], ctx.now()
    )
    return _announce(ctx, change, payload["emoji"], False)


ROUTES = [
    Route(
        "add_reaction",
        Schema(SESSION_ID, Uuid("message_id"), Field("emoji", _new_emoji)),
        add_reaction,
        rate_class="messages",
    ),
    Route(
        "remove_reaction",
        Schema(SESSION_ID, Uuid("message_id"), Field("emoji", _emoji)),
        remove_reaction,
        rate_class="messages",
    ),
]
