"""Mentions: the members a message names, and each member's unread mentions per chat.

A message writes one row per mentioned user (a bounded few, never one per
member).  ``read_at`` is set when the mentioned user's read receipt covers
the message, so ``mention_count`` (unread mentions of me in a chat) is an
index range over ``message_mentions_unread``.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.storage.database import Database, Txn, in_clause

__all__ = [
    "MentionStore",
    "insert_mentions_txn",
    "mark_mentions_read_txn",
    "mention_counts_txn",
    "mentions_for_txn",
]

#: A user's unread mentions, in the chats the user is in now.
_UNREAD = (
    " FROM message_mentions mm"
    " JOIN user_chats uc ON uc.user_id = mm.user_id AND uc.chat_id = mm.chat_id"
    " JOIN messages m ON m.seq = mm.message_seq"
    " WHERE mm.user_id = ? AND mm.read_at IS NULL AND mm.message_seq > uc.joined_seq AND m.deleted_at IS NULL"
)


def insert_mentions_txn(
    txn: Txn, message_seq: int, chat_id: int, sender_id: int, mentions: Sequence[int], members: Sequence[int],
    now: float,
) -> list[int]:
    """Record who ``message_seq`` mentions; RefusedError unless each is a member of the chat.

    Returns the mentioned ids, sorted (the order history shows them in).  A
    sender's mention of themselves is stored as read: one's own messages are
    never unread.
    """
    mentioned = sorted(set(mentions))
    outsiders = set(mentioned) - set(members)
    if outsiders:
        raise RefusedError(f"Invalid 'mentions': user {min(outsiders)} is not a member of this chat")
    txn.executemany(
        "INSERT INTO message_mentions (message_seq, user_id, chat_id, read_at) VALUES (?, ?, ?, ?)",
        [(message_seq, user_id, chat_id, now if user_id == sender_id else None) for user_id in mentioned],
    )
    return mentioned


def mentions_for_txn(txn: Txn, seqs: Iterable[int]) -> dict[int, list[int]]:
    """Who each message mentions, by ``seq`` (only messages with mentions appear): one query."""
    seqs = sorted(set(seqs))
    if not seqs:
        return {}
    found: dict[int, list[int]] = {}
    for r in txn.execute(
        "SELECT message_seq, user_id FROM message_mentions WHERE message_seq IN " + in_clause(seqs)
        + " ORDER BY message_seq, user_id",
        seqs,
    ).fetchall():
        found.setdefault(int(r["message_seq"]), []).append(int(r["user_id"]))
    return found


def mark_mentions_read_txn(txn: Txn, reader_id: int, seqs: Sequence[int], now: float) -> None:
    """The reader read these messages: their mentions of the reader no longer count."""
    if seqs:
        txn.execute(
            "UPDATE message_mentions SET read_at = ? WHERE user_id = ? AND read_at IS NULL AND message_seq IN "
            + in_clause(seqs),
            [now, reader_id, *seqs],
        )


def mention_counts_txn(txn: Txn, user_id: int) -> dict[tuple[int, bool], int]:
    """Unread mentions of ``user_id`` per chat, keyed ``(chat id as the user calls it, is_group)``."""
    rows = txn.execute(
        "SELECT uc.chat_id, uc.is_group, uc.peer_id, COUNT(*) AS mentions" + _UNREAD
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

        return self._db.run("mentions.count", txn_fn)
