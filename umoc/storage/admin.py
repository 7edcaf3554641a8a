"""What administrators do to accounts, settings and invites (``umoc-admin`` and ``/api/admin/``).

Every change that ends sessions deletes them in the same transaction and
returns their ids, so the caller can close their sockets on every node.
Every change takes the `AuditEntry` that records it and writes it in its
own transaction (`umoc.storage.audit`): the change and its entry commit
together or not at all.
"""

from __future__ import annotations

from twisted.internet import defer

from umoc.records.account import UserInfo
from umoc.records.audit import AuditEntry
from umoc.storage.audit import write_audit_txn
from umoc.storage.database import Database, Row, Txn
from umoc.storage.users import REGISTRATION_MODES, REGISTRATION_SETTING, registration_mode_txn

__all__ = ["AdminStore", "UserInfo"]


_USER_COLUMNS = (
    "SELECT u.id, u.username, u.is_admin, u.deactivated_at, u.created_at, u.last_seen, u.deleted_at,"
    " (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id) AS session_count FROM users u"
)


def _user_info(row: Row) -> UserInfo:
    return UserInfo(
        int(row["id"]),
        row["username"],
        bool(row["is_admin"]),
        row["deactivated_at"],
        float(row["created_at"]),
        row["last_seen"],
        int(row["session_count"]),
        row["deleted_at"],
    )


def _like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _delete_sessions_txn(txn: Txn, user_id: int) -> list[str]:
    ids = [r["id"] for r in txn.execute("SELECT id FROM sessions WHERE user_id = ?", (user_id,)).fetchall()]
    txn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
    return ids


def _lock_user_txn(txn: Txn, user_id: int) -> bool:
    """Lock the user row as a login does (so no session is created meanwhile); False if there is none."""
    return txn.execute("SELECT id FROM users WHERE id = ?" + txn.dialect.for_update, (user_id,)).fetchone() is not None


def _deactivate_txn(txn: Txn, user_id: int, now: float, audit: AuditEntry | None) -> tuple[bool, list[str]]:
    if not _lock_user_txn(txn, user_id):
        return False, []
    write_audit_txn(txn, audit, now)
    txn.execute("UPDATE users SET deactivated_at = ? WHERE id = ? AND deactivated_at IS NULL", (now, user_id))
    changed = txn.rowcount == 1
    return changed, _delete_sessions_txn(txn, user_id)


def _set_password_txn(
    txn: Txn, user_id: int, password_hash: str, audit: AuditEntry | None = None, now: float = 0.0
) -> list[str]:
    if not _lock_user_txn(txn, user_id):
        return []
    write_audit_txn(txn, audit, now)
    txn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
    return _delete_sessions_txn(txn, user_id)


def _revoke_txn(txn: Txn, user_id: int, audit: AuditEntry | None = None, now: float = 0.0) -> list[str]:
    if _lock_user_txn(txn, user_id):
        write_audit_txn(txn, audit, now)
    return _delete_sessions_txn(txn, user_id)


