"""The message an action names (an edit, a reaction), and who may act on it.

Edits and reactions refer to a message by id.  `target_txn` finds it in a
chat of the acting user's (anything else, deleted or unknown, is the same
``Message not found``, so ids reveal nothing), and `require_writable_txn`
applies the rule of sending: friends both ways in a direct chat, a member
in a group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from umoc.errors import RefusedError
from umoc.records.groups import Action
from umoc.storage.database import Txn
from umoc.storage.membership import members_at_txn
from umoc.storage.relations import BLOCKED, reachable, statuses_txn
from umoc.storage.standing import require_standing_txn

__all__ = ["MESSAGE_NOT_FOUND", "Target", "require_writable_txn", "target_by_seq_txn", "target_txn"]

MESSAGE_NOT_FOUND = "Message not found"


@dataclass(frozen=True, slots=True)
class Target:
    seq: int
    id: str
    #: The internal chat id (``chats.id``).
    chat_id: int
    is_group: bool
    sender_id: int
    #: The recipient user of a direct message, the group id of a group message.
    recipient_id: int
    type: str
    content: str
    encrypted: bool
    created_at: float
    edited_at: float | None
    #: Everyone told about a change: the group's members, or both users of a direct chat.
    members: list[int]

    def views(self) -> list[tuple[list[int], int]]:
        """``(users, chat_id as those users call the chat)``: one for a group, one per user of a direct chat."""
        if self.is_group:
            return [(self.members, self.recipient_id)]
        return [([self.sender_id], self.recipient_id), ([self.recipient_id], self.sender_id)]

    def chat_id_for(self, user_id: int) -> int:
        if self.is_group:
            return self.recipient_id
        return self.recipient_id if user_id == self.sender_id else self.sender_id


def target_txn(txn: Txn, user_id: int, message_id: str, lock: bool = False) -> Target:
    """The live message ``message_id`` in an open chat ``user_id`` is in; RefusedError otherwise.

    ``lock`` locks the message row (PostgreSQL), serialising actions on one message.
    """
    row = txn.execute(
        "SELECT m.seq, m.id, m.chat_id, m.sender_id, m.recipient_id, m.is_group, m.type, m.content,"
        " m.encrypted_content, m.created_at, m.edited_at, m.deleted_at, c.closed_at, c.members_version"
        " FROM messages m JOIN user_chats uc ON uc.chat_id = m.chat_id AND uc.user_id = ?"
        " JOIN chats c ON c.id = m.chat_id WHERE m.id = ?"
        + (" FOR UPDATE OF m" if lock and txn.dialect.for_update else ""),
        (user_id, message_id),
    ).fetchone()
    if row is None or row["deleted_at"] is not None or row["closed_at"] is not None:
        raise RefusedError(MESSAGE_NOT_FOUND, code="not_found")
    return _target(txn, row)


def _target(txn: Txn, row: Any) -> Target:
    is_group = bool(row["is_group"])
    sender_id, recipient_id = int(row["sender_id"]), int(row["recipient_id"])
    if is_group:
        # The node's kept members when the chat's version holds (migration 030): no row per member.
        members = list(members_at_txn(txn, int(row["chat_id"]), int(row["members_version"])))
    else:
        members = [sender_id, recipient_id]
    return Target(
        seq=int(row["seq"]),
        id=row["id"],
        chat_id=int(row["chat_id"]),
        is_group=is_group,
        sender_id=sender_id,
        recipient_id=recipient_id,
        type=row["type"],
        content=row["content"],
        encrypted=row["encrypted_content"] is not None,
        created_at=float(row["created_at"]),
        edited_at=row["edited_at"],
        members=members,
    )


def target_by_seq_txn(txn: Txn, seq: int) -> Target | None:
    """The live message ``seq`` whoever asks (None if deleted, or its chat closed): for changes made by the server."""
    row = txn.execute(
        "SELECT m.seq, m.id, m.chat_id, m.sender_id, m.recipient_id, m.is_group, m.type, m.content,"
        " m.encrypted_content, m.created_at, m.edited_at, m.deleted_at, c.closed_at, c.members_version"
        " FROM messages m JOIN chats c ON c.id = m.chat_id WHERE m.seq = ?",
        (seq,),
    ).fetchone()
    if row is None or row["deleted_at"] is not None or row["closed_at"] is not None:
        return None
    return _target(txn, row)


def require_writable_txn(txn: Txn, user_id: int, target: Target, doing: str, action: Action, now: float) -> None:
    """Refuse unless ``user_id`` may still write in the target's chat (``doing``: "edit messages", ...).

    Group membership was checked by `target_txn`; a reader or a muted member
    may not write (`require_standing_txn`).  A direct chat needs both
    users to be friends (without ``txn.rules.require_friendship``, only that
    neither blocked the other); the blocked user is not told of the block
    (the same answer as for a stranger), the blocker is reminded of it.
    """
    if target.is_group:
        require_standing_txn(txn, target.chat_id, user_id, action, now)
        return
    peer = target.chat_id_for(user_id)
    mine, theirs = statuses_txn(txn, user_id, peer)
    if mine == BLOCKED:
        raise RefusedError(f"You have blocked this user: unblock them to {doing}", code="forbidden")
    if not reachable(mine, theirs, txn.rules.require_friendship):
        if not txn.rules.require_friendship:
            raise RefusedError(f"You cannot {doing} in this chat", code="forbidden")
        raise RefusedError(f"You can only {doing} in chats with your friends", code="forbidden")
