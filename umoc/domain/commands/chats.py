"""Chats: a user's own state of one chat (``mute`` its pushes, ``mark_unread``), shared by their devices.

A mute or a mark is the user's alone: nobody else is told, and a mute changes
only what `umoc.domain.push.PushNotifier` pushes for that chat.  Every socket
of the user, on every node, is told (``chat_muted``, ``chat_read``), so each
device shows the same state whichever one changed it.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.messages import MarkUnread, Mute
from umoc.storage.messages import UNKNOWN_CHAT

__all__ = ["mark_unread", "mute"]


async def _require_chat(services: Services, user_id: int, chat_id: int, is_group: bool) -> None:
    """A group the user is in, or a direct chat with a contact or a former one (the chat remains)."""
    storage = services.storage
    if is_group:
        known = await storage.groups.is_member(chat_id, user_id)
    else:
        known = (await storage.contacts.get(user_id, chat_id)) is not None or (
            await storage.messages.has_direct_chat(user_id, chat_id)
        )
    if not known:
        raise UserError(UNKNOWN_CHAT, code="not_found")


async def mute(services: Services, actor: Actor, change: Mute) -> dict[str, Any]:
    """Pushes for a chat off (until ``change.until``, a time in the future) or back on.

    ``chat_muted`` to every socket of the user; the payload.
    """
    now = services.clock.seconds()
    if change.muted:
        if change.until is not None and change.until <= now:
            raise UserError("Invalid 'until': expected a time in the future", code="invalid_argument")
        await _require_chat(services, actor.uid, change.chat_id, change.is_group)
    await services.storage.push.mute(actor.uid, change, now)
    payload = shapes.chat_muted(change.chat_id, change.is_group, change.until, change.muted)
    services.hub.tell([actor.uid], notices.CHAT_MUTED(payload), key=replay.chat_muted(payload, now))
    return payload


async def mark_unread(services: Services, actor: Actor, mark: MarkUnread) -> dict[str, Any]:
    """``mark.from_message_id`` and every later message of the chat unread again for the actor alone.

    The senders still see their messages read; every socket of the actor
    gets ``chat_read`` with the new counts.  Raises `UserError` when the
    actor is not in the chat or the message is not a live one of it.
    """
    now = services.clock.seconds()
    state = await services.storage.readstate.mark_unread(actor.uid, mark, now)
    payload = shapes.chat_read(state)
    services.hub.tell([actor.uid], notices.CHAT_READ(payload), key=replay.chat_read(payload, now))
    return payload
