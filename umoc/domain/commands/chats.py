"""Chats: a user's own settings for one chat (``mute`` and ``unmute`` its pushes).

A mute is the user's alone: nobody else is told, and it changes only what
`umoc.domain.push.PushNotifier` pushes for that chat.
"""

from __future__ import annotations

from typing import Any

from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.messages import Mute
from umoc.storage.messages import UNKNOWN_CHAT
from umoc.timefmt import iso_or_none

__all__ = ["mute"]


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
        raise UserError(UNKNOWN_CHAT)


async def mute(services: Services, actor: Actor, change: Mute) -> dict[str, Any]:
    """Pushes for a chat off (until ``change.until``, a time in the future) or back on; the ``chat_muted`` payload."""
    chat_id, is_group = change.chat_id, change.is_group
    if not change.muted:
        await services.storage.push.unmute(actor.uid, chat_id, is_group)
        return {"chat_id": chat_id, "is_group": is_group, "muted": False, "until": None}
    if change.until is not None and change.until <= services.clock.seconds():
        raise UserError("Invalid 'until': expected a time in the future")
    await _require_chat(services, actor.uid, chat_id, is_group)
    await services.storage.push.mute(actor.uid, chat_id, is_group, change.until)
    return {"chat_id": chat_id, "is_group": is_group, "muted": True, "until": iso_or_none(change.until)}
