"""Users and their login sessions."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from umoc.errors import Code
from umoc.records.sessions import NewSession, SessionRecord
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, IntegrityError, Row, Txn, in_clause

__all__ = [
    "REGISTRATION_MODES",
    "AccountDeactivatedError",
    "Admission",
    "RegistrationRefusedError",
    "SessionRecord",
    "User",
    "UserStore",
    "UsernameTakenError",
    "registration_mode_txn",
    "set_last_seen_txn",
]

#: ``registration.mode`` values: anyone may register, nobody may, or only with an invite code.
REGISTRATION_MODES = ("open", "closed", "invite")
#: The ``settings`` row that overrides ``registration.mode`` from the configuration.
REGISTRATION_SETTING = "registration_mode"


class UsernameTakenError(Exception):
    """Registration with a name that exists already (case-insensitively)."""


class RegistrationRefusedError(Exception):
    """Registration is closed, or needs an invite code that was missing, unknown or used up."""

    def __init__(self, message: str, code: Code) -> None:
        super().__init__(message)
        self.message = message
        #: ``forbidden`` (closed) or ``invite_required``: what the HTTP edge answers with.
        self.code = code


class AccountDeactivatedError(Exception):
    """The account was deactivated by an administrator: no login, no session."""


@dataclass(frozen=True, slots=True)
class Admission:
    """How a self-registration is let in: the configured mode (the database may override it) and the invite given."""

    default_mode: str
    #: ``token_digest`` of the invite code the client sent, or None.
    invite_hash: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    last_seen: float | None


def _user(row: Row) -> User:
    return User(int(row["id"]), row["username"], row["last_seen"])


def registration_mode_txn(txn: Txn, default_mode: str) -> tuple[str, str]:
    """``(mode, source)``: the database's setting (source ``"database"``) or else ``default_mode`` (``"config"``)."""
    stored = txn.scalar("SELECT value FROM settings WHERE name = ?", (REGISTRATION_SETTING,))
    if stored in REGISTRATION_MODES:
        return stored, "database"
    return default_mode, "config"


def _admit_txn(txn: Txn, admission: Admission) -> None:
    """Refuse a self-registration the mode does not allow; spend one use of the invite in invite mode."""
    mode, _source = registration_mode_txn(txn, admission.default_mode)
    if mode == "closed":
        raise RegistrationRefusedError("Registration is closed", "forbidden")
    if mode == "invite":
        if admission.invite_hash is None:
            raise RegistrationRefusedError("Registration needs an invite code", "invite_required")
        txn.execute(
            "UPDATE invites SET uses_left = uses_left - 1 WHERE code_hash = ? AND uses_left > 0",
            (admission.invite_hash,),
        )
        if txn.rowcount != 1:
            raise RegistrationRefusedError("Invalid or used invite code", "invite_required")


def _create_user_txn(
    txn: Txn, username: str, password_hash: str, now: float, admission: Admission | None, is_admin: bool
) -> User:
    if txn.scalar("SELECT id FROM users WHERE LOWER(username) = LOWER(?)", (username,)) is not None:
        raise UsernameTakenError(username)
    if admission is not None:
        # In the same transaction as the insert: an invite is spent only by an account that exists.
        _admit_txn(txn, admission)
    try:
        user_id = txn.scalar(
            "INSERT INTO users (username, password_hash, created_at, is_admin) VALUES (?, ?, ?, ?) RETURNING id",
            (username, password_hash, now, int(is_admin)),
        )
    except IntegrityError as exc:
        raise UsernameTakenError(username) from exc
    # In no stream: for the ``user.registered`` webhook, whichever edge made the account.
    record_txn(txn, NewChange("registered", now, actor_id=int(user_id)))
    return User(int(user_id), username, None)


def _create_session_txn(txn: Txn, session: NewSession, max_sessions: int | None) -> list[str]:
    user_id = session.user_id
    # Lock the user row so that two racing logins (even on two nodes) count
    # the same sessions; SQLite serialises writers by itself.  A deactivation
    # that won the lock leaves no session behind it.
    row = txn.execute("SELECT deactivated_at FROM users WHERE id = ?" + txn.dialect.for_update, (user_id,)).fetchone()
    if row is None or row["deactivated_at"] is not None:
        raise AccountDeactivatedError(user_id)
    txn.execute(
        "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (session.session_id, user_id, session.token_hash, session.created_at, session.expires_at),
    )
    if max_sessions is None:
        return []
    rows = txn.execute(
        "SELECT id FROM sessions WHERE user_id = ? ORDER BY created_at DESC, id DESC", (user_id,)
    ).fetchall()
    revoked = [row["id"] for row in rows[max_sessions:]]
    if revoked:
        txn.execute("DELETE FROM sessions WHERE id IN " + in_clause(revoked), revoked)
    return revoked


