"""The audit log (migration 023): append an entry, list them newest first.

`write_audit_txn` runs inside the transaction of the action it records
(`umoc.storage.admin` takes an entry for that); `AuditStore.record` is for
actions made of several transactions or done in another store, written
right after the action.
"""

from __future__ import annotations

import json

from twisted.internet import defer

from umoc.records.audit import AuditEntry, AuditQuery, AuditRow
from umoc.storage.database import Database, Row, Txn, newest_first_txn

__all__ = ["AuditStore", "write_audit_txn"]

_COLUMNS = "id, created_at, actor_id, actor_name, via, address, action, target_type, target_id, chat_id, details"


def write_audit_txn(txn: Txn, entry: AuditEntry | None, now: float) -> None:
    """Append ``entry`` (nothing when None: a caller that records no action, e.g. a test's setup)."""
    if entry is None:
        return
    actor = entry.actor
    txn.execute(
        "INSERT INTO audit_log (created_at, actor_id, actor_name, via, address, action, target_type, target_id,"
        " chat_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now,
            actor.user_id,
            actor.name,
            actor.via,
            actor.address,
            entry.action,
            entry.target_type,
            entry.target_id,
            entry.chat_id,
            entry.details_json(),
        ),
    )


def _row(row: Row) -> AuditRow:
    return AuditRow(
        int(row["id"]),
        float(row["created_at"]),
        None if row["actor_id"] is None else int(row["actor_id"]),
        row["actor_name"],
        row["via"],
        row["address"],
        row["action"],
        row["target_type"],
        row["target_id"],
        None if row["chat_id"] is None else int(row["chat_id"]),
        None if row["details"] is None else json.loads(row["details"]),
    )


def _list_txn(txn: Txn, query: AuditQuery) -> list[AuditRow]:
    given = (
        ("id < ?", query.before_id),
        ("LOWER(actor_name) = LOWER(?)", query.actor),
        ("action = ?", query.action),
        ("created_at >= ?", query.since),
        ("created_at < ?", query.until),
    )
    conditions = [(clause, value) for clause, value in given if value is not None]
    return [_row(r) for r in newest_first_txn(txn, "audit_log", _COLUMNS, conditions, query.limit + 1)]


class AuditStore:
    """Append-only: nothing in UMOC updates or deletes an entry."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, entry: AuditEntry, now: float) -> defer.Deferred[None]:
        return self._db.run("audit.record", write_audit_txn, entry, now)

    def list(self, query: AuditQuery) -> defer.Deferred[list[AuditRow]]:
        """Up to ``query.limit + 1`` entries, newest first (the extra one says there are more)."""
        return self._db.read("audit.list", _list_txn, query)
