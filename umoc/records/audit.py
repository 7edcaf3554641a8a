"""The audit log's records: one entry to write (`AuditEntry`) and one query to read (`AuditQuery`).

An entry says who (`Actor`: id, name, edge, address), what (``action``,
its target) and when; the storage adds the time.  A query validates its
filters once here, so the admin API and ``umoc-admin audit`` refuse the
same things with the same words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from umoc.errors import UserError
from umoc.records import Actor

__all__ = ["ACTIONS", "AuditEntry", "AuditQuery", "AuditRow"]

#: Every ``action`` an entry may have (docs/api.md "Audit log").
ACTIONS = (
    "user.create",
    "user.set_admin",
    "user.deactivate",
    "user.reactivate",
    "user.reset_password",
    "user.revoke_sessions",
    "user.delete",
    "user.legal_hold",
    "message.delete",
    "registration_mode.set",
    "invite.create",
    "bot.create",
    "bot.new_token",
    "bot.revoke_tokens",
    "server_key.create",
    "server_key.delete",
    "group.update",
    "group.add_member",
    "group.remove_member",
    "group.set_role",
    "group.ban_member",
    "group.unban_member",
    "group.mute_member",
    "group.unmute_member",
    "report.resolve",
)

_CURSOR = re.compile(r"[1-9][0-9]{0,17}")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One action to record, by ``actor``; ``details`` a small JSON object (no secrets, no passwords)."""

    actor: Actor
    action: str
    target_type: str | None = None
    target_id: str | None = None
    chat_id: int | None = None
    details: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")

    def details_json(self) -> str | None:
        return None if self.details is None else json.dumps(self.details, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One stored entry, as it is listed."""

    id: int
    created_at: float
    actor_id: int | None
    actor_name: str
    via: str
    address: str | None
    action: str
    target_type: str | None
    target_id: str | None
    chat_id: int | None
    details: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Newest first: before ``cursor`` (an entry id as given in ``next_cursor``), ``limit`` (1-200) at most,
    only those by ``actor`` (a name, case-insensitively), of ``action``, and at or after ``since`` / before
    ``until`` (epoch seconds) when given."""

    cursor: str | None = None
    limit: int = 50
    actor: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.cursor is not None and not _CURSOR.fullmatch(self.cursor):
            raise UserError("Invalid cursor", code="invalid_argument")
        if not 1 <= self.limit <= 200:
            raise UserError("'limit' must be from 1 to 200", code="invalid_argument")
        if self.actor is not None and not 1 <= len(self.actor) <= 64:
            raise UserError("'actor' must be 1-64 characters", code="invalid_argument")
        if self.action is not None and self.action not in ACTIONS:
            raise UserError(f"'action' must be one of: {', '.join(ACTIONS)}", code="invalid_argument")

    @property
    def before_id(self) -> int | None:
        return None if self.cursor is None else int(self.cursor)
