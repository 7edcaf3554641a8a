"""Pinned messages: at most ``max_pins`` live ones per chat, shown newest pin first.

One ``message_pins`` row per pinned message and one feed row (``pin``) per
change, whatever the chat's size.  Pinning what is pinned and unpinning
what is not change nothing (both are safe to repeat).  The message row is
locked first (PostgreSQL), as for reactions; the bound on a chat's pins is
checked in the same transaction, so two racing pins in one chat may pass it
together only by one (each saw the other uncommitted): a soft bound, kept
cheap rather than locking the chat.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from umoc.errors import UNKNOWN_CHAT, RefusedError
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Txn
from umoc.storage.messages import MESSAGE_COLUMNS, Message, annotate_txn, message_from_row
from umoc.storage.messages.read import chat_ref_txn
from umoc.storage.targets import Target, require_writable_txn, target_txn

__all__ = ["PinChange", "PinStore"]


@dataclass(frozen=True, slots=True)
class PinChange:
    target: Target
    pinned: bool
    #: False when the pin or unpin found things already so.
    changed: bool


def _live_pins_txn(txn: Txn, chat_id: int) -> int:
    return int(
        txn.scalar(
            "SELECT COUNT(*) FROM message_pins p JOIN messages m ON m.seq = p.message_seq"
            " WHERE p.chat_id = ? AND m.deleted_at IS NULL",
            (chat_id,),
        )
    )


def _pin_txn(txn: Txn, user_id: int, message_id: str, pin: bool, now: float, max_pins: int) -> PinChange:
    target = target_txn(txn, user_id, message_id, lock=True)
    require_writable_txn(txn, user_id, target, "pin messages", "pin", now)
    if pin:
        changed = txn.scalar("SELECT 1 FROM message_pins WHERE message_seq = ?", (target.seq,)) is None
        if changed:
            if _live_pins_txn(txn, target.chat_id) >= max_pins:
                raise RefusedError(
                    f"Too many pinned messages: at most {max_pins} per chat (unpin one first)", code="conflict"
                )
            txn.execute(
                "INSERT INTO message_pins (message_seq, chat_id, pinned_by, pinned_at) VALUES (?, ?, ?, ?)",
                (target.seq, target.chat_id, user_id, now),
            )
    else:
        changed = txn.execute("DELETE FROM message_pins WHERE message_seq = ?", (target.seq,)).rowcount > 0
    if changed:
        record_txn(
            txn,
            NewChange(
                "pin", now, chat_id=target.chat_id, message_seq=target.seq, actor_id=user_id, data={"pinned": pin}
            ),
        )
    return PinChange(target, pin, changed)


def _pinned_txn(txn: Txn, user_id: int, chat_id: int, is_group: bool, limit: int) -> list[Message]:
    ref = chat_ref_txn(txn, user_id, chat_id, is_group)
    if ref is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    rows = txn.execute(
        "SELECT " + MESSAGE_COLUMNS + " FROM message_pins p JOIN messages m ON m.seq = p.message_seq"
        " JOIN users su ON su.id = m.sender_id WHERE p.chat_id = ? AND m.deleted_at IS NULL"
        " ORDER BY p.pinned_at DESC, p.message_seq DESC LIMIT ?",
        (ref[0], limit),
    ).fetchall()
    return annotate_txn(txn, [message_from_row(r) for r in rows], user_id)


class PinStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def pin(self, user_id: int, message_id: str, now: float, max_pins: int) -> defer.Deferred[PinChange]:
        """Pin a message of a chat the user may write to. Raises `RefusedError` (also past ``max_pins``)."""
        return self._db.write("pins.pin", user_id, _pin_txn, user_id, message_id, True, now, max_pins)

    def unpin(self, user_id: int, message_id: str, now: float) -> defer.Deferred[PinChange]:
        """Unpin a message of a chat the user may write to. Raises `RefusedError`."""
        return self._db.write("pins.unpin", user_id, _pin_txn, user_id, message_id, False, now, 0)

    def pinned(self, user_id: int, chat_id: int, is_group: bool, limit: int) -> defer.Deferred[list[Message]]:
        """The live pinned messages of a chat the user is in, newest pin first. Raises `RefusedError` otherwise."""
        return self._db.read("pins.pinned", _pinned_txn, user_id, chat_id, is_group, limit)
