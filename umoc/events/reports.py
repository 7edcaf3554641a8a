"""``report``: a user reports a message, a user or a chat (`umoc.domain.commands.reports`); acked ``{report_id}``."""

from __future__ import annotations

from typing import Any

from umoc.domain.commands import reports
from umoc.events.router import EventContext, Route
from umoc.records.reports import CATEGORIES, MAX_REASON, TARGETS, NewReport
from umoc.records.schema import SESSION_ID, Bool, Enum, Int, Schema, Str, Uuid

__all__ = ["ROUTES"]


async def report(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    record = NewReport(
        payload["target"],
        payload["category"],
        payload.get("message_id"),
        payload.get("user_id"),
        payload.get("chat_id"),
        payload["is_group"],
        payload.get("reason") or None,
    )
    return await reports.file(ctx.services, ctx.actor, record)


ROUTES = [
    Route(
        "report",
        Schema(
            SESSION_ID,
            Enum("target", TARGETS),
            Enum("category", CATEGORIES),
            Uuid("message_id", required=False),
            Int("user_id", required=False),
            Int("chat_id", required=False),
            Bool("is_group", required=False, default=False),
            Str("reason", required=False, max_length=MAX_REASON, min_length=0),
        ),
        report,
        rate_class="reports",
    ),
]
