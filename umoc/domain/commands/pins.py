"""Pinned messages: ``pin`` and ``unpin`` -> ``message_pinned``; ``pinned`` -> ``pinned_messages``.

Anybody who may write in a chat may pin and unpin its messages (as with
reactions); a chat holds at most ``messages.max_pins``.  A change reaches
every socket of every member; repeating a pin or an unpin changes nothing,
and then only the asking socket is answered (the edge sends it the
returned payload), as `umoc.domain.commands.reactions` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from umoc.domain import notices
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.messages import Pin, PinnedQuery

__all__ = ["Pinned", "pin", "pinned"]


@dataclass(frozen=True, slots=True)
class Pinned:
    """The ``message_pinned`` payload as the actor sees it; ``changed`` is False when nothing moved."""

    payload: dict[str, Any]
    changed: bool


async def pin(services: Services, actor: Actor, change: Pin) -> Pinned:
    """Pin or unpin a message of a chat the actor may write to; ``message_pinned`` to its members."""
    now = services.clock.seconds()
    pins = services.storage.pins
    if change.pinned:
        done = await pins.pin(actor.uid, change.message_id, now, services.config.messages.max_pins)
    else:
        done = await pins.unpin(actor.uid, change.message_id, now)
    target = done.target
    if done.changed:
        key = replay.pin(target.id, actor.uid, change.pinned, now)
        for users, chat_id in target.views():
            shown = shapes.message_pinned((target.id, chat_id, target.is_group), change.pinned, actor.uid)
            services.hub.tell(users, notices.MESSAGE_PINNED(shown), key=key)
    mine = shapes.message_pinned((target.id, target.chat_id_for(actor.uid), target.is_group), change.pinned, actor.uid)
    return Pinned(mine, done.changed)


async def pinned(services: Services, actor: Actor, query: PinnedQuery) -> dict[str, Any]:
    """``pinned_messages``: the chat's live pinned messages, newest pin first, as ``new_message`` shows them."""
    found = await services.storage.pins.pinned(
        actor.uid, query.chat_id, query.is_group, services.config.messages.max_pins
    )
    return {
        "chat_id": query.chat_id,
        "is_group": query.is_group,
        "messages": [shapes.new_message(message, services.clock.seconds()) for message in found],
    }