class AdminStore:
    """Accounts, settings and invites, for administrators."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- accounts -------------------------------------------------------------

    def find(self, user: int | str) -> defer.Deferred[UserInfo | None]:
        """The account with this id (an int) or name (a str, matched case-insensitively)."""

        def txn_fn(txn: Txn) -> UserInfo | None:
            if isinstance(user, int):
                row = txn.execute(_USER_COLUMNS + " WHERE u.id = ?", (user,)).fetchone()
            else:
                row = txn.execute(_USER_COLUMNS + " WHERE LOWER(u.username) = LOWER(?)", (user,)).fetchone()
            return None if row is None else _user_info(row)

        return self._db.read("admin.find", txn_fn)

    def list_users(self, search: str | None, limit: int, offset: int = 0) -> defer.Deferred[list[UserInfo]]:
        """Accounts by id, those whose name contains ``search`` (case-insensitively) when given."""

        def txn_fn(txn: Txn) -> list[UserInfo]:
            if search:
                rows = txn.execute(
                    _USER_COLUMNS + " WHERE LOWER(u.username) LIKE ? ESCAPE '\\' ORDER BY u.id LIMIT ? OFFSET ?",
                    (_like_pattern(search), limit, offset),
                ).fetchall()
            else:
                rows = txn.execute(_USER_COLUMNS + " ORDER BY u.id LIMIT ? OFFSET ?", (limit, offset)).fetchall()
            return [_user_info(r) for r in rows]

        return self._db.read("admin.list_users", txn_fn)

    def set_admin(
        self, user_id: int, is_admin: bool, audit: AuditEntry | None = None, now: float = 0.0
    ) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE users SET is_admin = ? WHERE id = ?", (int(is_admin), user_id))
            changed = txn.rowcount == 1
            if changed:
                write_audit_txn(txn, audit, now)
            return changed

        return self._db.run("admin.set_admin", txn_fn)

    def deactivate(
        self, user_id: int, now: float, audit: AuditEntry | None = None
    ) -> defer.Deferred[tuple[bool, list[str]]]:
        """``(changed, ended session ids)``: the account deactivated (if it was not) and every session deleted."""
        return self._db.run("admin.deactivate", _deactivate_txn, user_id, now, audit)

    def reactivate(self, user_id: int, audit: AuditEntry | None = None, now: float = 0.0) -> defer.Deferred[bool]:
        """True when the account was deactivated and now is not (only then is ``audit`` written)."""

        def txn_fn(txn: Txn) -> bool:
            txn.execute(
                "UPDATE users SET deactivated_at = NULL"
                " WHERE id = ? AND deactivated_at IS NOT NULL AND deleted_at IS NULL",
                (user_id,),
            )
            changed = txn.rowcount == 1
            if changed:
                write_audit_txn(txn, audit, now)
            return changed

        return self._db.run("admin.reactivate", txn_fn)

    def set_password(
        self, user_id: int, password_hash: str, audit: AuditEntry | None = None, now: float = 0.0
    ) -> defer.Deferred[list[str]]:
        """Replace the password hash and delete every session; the ended session ids."""
        return self._db.run("admin.set_password", _set_password_txn, user_id, password_hash, audit, now)

    def revoke_sessions(
        self, user_id: int, audit: AuditEntry | None = None, now: float = 0.0
    ) -> defer.Deferred[list[str]]:
        """Delete every session of the account; their ids."""
        return self._db.run("admin.revoke_sessions", _revoke_txn, user_id, audit, now)

    # -- settings and invites ---------------------------------------------------

    def registration_mode(self, default_mode: str) -> defer.Deferred[tuple[str, str]]:
        """``(mode, source)``: source ``"database"`` when an administrator set it, else ``"config"``."""
        return self._db.read("admin.registration_mode", registration_mode_txn, default_mode)

    def set_registration_mode(
        self, mode: str | None, now: float, audit: AuditEntry | None = None
    ) -> defer.Deferred[None]:
        """Store the mode every node uses from now on; None goes back to each node's configuration."""
        if mode is not None and mode not in REGISTRATION_MODES:
            raise ValueError(mode)

        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM settings WHERE name = ?", (REGISTRATION_SETTING,))
            write_audit_txn(txn, audit, now)
            if mode is not None:
                txn.execute(
                    "INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?)", (REGISTRATION_SETTING, mode, now)
                )

        return self._db.run("admin.set_registration_mode", txn_fn)

    def create_invite(
        self, code_hash: str, uses: int, created_by: int | None, now: float, audit: AuditEntry | None = None
    ) -> defer.Deferred[None]:
        def txn_fn(txn: Txn) -> None:
            write_audit_txn(txn, audit, now)
            txn.execute(
                "INSERT INTO invites (code_hash, created_by, created_at, uses_left) VALUES (?, ?, ?, ?)",
                (code_hash, created_by, now, uses),
            )

        return self._db.run("admin.create_invite", txn_fn)
