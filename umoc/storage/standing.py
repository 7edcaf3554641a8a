"""A member's standing in a group: whether their role and mute let them act (send, react, type).

Sending reads the standing with the group's members (`umoc.storage.messages.write`,
and migration 020's ``post_messages``); reactions, edits and typing read it
here, one row, in the transaction that acts.
"""

from __future__ import annotations

from umoc.errors import RefusedError
from umoc.records.groups import MUTED, ROLE_REFUSED, Action, may
from umoc.storage.database import Txn

__all__ = ["check_standing", "require_standing_txn"]


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
