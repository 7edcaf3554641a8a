"""Read receipts: a reader marks messages read, counted for the unread badge and told to the sender's feed.

Beside ``umoc.storage.deliveries`` (the other receipt, "it reached my
client"); one write each, through the group commit as ``messages.read``.
"""

from __future__ import annotations

from umoc.errors import RefusedError
from umoc.storage.changes import NewChange
from umoc.storage.database import Txn, in_clause
from umoc.storage.mentions import mark_mentions_read_txn
from umoc.storage.relations import BLOCKED

__all__ = ["read_txn"]


def _record_read_txn(txn: Txn, reader_id: int, sender_id: int, message_ids: list[str], now: float) -> None:
    """The ``read`` change in the sender's own stream, unless a block stands between the two (as live)."""
    change = NewChange("read", now, user_id=sender_id, actor_id=reader_id, data={"message_ids": message_ids})
    txn.execute(
        "INSERT INTO changes (chat_id, user_id, profile_id, kind, message_seq, actor_id, data, created_at)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM contacts WHERE status = ?"
        " AND ((owner_id = ? AND contact_id = ?) OR (owner_id = ? AND contact_id = ?)))",
        (*change.params(), BLOCKED, reader_id, sender_id, sender_id, reader_id),
    )


def read_txn(txn: Txn, reader_id: int, sender_id: int, message_ids: list[str], now: float) -> list[str]:
    message_ids = list(dict.fromkeys(message_ids))
    rows = txn.execute(
        "SELECT m.seq, m.id, m.chat_id, m.sender_id, m.is_group, m.recipient_id, m.deleted_at, uc.joined_seq"
        " FROM messages m LEFT JOIN user_chats uc ON uc.chat_id = m.chat_id AND uc.user_id = ?"
        " WHERE m.id IN " + in_clause(message_ids),
        [reader_id, *message_ids],
    ).fetchall()
    if len(rows) != len(message_ids):
        raise RefusedError("Message not found")
    for row in rows:
        addressed = row["joined_seq"] is not None and (bool(row["is_group"]) or int(row["recipient_id"]) == reader_id)
        if int(row["sender_id"]) != sender_id or sender_id == reader_id or not addressed:
            # Not from that sender, or not addressed to the reader: the same answer as missing.
            raise RefusedError("Message not found")
    live = [r for r in rows if r["deleted_at"] is None]
    seqs = [int(r["seq"]) for r in live]
    mark_mentions_read_txn(txn, reader_id, seqs)
    _record_read_txn(txn, reader_id, sender_id, message_ids, now)
    if seqs:
        already = {
            int(r["message_seq"])
            for r in txn.execute(
                "SELECT message_seq FROM message_reads WHERE user_id = ? AND message_seq IN " + in_clause(seqs),
                [reader_id, *seqs],
            ).fetchall()
        }
        fresh = [r for r in live if int(r["seq"]) not in already]
        if fresh:
            txn.executemany(
                "INSERT INTO message_reads (message_seq, user_id, read_at) VALUES (?, ?, ?)",
                [(int(r["seq"]), reader_id, now) for r in fresh],
            )
            counted: dict[int, int] = {}
            for r in fresh:
                if int(r["seq"]) > int(r["joined_seq"]):
                    counted[int(r["chat_id"])] = counted.get(int(r["chat_id"]), 0) + 1
            for chat_id, n in sorted(counted.items()):
                txn.execute(
                    "UPDATE user_chats SET read_count = read_count + ? WHERE user_id = ? AND chat_id = ?",
                    (n, reader_id, chat_id),
                )
    return message_ids
