"""Reports (docs/api.md ``report``): what a user reports, and how an administrator resolves it.

Each record validates itself once, so the socket edge and the admin API
refuse the same input with the same words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from umoc.errors import UserError

__all__ = ["CATEGORIES", "RESOLUTIONS", "TARGETS", "NewReport", "ReportQuery", "ReportResolution", "ReportRow"]

TARGETS = ("message", "user", "chat")
CATEGORIES = ("spam", "harassment", "inappropriate", "illegal", "other")
#: ``ban_member`` deactivates the reported account until groups have bans (the communities work).
RESOLUTIONS = ("dismiss", "delete_message", "ban_member", "deactivate_user")
STATUSES = ("open", "resolved")
MAX_REASON = 1000
MAX_NOTE = 1000

_ID = re.compile(r"[1-9][0-9]{0,17}")


@dataclass(frozen=True, slots=True)
class NewReport:
    """``report``: the target's own id is required (``message_id``, ``user_id`` or ``chat_id`` + ``is_group``)."""

    target: str
    category: str
    message_id: str | None = None
    user_id: int | None = None
    chat_id: int | None = None
    is_group: bool = False
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UserError(f"Invalid 'target': expected one of {', '.join(TARGETS)}", code="invalid_argument")
        if self.category not in CATEGORIES:
            raise UserError(f"Invalid 'category': expected one of {', '.join(CATEGORIES)}", code="invalid_argument")
        needed = {"message": self.message_id, "user": self.user_id, "chat": self.chat_id}[self.target]
        if needed is None:
            name = {"message": "message_id", "user": "user_id", "chat": "chat_id"}[self.target]
            raise UserError(f"Missing '{name}'", code="invalid_argument")
        if self.reason is not None and len(self.reason) > MAX_REASON:
            raise UserError(f"Invalid 'reason': at most {MAX_REASON} characters", code="invalid_argument")


@dataclass(frozen=True, slots=True)
class ReportResolution:
    """``POST /api/admin/reports/<id>/resolve``."""

    report_id: int
    action: str
    note: str | None = None

    def __post_init__(self) -> None:
        if self.action not in RESOLUTIONS:
            raise UserError(f"'action' must be one of: {', '.join(RESOLUTIONS)}", code="invalid_argument")
        if self.note is not None and len(self.note) > MAX_NOTE:
            raise UserError(f"'note' must be at most {MAX_NOTE} characters", code="invalid_argument")


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """``GET /api/admin/reports?status=open&cursor=&limit=``: newest first."""

    status: str | None = "open"
    cursor: str | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise UserError("'status' must be open or resolved", code="invalid_argument")
        if self.cursor is not None and not _ID.fullmatch(self.cursor):
            raise UserError("Invalid cursor", code="invalid_argument")
        if not 1 <= self.limit <= 200:
            raise UserError("'limit' must be from 1 to 200", code="invalid_argument")

    @property
    def before_id(self) -> int | None:
        return None if self.cursor is None else int(self.cursor)


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One stored report."""

    id: int
    created_at: float
    reporter_id: int
    target: str
    message_id: str | None
    user_id: int | None
    chat_id: int | None
    is_group: bool
    category: str
    reason: str | None
    #: The reported message as it was (``{message_id, sender_id, type, content, created_at}``), or None.
    evidence: dict[str, Any] | None
    status: str
    resolved_at: float | None
    resolved_by: int | None
    resolution: str | None
    note: str | None

    @property
    def offender_id(self) -> int | None:
        """The account a ban or deactivation acts on: the message's sender, the user, a direct chat's other."""
        if self.evidence is not None:
            return int(self.evidence["sender_id"])
        if self.target == "user":
            return self.user_id
        if self.target == "chat" and not self.is_group:
            return self.chat_id
        return None
