"""Reactions: ``react`` and ``unreact`` -> ``reaction_updated``.

A change reaches every socket of every member (the reacting user's other
devices too); repeating an add or a remove changes nothing, and then only
the asking socket is answered (the edge sends it the returned payload).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from umoc.domain import notices
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.messages import Reaction
from umoc.storage.reactions import ReactionChange

__all__ = ["MAX_REACTIONS_PER_USER", "Reacted", "react", "unreact"]

#: Different emoji one user may put on one message.
MAX_REACTIONS_PER_USER = 20


@dataclass(frozen=True, slots=True)
class Reacted:
    """The ``reaction_updated`` payload as the actor sees it; ``changed`` is False when nothing moved.

    Nobody was told of an unchanged reaction: the asking edge answers only its own client.
    """

    payload: dict[str, Any]
    changed: bool


def _announce(services: Services, actor: Actor, change: ReactionChange, emoji: str, added: bool, at: float) -> Reacted:
    """Tell the members of a change (nobody when nothing moved); ``at`` is the time the store was given."""
    target = change.target
    if change.changed:
        key = replay.reaction(target.id, actor.uid, emoji, added, at)
        for users, chat_id in target.views():
            updated = shapes.reaction_updated(
                (target.id, chat_id, target.is_group), actor.uid, emoji, added, change.reactions
            )
            services.hub.tell(users, notices.REACTION_UPDATED(updated), key=key)
    where = (target.id, target.chat_id_for(actor.uid), target.is_group)
    mine = shapes.reaction_updated(where, actor.uid, emoji, added, change.reactions)
    return Reacted(mine, change.changed)


async def react(services: Services, actor: Actor, reaction: Reaction) -> Reacted:
    """Put an emoji on a message of a chat the actor may write to."""
    now = services.clock.seconds()
    change = await services.storage.reactions.add(actor.uid, reaction, now, MAX_REACTIONS_PER_USER)
    return _announce(services, actor, change, reaction.emoji, True, now)


async def unreact(services: Services, actor: Actor, reaction: Reaction) -> Reacted:
    """Take the actor's emoji off a message."""
    now = services.clock.seconds()
    change = await services.storage.reactions.remove(actor.uid, reaction, now)
    return _announce(services, actor, change, reaction.emoji, False, now)
