"""Delivery receipts: a recipient's client says messages reached it.

A direct message keeps the time of its first receipt (``messages.delivered_at``,
shown to its sender in history).  Every recipient's first receipt is also a
``message_deliveries`` row (migration 016), which ``get_read_receipts`` lists
for the sender: one row per member who reported it, as ``message_reads``
holds one per reader.  Group receipts are relayed live to the sender each
time they come.  A user whose ``send_delivery_receipts`` setting is off sends
none, and a block between sender and recipient stops them.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Txn, in_clause, values_rows
from umoc.storage.relations import BLOCKED
from umoc.storage.targets import MESSAGE_NOT_FOUND

__all__ = ["Delivered", "DeliveryStore"]


@dataclass(frozen=True, slots=True)
class Delivered:
    """Messages of one sender in one chat that reached the recipient."""

    sender_id: int
    #: The chat as the sender calls it: the recipient's id, or the group id.
    chat_id: int
    is_group: bool
    message_ids: list[str]


def _delivered_txn(txn: Txn, recipient_id: int, message_ids: list[str], now: float) -> list[Delivered]:
    message_ids = list(dict.fromkeys(message_ids))
    rows = txn.execute(
        "SELECT m.seq, m.id, m.sender_id, m.recipient_id, m.is_group, m.deleted_at, m.delivered_at, uc.user_id"
        " FROM messages m LEFT JOIN user_chats uc ON uc.chat_id = m.chat_id AND uc.user_id = ?"
        " WHERE m.id IN " + in_clause(message_ids),
        [recipient_id, *message_ids],
    ).fetchall()
    if len(rows) != len(message_ids):
        raise RefusedError(MESSAGE_NOT_FOUND, code="not_found")
    for r in rows:
        addressed = bool(r["is_group"]) or int(r["recipient_id"]) == recipient_id
        if r["user_id"] is None or not addressed or int(r["sender_id"]) == recipient_id:
            # Not a message to this user: the same answer as a missing one.
            raise RefusedError(MESSAGE_NOT_FOUND, code="not_found")
    if not txn.scalar("SELECT send_delivery_receipts FROM users WHERE id = ?", (recipient_id,)):
        return []
    senders = sorted({int(r["sender_id"]) for r in rows})
    blocked = {
        int(b["other"])
        for b in txn.execute(
            "SELECT contact_id AS other FROM contacts WHERE owner_id = ? AND status = ? AND contact_id IN "
            + in_clause(senders)
            + " UNION SELECT owner_id FROM contacts WHERE contact_id = ? AND status = ? AND owner_id IN "
            + in_clause(senders),
            [recipient_id, BLOCKED, *senders, recipient_id, BLOCKED, *senders],
        ).fetchall()
    }
    # Deleted messages, blocked senders and direct messages delivered already are left out.
    fresh = [
        r
        for r in rows
        if r["deleted_at"] is None
        and int(r["sender_id"]) not in blocked
        and (bool(r["is_group"]) or r["delivered_at"] is None)
    ]
    direct = [int(r["seq"]) for r in fresh if not r["is_group"]]
    if direct:
        txn.execute(
            "UPDATE messages SET delivered_at = ? WHERE delivered_at IS NULL AND seq IN " + in_clause(direct),
            [now, *direct],
        )
    if fresh:
        txn.execute(
            "INSERT INTO message_deliveries (message_seq, user_id, delivered_at) VALUES "
            + values_rows(len(fresh), 3)
            + " ON CONFLICT (message_seq, user_id) DO NOTHING",
            [v for r in fresh for v in (int(r["seq"]), recipient_id, now)],
        )
    grouped: dict[tuple[int, int, bool], list[str]] = {}
    for r in fresh:
        is_group = bool(r["is_group"])
        key = (int(r["sender_id"]), int(r["recipient_id"]), is_group)
        grouped.setdefault(key, []).append(r["id"])
    order = {message_id: i for i, message_id in enumerate(message_ids)}
    found = [
        Delivered(sender, chat, is_group, sorted(ids, key=order.__getitem__))
        for (sender, chat, is_group), ids in grouped.items()
    ]
    # One change per sender told (in each sender's own stream): O(senders), never O(members).
    record_txn(
        txn,
        *(
            NewChange(
                "delivered",
                now,
                user_id=d.sender_id,
                actor_id=recipient_id,
                data={"chat_id": d.chat_id, "is_group": d.is_group, "message_ids": d.message_ids},
            )
            for d in found
        ),
    )
    return found


class DeliveryStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def mark_delivered(self, recipient_id: int, message_ids: list[str], now: float) -> defer.Deferred[list[Delivered]]:
        """Record receipts for messages to ``recipient_id``; what each sender is to be told.

        Raises `RefusedError` unless every message is addressed to the recipient.
        """
        return self._db.write("messages.delivered", recipient_id, _delivered_txn, recipient_id, message_ids, now)
