"""A user's read state of a chat, shared by all their devices, and the receipts of one message.

`ReadStateStore.mark_unread` moves the reader's own state back: a message
and every later one of the chat count unread again for them (their reads are
flagged ``marked_unread``, migration 016), while the receipts stay what the
senders were told: nobody else sees a change.  Its ``chat_read`` change is
in the user's own stream, as a read's is (``umoc.storage.receipts``).

`ReadStateStore.receipts` lists who reported one of the sender's messages
delivered and who read it, each with their first time.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.records.messages import MarkUnread
from umoc.storage.database import Database, Txn, values_rows
from umoc.storage.mentions import parse_mentions
from umoc.storage.messages import UNKNOWN_CHAT
from umoc.storage.receipts import ReadState, read_state_txn, record_read_state_txn
from umoc.storage.relations import BLOCKED
from umoc.storage.targets import MESSAGE_NOT_FOUND

__all__ = ["ReadStateStore", "Receipts"]


@dataclass(frozen=True, slots=True)
class Receipts:
    """One message's receipts: ``(user_id, epoch seconds)`` pairs, earliest first."""

    message_id: str
    read_by: list[tuple[int, float]]
    delivered_to: list[tuple[int, float]]


def _unread_txn(txn: Txn, user_id: int, mark: MarkUnread, now: float) -> ReadState:
    where = "uc.chat_id = ? AND uc.is_group = 1" if mark.is_group else "uc.peer_id = ? AND uc.is_group = 0"
    chat = txn.execute(
        "SELECT uc.chat_id, uc.joined_seq FROM user_chats uc JOIN chats c ON c.id = uc.chat_id"
        " WHERE uc.user_id = ? AND " + where + " AND c.closed_at IS NULL",
        (user_id, mark.chat_id),
    ).fetchone()
    if chat is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    chat_id, joined_seq = int(chat["chat_id"]), int(chat["joined_seq"])
    # The lock a deletion takes first (a group's row; a direct chat's member rows), so a message deleted
    # meanwhile leaves each member's read_count exactly once: before this reads it, or after this committed.
    if mark.is_group:
        txn.execute("SELECT id FROM chats WHERE id = ?" + txn.dialect.for_update, (chat_id,))
    else:
        txn.execute(
            "SELECT user_id FROM user_chats WHERE chat_id = ? ORDER BY user_id" + txn.dialect.for_update, (chat_id,)
        )
    seq = txn.scalar(
        "SELECT seq FROM messages WHERE id = ? AND chat_id = ? AND deleted_at IS NULL", (mark.from_message_id, chat_id)
    )
    if seq is None:
        raise RefusedError(MESSAGE_NOT_FOUND, code="not_found")
    # Reads of live messages since the user joined are what read_count counts (migration 007).
    counted = int(
        txn.scalar(
            "SELECT COUNT(*) FROM message_reads r JOIN messages m ON m.seq = r.message_seq"
            " WHERE r.user_id = ? AND r.marked_unread = 0 AND m.chat_id = ? AND m.seq >= ? AND m.seq > ?"
            " AND m.deleted_at IS NULL AND (m.thread_root_seq IS NULL OR m.also_in_chat = 1)",
            (user_id, chat_id, seq, joined_seq),
        )
    )
    txn.execute(
        "UPDATE message_reads SET marked_unread = 1 WHERE user_id = ? AND marked_unread = 0 AND message_seq IN"
        " (SELECT seq FROM messages WHERE chat_id = ? AND seq >= ? AND deleted_at IS NULL"
        " AND (thread_root_seq IS NULL OR also_in_chat = 1))",
        (user_id, chat_id, seq),
    )
    if counted:
        txn.execute(
            "UPDATE user_chats SET read_count = read_count - ? WHERE user_id = ? AND chat_id = ?",
            (counted, user_id, chat_id),
        )
    # Their mentions of the user count again, as until the first read.
    mentioned = [
        int(r["seq"])
        for r in txn.execute(
            "SELECT seq, mentions FROM messages WHERE chat_id = ? AND seq >= ? AND deleted_at IS NULL"
            " AND sender_id <> ? AND mentions IS NOT NULL",
            (chat_id, seq, user_id),
        ).fetchall()
        if user_id in parse_mentions(r["mentions"])
    ]
    if mentioned:
        txn.execute(
            "INSERT INTO unread_mentions (user_id, chat_id, message_seq) VALUES "
            + values_rows(len(mentioned), 3)
            + " ON CONFLICT (user_id, chat_id, message_seq) DO NOTHING",
            [v for m in mentioned for v in (user_id, chat_id, m)],
        )
    state = read_state_txn(txn, user_id, chat_id)
    record_read_state_txn(txn, user_id, state, now)
    return state


def _receipts_txn(txn: Txn, sender_id: int, message_id: str) -> Receipts:
    row = txn.execute(
        "SELECT seq, sender_id FROM messages WHERE id = ? AND deleted_at IS NULL", (message_id,)
    ).fetchone()
    if row is None or int(row["sender_id"]) != sender_id:
        # Another's message looks exactly like a missing one.
        raise RefusedError(MESSAGE_NOT_FOUND, code="not_found")
    seq = int(row["seq"])
    # As history's read flag: a read made after a block between the two is not shown (nor was it told).
    read_by = txn.execute(
        "SELECT r.user_id, r.read_at FROM message_reads r WHERE r.message_seq = ? AND NOT EXISTS ("
        "SELECT 1 FROM contacts b WHERE b.status = ? AND b.updated_at <= r.read_at"
        " AND ((b.owner_id = ? AND b.contact_id = r.user_id) OR (b.owner_id = r.user_id AND b.contact_id = ?)))"
        " ORDER BY r.read_at, r.user_id",
        (seq, BLOCKED, sender_id, sender_id),
    ).fetchall()
    delivered = txn.execute(
        "SELECT user_id, delivered_at FROM message_deliveries WHERE message_seq = ? ORDER BY delivered_at, user_id",
        (seq,),
    ).fetchall()
    return Receipts(
        message_id,
        [(int(r["user_id"]), float(r["read_at"])) for r in read_by],
        [(int(r["user_id"]), float(r["delivered_at"])) for r in delivered],
    )


class ReadStateStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def mark_unread(self, user_id: int, mark: MarkUnread, now: float) -> defer.Deferred[ReadState]:
        """``mark.from_message_id`` and every later message of the chat unread again for ``user_id``; their state.

        Raises `RefusedError` when the user is not in the chat or the message is not a live one of it.
        """
        return self._db.write("messages.unread", user_id, _unread_txn, user_id, mark, now)

    def receipts(self, sender_id: int, message_id: str) -> defer.Deferred[Receipts]:
        """Who got and who read ``message_id``; `RefusedError` unless it is a live message of ``sender_id``."""
        return self._db.read("messages.receipts", _receipts_txn, sender_id, message_id)
