"""Who may see and write which chat: the checks every chat event shares.

Storage checks the rules again inside the transaction that acts on them;
the functions here are for callers that must refuse before doing work of
their own (the files engineer checks before accepting an upload), and for
turning a store's `RefusedError` into the spec's ``error``.
"""

from __future__ import annotations

from typing import Awaitable, TypeVar

from umoc.clock import iso_or_none
from umoc.events.errors import UserError
from umoc.events.router import EventContext
from umoc.storage.errors import RefusedError
from umoc.storage.messages import UNKNOWN_CHAT
from umoc.storage.relations import FRIEND

__all__ = ["MESSAGE_TYPES", "presence_fields", "refused_as_error", "require_writable_chat"]

T = TypeVar("T")

#: The spec's message types.
MESSAGE_TYPES = ("text", "image", "video", "audio", "file")


async def refused_as_error(result: Awaitable[T]) -> T:
    """Await a store call; a rule's refusal becomes `UserError` with the same message."""
    try:
        return await result
    except RefusedError as exc:
        raise UserError(exc.message) from None


async def require_writable_chat(ctx: EventContext, chat_id: int, is_group: bool) -> None:
    """Raise `UserError` unless the user may send to that chat right now.

    Direct: both users are friends (which also means neither blocked the
    other).  Group: the user is a member of the open group.  A chat the user
    cannot see gets the same answer as one that does not exist.
    """
    storage = ctx.app.storage
    if is_group:
        if not await storage.groups.is_member(chat_id, ctx.user_id):
            raise UserError(UNKNOWN_CHAT)
        return
    if chat_id == ctx.user_id:
        raise UserError("You cannot send a message to yourself")
    mine, theirs = await storage.contacts.statuses(ctx.user_id, chat_id)
    if mine != FRIEND or theirs != FRIEND:
        raise UserError("You can only send direct messages to your friends")


def presence_fields(visible: bool, online: bool, last_seen: float | None) -> tuple[bool, str | None]:
    """(is_online, last_seen) as another user may see them: nothing through a block or to a stranger."""
    if not visible:
        return False, None
    return online, iso_or_none(last_seen)
