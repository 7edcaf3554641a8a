"""Threads: ``thread`` -> ``thread_history``, ``threads`` -> ``threads``, ``follow`` -> ``thread_followed``.

A reply itself is a message sent with ``thread_id`` (`umoc.domain.commands.messages.send`,
which tells the members ``thread_updated``).  Reading and following are
the reader's own: whoever is in the root's chat may.  A follow changed
reaches every socket of the follower (their other devices), a follow
repeated only the asking socket (the edge sends it the returned payload).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from umoc.domain import notices
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.messages import ThreadFollow, ThreadQuery, ThreadsQuery

__all__ = ["Followed", "follow", "thread", "threads"]


@dataclass(frozen=True, slots=True)
class Followed:
    """The ``thread_followed`` payload; ``changed`` is False when the follow was so already."""

    payload: dict[str, Any]
    changed: bool


async def thread(services: Services, actor: Actor, query: ThreadQuery) -> dict[str, Any]:
    """``thread_history``: the root and a page of replies; the newest page reads the thread for a follower.

    When that read lowers the chat's unread count, every socket of the
    reader gets ``chat_read`` with the new counts (as after a read receipt).
    """
    now = services.clock.seconds()
    page = await services.storage.threads.thread(actor.uid, query, now)
    if page.read is not None:
        shown = shapes.chat_read(page.read)
        services.hub.tell([actor.uid], notices.CHAT_READ(shown), key=replay.chat_read(shown, now))
    return shapes.thread_history(page, now)


async def threads(services: Services, actor: Actor, query: ThreadsQuery) -> dict[str, Any]:
    """``threads``: a chat's threads, or those the actor follows, latest reply first, with unread counts."""
    page = await services.storage.threads.threads(actor.uid, query)
    now = services.clock.seconds()
    return {"threads": [shapes.thread_entry(entry, now) for entry in page.threads], "next_cursor": page.next_cursor}


async def follow(services: Services, actor: Actor, change: ThreadFollow) -> Followed:
    """Follow or unfollow a thread: its replies count as unread (``get_chats``, ``get_threads``) and push."""
    now = services.clock.seconds()
    _, changed = await services.storage.threads.follow(actor.uid, change.thread_id, change.follow, now)
    payload = {"thread_id": change.thread_id, "following": change.follow}
    if changed:
        key = replay.thread_follow(change.thread_id, change.follow, now)
        services.hub.tell([actor.uid], notices.THREAD_FOLLOWED(payload), key=key)
    return Followed(payload, changed)
