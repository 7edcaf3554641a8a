"""Replies: a message may answer an earlier message of the same chat.

The reply stores only the target's ``seq`` (``messages.reply_to_seq``); what
clients see of the target (sender, type, the start of its current content,
or that it was deleted) is read when a payload is built, so an edit or a
delete of the target shows in every reply to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from umoc.errors import RefusedError
from umoc.storage.database import Row, Txn, in_clause

__all__ = ["NOT_IN_CHAT", "REPLY_PREVIEW", "ReplyTo", "replies_for_txn", "reply_target_txn"]

#: Characters of the target's content a reply carries.
REPLY_PREVIEW = 100
#: The one answer for a reply target that is missing, deleted, or in another chat.
NOT_IN_CHAT = "Invalid 'reply_to': no such message in this chat"


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """What a reply shows of the message it answers."""

    message_id: str
    deleted: bool
    sender_id: int
    sender_username: str
    type: str
    #: The first `REPLY_PREVIEW` characters of the target's content now.
    content: str


_COLUMNS = (
    "m.seq, m.id, m.chat_id, m.sender_id, u.username, m.type, m.content, m.deleted_at"
    " FROM messages m JOIN users u ON u.id = m.sender_id"
)


def _reply(row: Row) -> ReplyTo:
    return ReplyTo(
        message_id=row["id"],
        deleted=row["deleted_at"] is not None,
        sender_id=int(row["sender_id"]),
        sender_username=row["username"],
        type=row["type"],
        content=row["content"][:REPLY_PREVIEW],
    )


def reply_target_txn(txn: Txn, message_id: str) -> tuple[int, int, ReplyTo]:
    """``(seq, chat id, what the reply shows)`` of a live message; RefusedError when there is none.

    The caller checks the target's chat is the reply's: a message of another
    chat gets the same answer as a missing one.
    """
    row = txn.execute("SELECT " + _COLUMNS + " WHERE m.id = ?", (message_id,)).fetchone()
    if row is None or row["deleted_at"] is not None:
        raise RefusedError(NOT_IN_CHAT)
    return int(row["seq"]), int(row["chat_id"]), _reply(row)


def replies_for_txn(txn: Txn, target_seqs: Iterable[int]) -> dict[int, ReplyTo]:
    """What each reply shows of its target, by the target's ``seq``: one query."""
    seqs = sorted(set(target_seqs))
    if not seqs:
        return {}
    rows = txn.execute("SELECT " + _COLUMNS + " WHERE m.seq IN " + in_clause(seqs), seqs).fetchall()
    return {int(r["seq"]): _reply(r) for r in rows}
