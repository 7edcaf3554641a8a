"""Reports (migration 023): file one with its evidence, list them, resolve one.

A report and its feed row (kind ``report``, in no stream: only the outbox
reads it, for the ``report.created`` / ``report.resolved`` webhooks) are
written in one transaction; so are a resolution, its feed row and its
audit entry.  The reported message is copied into the report as it is
then, so deleting or erasing it later leaves the evidence intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from umoc.errors import UNKNOWN_CHAT, RefusedError
from umoc.records.audit import AuditEntry
from umoc.records.reports import NewReport, ReportQuery, ReportResolution, ReportRow
from umoc.storage.audit import write_audit_txn
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Row, Txn, newest_first_txn
from umoc.storage.targets import MESSAGE_NOT_FOUND

__all__ = ["FiledReport", "ReportStore", "moderators_txn"]

_COLUMNS = (
    "id, created_at, reporter_id, target, message_id, user_id, chat_id, is_group, category, reason, evidence,"
    " status, resolved_at, resolved_by, resolution, note"
)


@dataclass(frozen=True, slots=True)
class FiledReport:
    report: ReportRow
    #: Who gets ``report_created``: the moderators of the group it concerns (none for a direct chat or a user).
    moderators: tuple[int, ...]


def moderators_txn(txn: Txn, group_id: int) -> tuple[int, ...]:
    """The moderators of a group, the one place that says who they are: its moderators, admins and owner."""
    rows = txn.execute(
        "SELECT user_id FROM user_chats WHERE chat_id = ? AND role IN ('owner', 'admin', 'moderator')", (group_id,)
    ).fetchall()
    return tuple(int(r["user_id"]) for r in rows)


def _row(row: Row | None) -> ReportRow:
    assert row is not None  # read back in the transaction that wrote it

    def opt_int(name: str) -> int | None:
        return None if row[name] is None else int(row[name])

    return ReportRow(
        int(row["id"]),
        float(row["created_at"]),
        int(row["reporter_id"]),
        row["target"],
        row["message_id"],
        opt_int("user_id"),
        opt_int("chat_id"),
        bool(row["is_group"]),
        row["category"],
        row["reason"],
        None if row["evidence"] is None else json.loads(row["evidence"]),
        row["status"],
        None if row["resolved_at"] is None else float(row["resolved_at"]),
        opt_int("resolved_by"),
        row["resolution"],
        row["note"],
    )


def _evidence_txn(txn: Txn, reporter_id: int, message_id: str) -> tuple[dict[str, Any], int, bool]:
    """The message as the reporter sees it (a live one of a chat they are in): ``(copy, chat_id, is_group)``."""
    row = txn.execute(
        "SELECT m.id, m.sender_id, m.recipient_id, m.is_group, m.type, m.content, m.created_at"
        " FROM messages m JOIN user_chats uc ON uc.chat_id = m.chat_id AND uc.user_id = ?"
        " WHERE m.id = ? AND m.deleted_at IS NULL",
        (reporter_id, message_id),
    ).fetchone()
    if row is None:
        raise RefusedError(MESSAGE_NOT_FOUND, code="not_found")
    is_group = bool(row["is_group"])
    sender, recipient = int(row["sender_id"]), int(row["recipient_id"])
    chat_id = recipient if is_group or sender == reporter_id else sender
    copy = {
        "message_id": row["id"],
        "sender_id": sender,
        "type": row["type"],
        "content": row["content"],
        "created_at": float(row["created_at"]),
    }
    return copy, chat_id, is_group


def _file_txn(txn: Txn, reporter_id: int, record: NewReport, now: float) -> FiledReport:
    evidence: dict[str, Any] | None = None
    chat_id, is_group, user_id = record.chat_id, record.is_group, record.user_id
    if record.target == "message":
        assert record.message_id is not None
        evidence, chat_id, is_group = _evidence_txn(txn, reporter_id, record.message_id)
        user_id = evidence["sender_id"]
    elif record.target == "user":
        if txn.scalar("SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL", (user_id,)) is None:
            raise RefusedError("User not found", code="not_found")
    elif is_group:
        member = txn.scalar("SELECT 1 FROM user_chats WHERE chat_id = ? AND user_id = ?", (chat_id, reporter_id))
        if member is None:
            raise RefusedError(UNKNOWN_CHAT, code="not_found")
    else:
        if txn.scalar("SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL", (chat_id,)) is None:
            raise RefusedError(UNKNOWN_CHAT, code="not_found")
        user_id = chat_id
    report_id = int(
        txn.scalar(
            "INSERT INTO reports (created_at, reporter_id, target, message_id, user_id, chat_id, is_group, category,"
            " reason, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                now,
                reporter_id,
                record.target,
                record.message_id,
                user_id,
                chat_id,
                int(is_group),
                record.category,
                record.reason,
                None if evidence is None else json.dumps(evidence, separators=(",", ":")),
            ),
        )
    )
    shown = {
        "target": record.target,
        "category": record.category,
        "message_id": record.message_id,
        "user_id": user_id,
        "chat_id": chat_id,
        "is_group": is_group,
    }
    data = {"event": "report_created", "id": report_id, "shown": shown}
    record_txn(txn, NewChange("report", now, actor_id=reporter_id, data=data))
    row = txn.execute("SELECT " + _COLUMNS + " FROM reports WHERE id = ?", (report_id,)).fetchone()
    moderators = moderators_txn(txn, chat_id) if is_group and chat_id is not None else ()
    return FiledReport(_row(row), moderators)


def _resolve_txn(
    txn: Txn, resolver_id: int | None, record: ReportResolution, now: float, audit: AuditEntry
) -> ReportRow | None:
    """The report resolved now; None when there is no such open report."""
    txn.execute(
        "UPDATE reports SET status = 'resolved', resolved_at = ?, resolved_by = ?, resolution = ?, note = ?"
        " WHERE id = ? AND status = 'open'",
        (now, resolver_id, record.action, record.note, record.report_id),
    )
    if txn.rowcount != 1:
        return None
    data = {"event": "report_resolved", "id": record.report_id, "shown": {"action": record.action}}
    record_txn(txn, NewChange("report", now, actor_id=resolver_id, data=data))
    write_audit_txn(txn, audit, now)
    return _row(txn.execute("SELECT " + _COLUMNS + " FROM reports WHERE id = ?", (record.report_id,)).fetchone())


def _list_txn(txn: Txn, query: ReportQuery) -> list[ReportRow]:
    given = (("status = ?", query.status), ("id < ?", query.before_id))
    conditions = [(clause, value) for clause, value in given if value is not None]
    return [_row(r) for r in newest_first_txn(txn, "reports", _COLUMNS, conditions, query.limit + 1)]


class ReportStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def file(self, reporter_id: int, record: NewReport, now: float) -> defer.Deferred[FiledReport]:
        """A new open report; RefusedError when the reporter cannot see what they report."""
        return self._db.run("reports.file", _file_txn, reporter_id, record, now)

    def get(self, report_id: int) -> defer.Deferred[ReportRow | None]:
        def txn_fn(txn: Txn) -> ReportRow | None:
            row = txn.execute("SELECT " + _COLUMNS + " FROM reports WHERE id = ?", (report_id,)).fetchone()
            return None if row is None else _row(row)

        return self._db.read("reports.get", txn_fn)

    def resolve(
        self, resolver_id: int | None, record: ReportResolution, now: float, audit: AuditEntry
    ) -> defer.Deferred[ReportRow | None]:
        return self._db.run("reports.resolve", _resolve_txn, resolver_id, record, now, audit)

    def list(self, query: ReportQuery) -> defer.Deferred[list[ReportRow]]:
        """Up to ``query.limit + 1`` reports newest first (the extra one says there are more)."""
        return self._db.read("reports.list", _list_txn, query)