def _session_txn(txn: Txn, session_id: str) -> SessionRecord | None:
    row = txn.execute(
        "SELECT s.id, s.user_id, u.username, s.token_hash, s.expires_at"
        " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ? AND u.deactivated_at IS NULL",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    return SessionRecord(row["id"], int(row["user_id"]), row["username"], row["token_hash"], float(row["expires_at"]))


def _expired_txn(txn: Txn, now: float, limit: int) -> list[tuple[str, int]]:
    rows = txn.execute(
        "SELECT id, user_id FROM sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?", (now, limit)
    ).fetchall()
    if rows:
        txn.execute("DELETE FROM sessions WHERE id IN " + in_clause([r["id"] for r in rows]), [r["id"] for r in rows])
    return [(r["id"], int(r["user_id"])) for r in rows]


def set_last_seen_txn(txn: Txn, user_id: int, when: float) -> None:
    txn.execute("UPDATE users SET last_seen = ? WHERE id = ?", (when, user_id))


class UserStore:
    """Intention-revealing queries about users and sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self, username: str, password_hash: str, now: float, admission: Admission | None = None, is_admin: bool = False
    ) -> defer.Deferred[User]:
        """A new account; with an `Admission` (self-registration), only if the registration mode lets it in.

        Raises `UsernameTakenError` or `RegistrationRefusedError`.
        """
        return self._db.run("users.create", _create_user_txn, username, password_hash, now, admission, is_admin)

    def credentials(self, username: str) -> defer.Deferred[tuple[int, str, str, bool] | None]:
        """``(id, username, password_hash, active)`` for a login, matched case-insensitively."""

        def txn_fn(txn: Txn) -> tuple[int, str, str, bool] | None:
            row = txn.execute(
                "SELECT id, username, password_hash, deactivated_at FROM users"
                " WHERE LOWER(username) = LOWER(?) AND deleted_at IS NULL",
                (username,),
            ).fetchone()
            if row is None:
                return None
            return (int(row["id"]), row["username"], row["password_hash"], row["deactivated_at"] is None)

        return self._db.read("users.credentials", txn_fn)

    def password_hash(self, user_id: int) -> defer.Deferred[str | None]:
        """The stored hash of a live (not deleted) account, for re-checking its owner's password."""

        def txn_fn(txn: Txn) -> str | None:
            return txn.scalar("SELECT password_hash FROM users WHERE id = ? AND deleted_at IS NULL", (user_id,))

        return self._db.run("users.password_hash", txn_fn)

    def replace_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> defer.Deferred[bool]:
        """Store ``new_hash`` if the stored one is still ``old_hash`` (a login's re-hash racing a reset loses)."""

        def txn_fn(txn: Txn) -> bool:
            txn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?", (new_hash, user_id, old_hash)
            )
            return txn.rowcount == 1

        return self._db.run("users.replace_password_hash", txn_fn)

    def by_id(self, user_id: int) -> defer.Deferred[User | None]:
        def txn_fn(txn: Txn) -> User | None:
            row = txn.execute("SELECT id, username, last_seen FROM users WHERE id = ?", (user_id,)).fetchone()
            return None if row is None else _user(row)

        return self._db.read("users.by_id", txn_fn)

    def created_at(self, user_id: int) -> defer.Deferred[float | None]:
        """When the account was made (``moderation.new_accounts``); None if there is none."""

        def txn_fn(txn: Txn) -> float | None:
            value = txn.scalar("SELECT created_at FROM users WHERE id = ?", (user_id,))
            return None if value is None else float(value)

        return self._db.read("users.created_at", txn_fn)

    def by_username(self, username: str) -> defer.Deferred[User | None]:
        def txn_fn(txn: Txn) -> User | None:
            row = txn.execute(
                "SELECT id, username, last_seen FROM users WHERE LOWER(username) = LOWER(?)", (username,)
            ).fetchone()
            return None if row is None else _user(row)

        return self._db.read("users.by_username", txn_fn)

    def create_session(self, session: NewSession, max_sessions: int | None) -> defer.Deferred[list[str]]:
        """Store a new session; return the ids of older sessions revoked to stay within ``max_sessions``.

        None: no older session is revoked (a socket's session from a token: one per token, ended with it).
        """
        return self._db.run("users.create_session", _create_session_txn, session, max_sessions)

    def session(self, session_id: str) -> defer.Deferred[SessionRecord | None]:
        return self._db.read("users.session", _session_txn, session_id)

    def delete_session(self, session_id: str) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            return txn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

        return self._db.run("users.delete_session", txn_fn)

    def existing_sessions(self, session_ids: list[str]) -> defer.Deferred[set[str]]:
        """Which of these sessions still exist and belong to active users (the others were ended elsewhere)."""

        def txn_fn(txn: Txn) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(session_ids), 500):
                batch = session_ids[start : start + 500]
                rows = txn.execute(
                    "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id"
                    " WHERE u.deactivated_at IS NULL AND s.id IN " + in_clause(batch),
                    batch,
                ).fetchall()
                found.update(r["id"] for r in rows)
            return found

        return self._db.read("users.existing_sessions", txn_fn)

    def delete_expired_sessions(self, now: float, limit: int = 1000) -> defer.Deferred[list[tuple[str, int]]]:
        """Delete up to ``limit`` expired sessions; return ``(session_id, user_id)`` of each."""
        return self._db.run("users.delete_expired_sessions", _expired_txn, now, limit)
