"""Message edits: the sender replaces a text message's content within the edit window.

The content changes in place (every list and page reads the new one) and the
content it replaced is kept in ``message_edits``, so no version is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.records import messages as records
from umoc.storage.changes import NewChange, with_change
from umoc.storage.database import Database, Txn
from umoc.storage.targets import Target, require_writable_txn, target_txn

__all__ = ["Edit", "EditStore"]


@dataclass(frozen=True, slots=True)
class Edit:
    target: Target
    content: str
    edited_at: float


def _window_text(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"


def _edit_txn(txn: Txn, user_id: int, change: records.Edit, now: float, window: float) -> Edit:
    content = change.content
    target = target_txn(txn, user_id, change.message_id, lock=True)
    if target.sender_id != user_id:
        raise RefusedError("Only the sender may edit a message", code="forbidden")
    if target.type != "text":
        raise RefusedError("Only text messages can be edited", code="forbidden")
    if target.encrypted:
        raise RefusedError("Messages with encrypted_content cannot be edited", code="forbidden")
    if window and now - target.created_at > window:
        raise RefusedError(
            f"Too late to edit: messages can be edited for {_window_text(window)} after sending", code="forbidden"
        )
    require_writable_txn(txn, user_id, target, "edit messages", "send", now)
    txn.execute(
        "INSERT INTO message_edits (message_seq, content, written_at, replaced_at) VALUES (?, ?, ?, ?)",
        (target.seq, target.content, target.edited_at or target.created_at, now),
    )
    with_change(
        txn,
        "UPDATE messages SET content = ?, edited_at = ? WHERE seq = ?",
        (content, now, target.seq),
        NewChange("edit", now, chat_id=target.chat_id, message_seq=target.seq, actor_id=user_id),
    )
    return Edit(target, content, now)


class EditStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def edit(self, user_id: int, change: records.Edit, now: float, window: float) -> defer.Deferred[Edit]:
        """Replace the content of the user's own text message (``window`` seconds after sending; 0: any time)."""
        return self._db.write("messages.edit", user_id, _edit_txn, user_id, change, now, window)

    def versions(self, message_id: str) -> defer.Deferred[list[tuple[str, float, float]]]:
        """Earlier contents of a message, oldest first: ``(content, written_at, replaced_at)``."""

        def txn_fn(txn: Txn) -> list[tuple[str, float, float]]:
            rows = txn.execute(
                "SELECT e.content, e.written_at, e.replaced_at FROM message_edits e JOIN messages m"
                " ON m.seq = e.message_seq WHERE m.id = ? ORDER BY e.id",
                (message_id,),
            ).fetchall()
            return [(r["content"], float(r["written_at"]), float(r["replaced_at"])) for r in rows]

        return self._db.read("messages.versions", txn_fn)
