"""The audit log: record an administrative or moderation action, list them (admins only).

Every command an administrator or a group's admin runs records one entry
(`umoc.records.audit.ACTIONS`), whichever edge asked: the admin API (the
client's address), ``umoc-admin`` (``"cli"``) or a socket.  Changes made in
one transaction of `umoc.storage.admin` write their entry in it; the others
call `record` right after the change has committed (a crash between the two
loses the entry, never the change).  Group moderation goes through
`record_moderation`, the one place that decides which group actions are
moderation (today: what a group admin does to others; the roles of the
communities work point it at moderators).
"""

from __future__ import annotations

from typing import Any

from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.audit import AuditEntry, AuditQuery, AuditRow
from umoc.timefmt import iso

__all__ = ["entry_json", "list_entries", "record", "record_moderation"]


async def record(services: Services, entry: AuditEntry) -> None:
    """Append ``entry`` now, in its own transaction (after an action that is not one of `AdminStore`'s)."""
    await services.storage.audit.record(entry, services.clock.seconds())


async def record_moderation(
    services: Services, actor: Actor, action: str, chat_id: int, user_id: int | None = None, **details: Any
) -> None:
    """A group action by ``actor`` on someone else (``user_id``) or on the group itself."""
    if user_id is not None and user_id == actor.user_id:
        return  # a member leaving, or acting on themselves: no moderation
    target = ("user", str(user_id)) if user_id is not None else ("group", str(chat_id))
    await record(services, AuditEntry(actor, action, target[0], target[1], chat_id, details or None))


async def list_entries(services: Services, actor: Actor, query: AuditQuery) -> tuple[list[AuditRow], str | None]:
    """``(entries newest first, next_cursor)``; ``next_cursor`` None on the last page."""
    if not actor.is_admin:
        raise UserError("Administrators only", code="forbidden")
    rows = await services.storage.audit.list(query)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return rows, (str(rows[-1].id) if more and rows else None)


def entry_json(row: AuditRow) -> dict[str, Any]:
    """An entry as the admin API and ``umoc-admin audit --json`` show it."""

    return {
        "id": str(row.id),
        "created_at": iso(row.created_at),
        "actor": {"user_id": row.actor_id, "name": row.actor_name, "via": row.via, "address": row.address},
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "chat_id": row.chat_id,
        "details": row.details,
    }
