"""Who may write to which chat, for callers that must refuse before doing work of their own.

Storage checks the same rules again inside the transaction that acts on
them (that is what keeps check and write atomic); this check is for work
that starts before any transaction, such as accepting a file upload.
"""

from __future__ import annotations

from umoc.errors import UserError
from umoc.storage import Storage
from umoc.storage.messages import UNKNOWN_CHAT
from umoc.storage.relations import BLOCKED, reachable

__all__ = ["require_writable_chat"]


async def require_writable_chat(storage: Storage, user_id: int, chat_id: int, is_group: bool) -> None:
    """Raise `UserError` unless the user may send to that chat right now.

    Direct: both users are friends (which also means neither blocked the
    other); with ``contacts.require_friendship: false``, an existing user
    neither blocked.  Group: the user is a member of the open group.  A chat the user
    cannot see gets the same answer as one that does not exist.
    """
    if is_group:
        if not await storage.groups.is_member(chat_id, user_id):
            raise UserError(UNKNOWN_CHAT, code="not_found")
        return
    if chat_id == user_id:
        raise UserError("You cannot send a message to yourself", code="invalid_argument")
    mine, theirs = await storage.contacts.statuses(user_id, chat_id)
    if storage.require_friendship:
        if not reachable(mine, theirs):
            raise UserError("You can only send direct messages to your friends", code="forbidden")
        return
    if BLOCKED in (mine, theirs):
        raise UserError("You cannot send direct messages to this user", code="forbidden")
    if theirs is None and await storage.users.by_id(chat_id) is None:
        raise UserError("User not found", code="not_found")
