"""Read receipts: a reader marks messages read, counted for the unread badge and told to the sender's feed.

Beside ``umoc.storage.deliveries`` (the other receipt, "it reached my
client"); one write each, through the group commit as ``messages.read``.

A read also moves the reader's own state of each chat it touches
(`ReadState`: what every device of the reader shows as the badge), which
is recorded in the reader's own stream as a ``chat_read`` change.
"""

from __future__ import annotations

from dataclasses import dataclass

from umoc.errors import RefusedError
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Txn, in_clause
from umoc.storage.mentions import mark_mentions_read_txn, mention_count_txn
from umoc.storage.relations import BLOCKED
from umoc.storage.threadrows import UNREAD_COUNT

__all__ = ["Read", "ReadState", "read_state_txn", "read_txn", "record_read_state_txn"]


@dataclass(frozen=True, slots=True)
class ReadState:
    """One user's read state of one chat, as all their devices show it (``chat_read``)."""

    #: The chat as the user calls it: the group, or the other user of a direct chat.
    chat_id: int
    is_group: bool
    #: The newest live message of the chat from someone else that the user has read (and not marked unread).
    last_read_message_id: str | None
    unread_count: int
    mention_count: int

    def fields(self) -> dict[str, object]:
        return {
            "chat_id": self.chat_id,
            "is_group": self.is_group,
            "last_read_message_id": self.last_read_message_id,
            "unread_count": self.unread_count,
            "mention_count": self.mention_count,
        }


@dataclass(frozen=True, slots=True)
class Read:
    """What a read receipt did: the ids read (without repeats), and the reader's state of each chat touched."""

    message_ids: list[str]
    chats: list[ReadState]


def read_state_txn(txn: Txn, user_id: int, internal_chat_id: int) -> ReadState:
    """The user's state of a chat they are in: the unread count as ``get_chats`` computes it (followed threads too)."""
    row = txn.execute(
        "SELECT c.is_group, uc.peer_id, " + UNREAD_COUNT + " AS unread"
        " FROM user_chats uc JOIN chats c ON c.id = uc.chat_id WHERE uc.user_id = ? AND uc.chat_id = ?",
        (user_id, internal_chat_id),
    ).fetchone()
    assert row is not None, "the caller checked the membership in this transaction"
    # Walks back from the newest message (the live messages' index) to the first one read.
    last = txn.scalar(
        "SELECT m.id FROM messages m WHERE m.chat_id = ? AND m.deleted_at IS NULL AND EXISTS ("
        "SELECT 1 FROM message_reads r WHERE r.message_seq = m.seq AND r.user_id = ? AND r.marked_unread = 0)"
        " ORDER BY m.seq DESC LIMIT 1",
        (internal_chat_id, user_id),
    )
    is_group = bool(row["is_group"])
    return ReadState(
        internal_chat_id if is_group else int(row["peer_id"]),
        is_group,
        last,
        int(row["unread"]),
        mention_count_txn(txn, user_id, internal_chat_id),
    )


def record_read_state_txn(txn: Txn, user_id: int, state: ReadState, now: float) -> None:
    """The ``chat_read`` change, in the user's own stream only (their devices' ``sync``)."""
    record_txn(txn, NewChange("chat_read", now, user_id=user_id, data=state.fields()))


def _record_read_txn(txn: Txn, reader_id: int, sender_id: int, message_ids: list[str], now: float) -> None:
    """The ``read`` change in the sender's own stream, unless a block stands between the two (as live)."""
    change = NewChange("read", now, user_id=sender_id, actor_id=reader_id, data={"message_ids": message_ids})
    txn.execute(
        "INSERT INTO changes (chat_id, user_id, profile_id, kind, message_seq, actor_id, data, created_at)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM contacts WHERE status = ?"
        " AND ((owner_id = ? AND contact_id = ?) OR (owner_id = ? AND contact_id = ?)))",
        (*change.params(), BLOCKED, reader_id, sender_id, sender_id, reader_id),
    )


def read_txn(txn: Txn, reader_id: int, sender_id: int, message_ids: list[str], now: float) -> Read:
    message_ids = list(dict.fromkeys(message_ids))
    rows = txn.execute(
        "SELECT m.seq, m.id, m.chat_id, m.sender_id, m.is_group, m.recipient_id, m.deleted_at, uc.joined_seq,"
        " m.thread_root_seq, m.also_in_chat"
        " FROM messages m LEFT JOIN user_chats uc ON uc.chat_id = m.chat_id AND uc.user_id = ?"
        " WHERE m.id IN " + in_clause(message_ids),
        [reader_id, *message_ids],
    ).fetchall()
    if len(rows) != len(message_ids):
        raise RefusedError("Message not found", code="not_found")
    for row in rows:
        addressed = row["joined_seq"] is not None and (bool(row["is_group"]) or int(row["recipient_id"]) == reader_id)
        if int(row["sender_id"]) != sender_id or sender_id == reader_id or not addressed:
            # Not from that sender, or not addressed to the reader: the same answer as missing.
            raise RefusedError("Message not found", code="not_found")
    live = [r for r in rows if r["deleted_at"] is None]
    seqs = [int(r["seq"]) for r in live]
    mark_mentions_read_txn(txn, reader_id, seqs)
    _record_read_txn(txn, reader_id, sender_id, message_ids, now)
    if seqs:
        # A read the reader marked unread since (mark_unread) counts again; its first time stays.
        known = {
            int(r["message_seq"]): bool(r["marked_unread"])
            for r in txn.execute(
                "SELECT message_seq, marked_unread FROM message_reads WHERE user_id = ? AND message_seq IN "
                + in_clause(seqs),
                [reader_id, *seqs],
            ).fetchall()
        }
        fresh = [r for r in live if int(r["seq"]) not in known]
        again = [r for r in live if known.get(int(r["seq"]))]
        if fresh:
            txn.executemany(
                "INSERT INTO message_reads (message_seq, user_id, read_at) VALUES (?, ?, ?)",
                [(int(r["seq"]), reader_id, now) for r in fresh],
            )
        if again:
            again_seqs = [int(r["seq"]) for r in again]
            txn.execute(
                "UPDATE message_reads SET marked_unread = 0 WHERE user_id = ? AND message_seq IN "
                + in_clause(again_seqs),
                [reader_id, *again_seqs],
            )
        counted: dict[int, int] = {}
        for r in fresh + again:
            # A thread reply only in its thread is in none of the chat's counters (migration 024).
            in_chat = r["thread_root_seq"] is None or bool(r["also_in_chat"])
            if in_chat and int(r["seq"]) > int(r["joined_seq"]):
                counted[int(r["chat_id"])] = counted.get(int(r["chat_id"]), 0) + 1
        for chat_id, n in sorted(counted.items()):
            txn.execute(
                "UPDATE user_chats SET read_count = read_count + ? WHERE user_id = ? AND chat_id = ?",
                (n, reader_id, chat_id),
            )
    chats = []
    for chat_id in sorted({int(r["chat_id"]) for r in rows}):
        state = read_state_txn(txn, reader_id, chat_id)
        record_read_state_txn(txn, reader_id, state, now)
        chats.append(state)
    return Read(message_ids, chats)
