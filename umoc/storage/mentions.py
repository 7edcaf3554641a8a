"""Mentions: the members a message names, and each member's unread mentions per chat.

Whom a message mentions is a column of the message (``messages.mentions``,
ids joined by commas), read with it.  Each mentioned member but the sender
also gets an ``unread_mentions`` row, deleted when that member's read
receipt covers the message, so ``mention_count`` (unread mentions of me in
a chat) is a range of that table's key.  A message writes at most one row
per mention (a bounded few), never one per member.
"""

from __future__ import annotations

from typing import Sequence

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.storage.database import Database, Txn, in_clause, values_rows

__all__ = [
    "MentionStore",
    "check_mentions",
    "unread_mentions_statements",
    "mark_mentions_read_txn",
    "mention_count_txn",
    "mention_counts_txn",
    "outsider_error",
    "parse_mentions",
]

#: A user's unread mentions, in the chats the user is in now, of live messages.
_UNREAD = (
    " FROM unread_mentions um"
    " JOIN user_chats uc ON uc.user_id = um.user_id AND uc.chat_id = um.chat_id"
    " JOIN messages m ON m.seq = um.message_seq"
    " WHERE um.user_id = ? AND um.message_seq > uc.joined_seq AND m.deleted_at IS NULL"
)


def check_mentions(mentions: Sequence[int], members: Sequence[int]) -> list[int]:
    """The mentioned ids, sorted and distinct; RefusedError unless each is a member of the chat."""
    mentioned = sorted(set(mentions))
    outsiders = set(mentioned) - set(members)
    if outsiders:
        raise outsider_error(min(outsiders))
    return mentioned


def outsider_error(user_id: int) -> RefusedError:
    """The refusal of a message mentioning ``user_id``, who is not a member of its chat."""
    return RefusedError(f"Invalid 'mentions': user {user_id} is not a member of this chat", code="invalid_argument")


def mentions_text(mentioned: Sequence[int]) -> str | None:
    """The ``messages.mentions`` column: ``"3,7"``, or NULL for none."""
    return ",".join(map(str, mentioned)) if mentioned else None


def parse_mentions(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",")) if text else ()


def unread_mentions_statements(
    message_seq: int, chat_id: int, sender_id: int, mentioned: Sequence[int]
) -> list[tuple[str, Sequence[object]]]:
    """The one INSERT (psycopg2's executemany is a round trip per row) for `Txn.execute_each`; none for self only."""
    others = [user_id for user_id in mentioned if user_id != sender_id]
    if not others:
        return []
    return [
        (
            "INSERT INTO unread_mentions (user_id, chat_id, message_seq) VALUES " + values_rows(len(others), 3),
            [v for user_id in others for v in (user_id, chat_id, message_seq)],
        )
    ]


def mark_mentions_read_txn(txn: Txn, reader_id: int, seqs: Sequence[int]) -> None:
    """The reader read these messages: their mentions of the reader no longer count."""
    if seqs:
        txn.execute(
            "DELETE FROM unread_mentions WHERE user_id = ? AND message_seq IN " + in_clause(seqs),
            [reader_id, *seqs],
        )


def mention_count_txn(txn: Txn, user_id: int, internal_chat_id: int) -> int:
    """Unread mentions of ``user_id`` in one chat, by its internal id (``chats.id``)."""
    return int(txn.scalar("SELECT COUNT(*)" + _UNREAD + " AND uc.chat_id = ?", (user_id, internal_chat_id)) or 0)


def mention_counts_txn(txn: Txn, user_id: int) -> dict[tuple[int, bool], int]:
    """Unread mentions of ``user_id`` per chat, keyed ``(chat id as the user calls it, is_group)``."""
    rows = txn.execute(
        "SELECT uc.chat_id, uc.is_group, uc.peer_id, COUNT(*) AS mentions"
        + _UNREAD
        + " GROUP BY uc.chat_id, uc.is_group, uc.peer_id",
        (user_id,),
    ).fetchall()
    counts = {}
    for r in rows:
        is_group = bool(r["is_group"])
        counts[(int(r["chat_id"]) if is_group else int(r["peer_id"]), is_group)] = int(r["mentions"])
    return counts


class MentionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def count(self, user_id: int, chat_id: int, is_group: bool) -> defer.Deferred[int]:
        """Unread mentions of ``user_id`` in one chat (``chat_id`` as the user calls it)."""

        def txn_fn(txn: Txn) -> int:
            where = " AND uc.chat_id = ? AND uc.is_group = 1" if is_group else " AND uc.peer_id = ?"
            return int(txn.scalar("SELECT COUNT(*)" + _UNREAD + where, (user_id, chat_id)) or 0)

        return self._db.read("mentions.count", txn_fn)
