"""A member's standing in a group: whether their role and mute let them act (send, react, type).

Sending reads the standing with the group's members (`umoc.storage.messages.write`,
and migration 030's ``post_messages_v3``); reactions, edits and typing read it
here, one row, in the transaction that acts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from umoc.errors import RefusedError
from umoc.records.groups import MUTED, READ_ONLY, ROLE_REFUSED, Action, may
from umoc.storage.database import Txn

__all__ = ["GroupSettings", "check_settings", "check_standing", "require_standing_txn"]

#: Roles that post in a broadcast and are not slowed by slow mode; `_READ_ONLY_WRITERS` post in a read-only group.
_ABOVE_SLOW = ("owner", "admin", "moderator")
_READ_ONLY_WRITERS = ("owner", "admin")


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """What a group's own settings say about sending: its ``kind``, ``read_only`` and ``slow_mode`` (seconds)."""

    kind: str
    read_only: bool
    slow_mode: int

    def slows(self, role: str) -> bool:
        """Whether slow mode applies to ``role`` (whether its last message time must be read)."""
        return self.slow_mode > 0 and role not in _ABOVE_SLOW


def check_settings(role: str, settings: GroupSettings, last_sent_at: float | None, now: float) -> None:
    """Refuse a message the group's settings forbid ``role`` (the same checks as migration 020's function)."""
    if settings.kind == "broadcast" and role not in _ABOVE_SLOW:
        raise RefusedError(ROLE_REFUSED, code="forbidden")
    if settings.read_only and role not in _READ_ONLY_WRITERS:
        raise RefusedError(READ_ONLY, code="forbidden")
    if settings.slows(role) and last_sent_at is not None and last_sent_at + settings.slow_mode > now:
        wait = math.ceil(last_sent_at + settings.slow_mode - now)
        raise RefusedError(f"Slow mode: wait {wait} seconds", code="rate_limited", retry_after=wait)


def check_standing(role: str, muted_until: float | None, action: Action, now: float) -> None:
    """Refuse ``action`` to a role that may not, or to a member muted past ``now``."""
    if not may(role, action):
        raise RefusedError(ROLE_REFUSED, code="forbidden")
    if muted_until is not None and muted_until > now:
        raise RefusedError(MUTED, code="forbidden")


def require_standing_txn(txn: Txn, group_id: int, user_id: int, action: Action, now: float) -> None:
    """`check_standing` for ``user_id``'s row of the group (a non-member was refused before this)."""
    row = txn.execute(
        "SELECT role, muted_until FROM user_chats WHERE chat_id = ? AND user_id = ?", (group_id, user_id)
    ).fetchone()
    if row is not None:
        check_standing(row["role"], row["muted_until"], action, now)
