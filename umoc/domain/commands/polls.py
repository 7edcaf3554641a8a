"""Polls: ``vote`` and ``close`` -> ``poll_updated`` to every member.

A poll is a message (``send_message`` with ``type: "poll"``); its votes and
its closing are changes to it.  A member may vote on a poll of a chat they
may write to, once per poll (a new vote replaces theirs, an empty one takes
it back) while it is open; its sender, or an admin of its group, closes it.
Closing a closed poll changes nothing and answers only the asking socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from umoc.domain import notices
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.messages import PollClose, PollVote
from umoc.storage.polls import PollChange

__all__ = ["PollAnswer", "close", "vote"]


@dataclass(frozen=True, slots=True)
class PollAnswer:
    """The ``poll_updated`` payload as the actor sees it; ``changed`` is False when nothing moved."""

    payload: dict[str, Any]
    changed: bool


def _announce(services: Services, actor: Actor, change: PollChange, event: str, now: float) -> PollAnswer:
    target = change.target
    if change.changed:
        key = replay.poll(target.id, actor.uid, event, now)
        for users, chat_id in target.views():
            shown = shapes.poll_updated((target.id, chat_id, target.is_group), change.poll, now)
            services.hub.tell(users, notices.POLL_UPDATED(shown), key=key)
    mine = shapes.poll_updated((target.id, target.chat_id_for(actor.uid), target.is_group), change.poll, now)
    return PollAnswer(mine, change.changed)


async def vote(services: Services, actor: Actor, choice: PollVote) -> PollAnswer:
    """Replace the actor's vote set on an open poll."""
    now = services.clock.seconds()
    return _announce(services, actor, await services.storage.polls.vote(actor.uid, choice, now), "vote", now)


async def close(services: Services, actor: Actor, closing: PollClose) -> PollAnswer:
    """Close a poll: its sender, or an admin of its group."""
    now = services.clock.seconds()
    return _announce(services, actor, await services.storage.polls.close(actor.uid, closing, now), "close", now)
