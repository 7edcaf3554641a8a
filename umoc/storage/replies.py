"""Replies: a message may answer an earlier message of the same chat.

The reply stores only the target's ``seq`` (``messages.reply_to_seq``); what
clients see of the target (sender, type, the start of its current content,
or that it was deleted) is read when a payload is built, so an edit or a
delete of the target shows in every reply to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from umoc.errors import RefusedError
from umoc.storage.database import Row, Txn, in_clause

__all__ = [
    "NOT_IN_CHAT",
    "REPLY_PREVIEW",
    "ReplyTo",
    "replies_for_txn",
    "sender_and_target_txn",
    "sender_target_and_more_txn",
]

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


_SENDER_AND_TARGET = (
    "SELECT s.display_name AS sender_display_name, s.avatar_file_id AS sender_avatar_file_id,"
    " m.seq, m.id, m.chat_id, m.sender_id, u.username, m.type, m.content, m.deleted_at"
)
_SENDER_AND_TARGET_FROM = " FROM users s LEFT JOIN messages m ON m.id = ? LEFT JOIN users u ON u.id = m.sender_id"


def sender_and_target_txn(
    txn: Txn, sender_id: int, message_id: str | None
) -> tuple[str | None, str | None, tuple[int, int, ReplyTo] | None]:
    """The sender's ``(display name, avatar file id)`` and the reply target, in one statement.

    The target is ``(seq, chat id, what the reply shows)`` of a live message,
    None without ``message_id``; RefusedError when there is no such live
    message.  The caller checks the target's chat is the reply's: a message
    of another chat gets the same answer as a missing one.  Sending reads
    the sender's profile for ``new_message`` anyway; the target rides along
    (a plain message joins nothing), so a reply costs no extra round trip.
    """
    row = txn.execute(
        _SENDER_AND_TARGET + _SENDER_AND_TARGET_FROM + " WHERE s.id = ?", (message_id, sender_id)
    ).fetchone()
    return _sender_and_target(row, message_id)


def sender_target_and_more_txn(
    txn: Txn, sender_id: int, message_id: str | None, columns: str, joins: str, params: Sequence[Any]
) -> tuple[str | None, str | None, tuple[int, int, ReplyTo] | None, Row | None]:
    """`sender_and_target_txn` with more ``columns`` from more ``joins`` (their ``params``) in the same statement.

    The row comes back too (None if the sender is gone), for the caller to
    read those columns: a thread reply's root rides along this way.
    """
    row = txn.execute(
        _SENDER_AND_TARGET + ", " + columns + _SENDER_AND_TARGET_FROM + joins + " WHERE s.id = ?",
        (message_id, *params, sender_id),
    ).fetchone()
    return (*_sender_and_target(row, message_id), row)


def _sender_and_target(
    row: Row | None, message_id: str | None
) -> tuple[str | None, str | None, tuple[int, int, ReplyTo] | None]:
    if row is None:
        return None, None, None
    target = None
    if message_id is not None:
        if row["id"] is None or row["deleted_at"] is not None:
            raise RefusedError(NOT_IN_CHAT, code="invalid_argument")
        target = int(row["seq"]), int(row["chat_id"]), _reply(row)
    return row["sender_display_name"], row["sender_avatar_file_id"], target


def replies_for_txn(txn: Txn, target_seqs: Iterable[int]) -> dict[int, ReplyTo]:
    """What each reply shows of its target, by the target's ``seq``: one query."""
    seqs = sorted(set(target_seqs))
    if not seqs:
        return {}
    rows = txn.execute("SELECT " + _COLUMNS + " WHERE m.seq IN " + in_clause(seqs), seqs).fetchall()
    return {int(r["seq"]): _reply(r) for r in rows}
