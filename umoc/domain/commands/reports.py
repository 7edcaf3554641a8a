"""Reports: a user reports a message, a user or a chat; administrators list and resolve them.

``report`` copies the reported message into the report (evidence that
outlives an edit or a deletion), tells the group's moderators
(``report_created``) and, through the feed, fires ``report.created``.
Resolving applies the action with the same commands the admin API's own
endpoints call (so the same events, webhooks and audit entries follow),
then marks the report resolved, with its ``report.resolved`` feed row and
its audit entry, in one transaction.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.admin import NotFoundError
from umoc.domain.commands import account, messages, moderation
from umoc.domain.services import Services
from umoc.errors import RefusedError, UserError
from umoc.records import Actor
from umoc.records.account import AccountRef
from umoc.records.audit import AuditEntry
from umoc.records.groups import Ban
from umoc.records.messages import Deletion
from umoc.records.reports import NewReport, ReportQuery, ReportResolution, ReportRow
from umoc.timefmt import iso, iso_or_none

__all__ = ["file", "list_reports", "report_json", "resolve"]


async def file(services: Services, actor: Actor, record: NewReport) -> dict[str, Any]:
    """File a report; the ack is ``{report_id}``."""
    filed = await services.storage.reports.file(actor.uid, record, services.clock.seconds())
    report = filed.report
    if filed.moderators and report.chat_id is not None:
        shown = {"report_id": str(report.id), "chat_id": report.chat_id, "category": report.category}
        services.hub.tell(filed.moderators, notices.REPORT_CREATED(shown))
    services.webhooks.wake()  # ``report.created``, read from the feed
    return {"report_id": str(report.id)}


async def list_reports(services: Services, actor: Actor, query: ReportQuery) -> tuple[list[ReportRow], str | None]:
    """``(reports newest first, next_cursor)``: administrators only."""
    account.require_admin(actor)
    rows = await services.storage.reports.list(query)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return rows, (str(rows[-1].id) if more and rows else None)


async def resolve(services: Services, actor: Actor, record: ReportResolution) -> ReportRow:
    """Apply ``record.action`` and resolve the report; `NotFoundError` / a conflict refusal otherwise."""
    account.require_admin(actor)
    report = await services.storage.reports.get(record.report_id)
    if report is None:
        raise NotFoundError("No such report")
    if report.status != "open":
        raise UserError("This report is resolved already", code="conflict")
    if record.action == "delete_message":
        if report.message_id is None:
            raise UserError("This report names no message", code="invalid_argument")
        try:
            await messages.delete(services, actor, Deletion(report.message_id))
        except RefusedError:
            pass  # deleted already (by its sender, or another admin): the report is resolved all the same
    elif record.action == "ban_member":
        # Out of the reported group, for good (unban_member lifts it); the account itself stays active.
        offender = report.offender_id
        if report.chat_id is None or not report.is_group or offender is None:
            raise UserError("This report names no member of a group", code="invalid_argument")
        await moderation.ban(services, actor, Ban(report.chat_id, offender))
    elif record.action == "deactivate_user":
        offender = report.offender_id
        if offender is None:
            raise UserError("This report names no account", code="invalid_argument")
        await account.deactivate(services, actor, AccountRef(offender))
    details = {"action": record.action, "note": record.note}
    entry = AuditEntry(actor, "report.resolve", "report", str(report.id), report.chat_id, details)
    resolved = await services.storage.reports.resolve(actor.user_id, record, services.clock.seconds(), entry)
    if resolved is None:
        raise UserError("This report is resolved already", code="conflict")
    services.webhooks.wake()  # ``report.resolved``, read from the feed
    return resolved


def report_json(report: ReportRow) -> dict[str, Any]:
    """A report as the admin API shows it (the evidence's time in ISO 8601)."""
    evidence = report.evidence
    if evidence is not None:
        evidence = {**evidence, "created_at": iso(float(evidence["created_at"]))}
    return {
        "report_id": str(report.id),
        "created_at": iso(report.created_at),
        "reporter_id": report.reporter_id,
        "target": report.target,
        "message_id": report.message_id,
        "user_id": report.user_id,
        "chat_id": report.chat_id,
        "is_group": report.is_group,
        "category": report.category,
        "reason": report.reason,
        "evidence": evidence,
        "status": report.status,
        "resolved_at": iso_or_none(report.resolved_at),
        "resolved_by": report.resolved_by,
        "action": report.resolution,
        "note": report.note,
    }
