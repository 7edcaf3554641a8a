"""Rows several stores touch: contact statuses between two users, and direct chats."""

from __future__ import annotations

from umoc.storage.database import Txn

__all__ = ["BLOCKED", "FRIEND", "NEW", "ensure_direct_chat_txn", "reachable", "statuses_txn"]

NEW = "NEW"
FRIEND = "FRIEND"
BLOCKED = "BLOCKED"


def reachable(mine: str | None, theirs: str | None, require_friendship: bool = True) -> bool:
    """Whether two users whose rows say ``mine`` and ``theirs`` may message (or add) each other.

    ``require_friendship`` (``contacts.require_friendship``): both rows FRIEND.
    Without it (app-style chat) anyone but a user a block separates them from.
    """
    if require_friendship:
        return mine == FRIEND and theirs == FRIEND
    return mine != BLOCKED and theirs != BLOCKED


def statuses_txn(txn: Txn, a: int, b: int, lock: bool = False) -> tuple[str | None, str | None]:
    """(a's row status for b, b's row status for a); ``lock`` locks both rows in a fixed order."""
    rows = txn.execute(
        "SELECT owner_id, status FROM contacts WHERE (owner_id = ? AND contact_id = ?)"
        " OR (owner_id = ? AND contact_id = ?) ORDER BY owner_id" + (txn.dialect.for_update if lock else ""),
        (a, b, b, a),
    ).fetchall()
    found = {int(r["owner_id"]): r["status"] for r in rows}
    return found.get(a), found.get(b)


def ensure_direct_chat_txn(txn: Txn, a: int, b: int, now: float) -> int:
    """The direct chat between ``a`` and ``b`` (created with both members' rows if new)."""
    lo, hi = min(a, b), max(a, b)
    chat_id = txn.scalar("SELECT id FROM chats WHERE user_lo = ? AND user_hi = ?", (lo, hi))
    if chat_id is not None:
        return int(chat_id)
    chat_id = int(
        txn.scalar(
            "INSERT INTO chats (is_group, user_lo, user_hi, created_at, member_count, last_activity)"
            " VALUES (0, ?, ?, ?, 2, ?) RETURNING id",
            (lo, hi, now, now),
        )
    )
    txn.executemany(
        "INSERT INTO user_chats (user_id, chat_id, peer_id, is_group, joined_at) VALUES (?, ?, ?, 0, ?)",
        [(a, chat_id, b, now), (b, chat_id, a, now)],
    )
    return chat_id
