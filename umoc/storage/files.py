"""Shared files: the upload's life from prepare to message, and the purge of abandoned ones.

Every step that must happen once (spending the upload token, marking the
bytes whole, posting the message) is a conditional UPDATE whose row count
says whether this caller won, so two racing requests, even on two nodes,
cannot both succeed.
"""

from __future__ import annotations

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.records.files import FileOffer, FileRecord
from umoc.storage.database import Database, Row, Txn, in_clause

__all__ = ["FileRecord", "FileStore", "check_avatar_txn"]


def check_avatar_txn(txn: Txn, user_id: int, file_id: str, image_types: tuple[str, ...], now: float) -> None:
    """Refuse ``file_id`` as a picture set by ``user_id`` (a profile's or a group's avatar) unless it is their
    own upload, arrived whole, of one of ``image_types``; then keep it (completed files are never purged)."""
    row = txn.execute(
        "SELECT uploader_id, file_type, uploaded_at FROM files WHERE id = ?" + txn.dialect.for_update, (file_id,)
    ).fetchone()
    if row is None or int(row["uploader_id"]) != user_id:
        raise RefusedError("Invalid 'avatar_file_id': unknown file", code="invalid_argument")
    if row["uploaded_at"] is None:
        raise RefusedError("Invalid 'avatar_file_id': the file has not arrived whole yet", code="invalid_argument")
    if row["file_type"] not in image_types:
        raise RefusedError("Invalid 'avatar_file_id': an avatar must be an image", code="invalid_argument")
    txn.execute("UPDATE files SET completed_at = ? WHERE id = ? AND completed_at IS NULL", (now, file_id))


_COLUMNS = (
    "id, uploader_id, chat_id, is_group, file_name, file_type, file_size, token_hash,"
    " created_at, expires_at, token_used_at, uploaded_at, completed_at"
)


def _record(row: Row) -> FileRecord:
    return FileRecord(
        id=row["id"],
        uploader_id=int(row["uploader_id"]),
        chat_id=int(row["chat_id"]),
        is_group=bool(row["is_group"]),
        file_name=row["file_name"],
        file_type=row["file_type"],
        file_size=int(row["file_size"]),
        token_hash=row["token_hash"],
        created_at=float(row["created_at"]),
        expires_at=float(row["expires_at"]),
        token_used_at=row["token_used_at"],
        uploaded_at=row["uploaded_at"],
        completed_at=row["completed_at"],
    )


def _purge_txn(txn: Txn, before: float, limit: int) -> list[str]:
    rows = txn.execute(
        "SELECT id FROM files WHERE completed_at IS NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        (before, limit),
    ).fetchall()
    ids = [row["id"] for row in rows]
    if ids:
        txn.execute("DELETE FROM files WHERE completed_at IS NULL AND id IN " + in_clause(ids), ids)
    return ids


class FileStore:
    """Queries about shared files; the bytes themselves are the web layer's business."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self, file_id: str, uploader_id: int, offer: FileOffer, token_hash: str, now: float, expires_at: float
    ) -> defer.Deferred[None]:
        """Record a prepared upload (``offer`` checked, its name and type normalised); only the token's hash is kept."""
        row = (file_id, uploader_id, offer.chat_id, offer.is_group, offer.file_name, offer.file_type, offer.file_size)

        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "INSERT INTO files (id, uploader_id, chat_id, is_group, file_name, file_type, file_size,"
                " token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, token_hash, now, expires_at),
            )

        return self._db.run("files.create", txn_fn)

    def get(self, file_id: str) -> defer.Deferred[FileRecord | None]:
        def txn_fn(txn: Txn) -> FileRecord | None:
            row = txn.execute(f"SELECT {_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone()
            return None if row is None else _record(row)

        return self._db.read("files.get", txn_fn)

    def spend_token(self, file_id: str, now: float) -> defer.Deferred[bool]:
        """Mark the upload token used; False if it was used already or has expired (it is single-use)."""

        def txn_fn(txn: Txn) -> bool:
            return (
                txn.execute(
                    "UPDATE files SET token_used_at = ? WHERE id = ? AND token_used_at IS NULL AND expires_at > ?",
                    (now, file_id, now),
                ).rowcount
                == 1
            )

        return self._db.run("files.spend_token", txn_fn)

    def mark_uploaded(self, file_id: str, now: float) -> defer.Deferred[bool]:
        """Every declared byte is in place; False if the row is gone (purged meanwhile)."""

        def txn_fn(txn: Txn) -> bool:
            return (
                txn.execute(
                    "UPDATE files SET uploaded_at = ? WHERE id = ? AND uploaded_at IS NULL", (now, file_id)
                ).rowcount
                == 1
            )

        return self._db.run("files.mark_uploaded", txn_fn)

    def claim_completion(self, file_id: str, uploader_id: int, now: float) -> defer.Deferred[bool]:
        """Take the one right to post this file's message; False if not whole or already taken."""

        def txn_fn(txn: Txn) -> bool:
            return (
                txn.execute(
                    "UPDATE files SET completed_at = ? WHERE id = ? AND uploader_id = ?"
                    " AND uploaded_at IS NOT NULL AND completed_at IS NULL",
                    (now, file_id, uploader_id),
                ).rowcount
                == 1
            )

        return self._db.run("files.claim_completion", txn_fn)

    def release_completion(self, file_id: str) -> defer.Deferred[None]:
        """Posting the message failed: let the uploader try upload_file_complete again."""

        def txn_fn(txn: Txn) -> None:
            txn.execute("UPDATE files SET completed_at = NULL WHERE id = ? AND message_id IS NULL", (file_id,))

        return self._db.run("files.release_completion", txn_fn)

    def set_message(self, file_id: str, message_id: str) -> defer.Deferred[None]:
        """Remember which message shared the file."""

        def txn_fn(txn: Txn) -> None:
            txn.execute("UPDATE files SET message_id = ? WHERE id = ?", (message_id, file_id))

        return self._db.run("files.set_message", txn_fn)

    def purge_expired(self, before: float, limit: int = 500) -> defer.Deferred[list[str]]:
        """Delete up to ``limit`` never-completed uploads that expired at or before ``before``; their ids."""
        return self._db.run("files.purge_expired", _purge_txn, before, limit)
