"""Users and their login sessions."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from umoc.storage.database import Database, IntegrityError, Row, Txn, in_clause

__all__ = ["SessionRecord", "User", "UserStore", "UsernameTakenError"]


class UsernameTakenError(Exception):
    """Registration with a name that exists already (case-insensitively)."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    last_seen: float | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    user_id: int
    username: str
    token_hash: str
    expires_at: float


def _user(row: Row) -> User:
    return User(int(row["id"]), row["username"], row["last_seen"])


def _create_user_txn(txn: Txn, username: str, password_hash: str, now: float) -> User:
    if txn.scalar("SELECT id FROM users WHERE LOWER(username) = LOWER(?)", (username,)) is not None:
        raise UsernameTakenError(username)
    try:
        user_id = txn.scalar(
            "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?) RETURNING id",
            (username, password_hash, now),
        )
    except IntegrityError as exc:
        raise UsernameTakenError(username) from exc
    return User(int(user_id), username, None)


def _create_session_txn(
    txn: Txn, user_id: int, session_id: str, token_hash: str, now: float, expires_at: float, max_sessions: int
) -> list[str]:
    # Lock the user row so that two racing logins (even on two nodes) count
    # the same sessions; SQLite serialises writers by itself.
    txn.execute("SELECT id FROM users WHERE id = ?" + txn.dialect.for_update, (user_id,))
    txn.execute(
        "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (session_id, user_id, token_hash, now, expires_at),
    )
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
        " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    return SessionRecord(
        row["id"], int(row["user_id"]), row["username"], row["token_hash"], float(row["expires_at"])
    )


def _expired_txn(txn: Txn, now: float, limit: int) -> list[tuple[str, int]]:
    rows = txn.execute(
        "SELECT id, user_id FROM sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?", (now, limit)
    ).fetchall()
    if rows:
        txn.execute("DELETE FROM sessions WHERE id IN " + in_clause([r["id"] for r in rows]), [r["id"] for r in rows])
    return [(r["id"], int(r["user_id"])) for r in rows]


class UserStore:
    """Intention-revealing queries about users and sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, username: str, password_hash: str, now: float) -> defer.Deferred[User]:
        return self._db.run("users.create", _create_user_txn, username, password_hash, now)

    def credentials(self, username: str) -> defer.Deferred[tuple[int, str, str] | None]:
        """``(id, username, password_hash)`` for a login, matched case-insensitively."""

        def txn_fn(txn: Txn) -> tuple[int, str, str] | None:
            row = txn.execute(
                "SELECT id, username, password_hash FROM users WHERE LOWER(username) = LOWER(?)", (username,)
            ).fetchone()
            return None if row is None else (int(row["id"]), row["username"], row["password_hash"])

        return self._db.run("users.credentials", txn_fn)

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

        return self._db.run("users.by_id", txn_fn)

    def by_username(self, username: str) -> defer.Deferred[User | None]:
        def txn_fn(txn: Txn) -> User | None:
            row = txn.execute(
                "SELECT id, username, last_seen FROM users WHERE LOWER(username) = LOWER(?)", (username,)
            ).fetchone()
            return None if row is None else _user(row)

        return self._db.run("users.by_username", txn_fn)

    def set_last_seen(self, user_id: int, when: float) -> defer.Deferred[None]:
        def txn_fn(txn: Txn) -> None:
            txn.execute("UPDATE users SET last_seen = ? WHERE id = ?", (when, user_id))

        return self._db.run("users.set_last_seen", txn_fn)

    def create_session(
        self, user_id: int, session_id: str, token_hash: str, now: float, expires_at: float, max_sessions: int
    ) -> defer.Deferred[list[str]]:
        """Store a new session; return the ids of older sessions revoked to stay within ``max_sessions``."""
        return self._db.run(
            "users.create_session", _create_session_txn, user_id, session_id, token_hash, now, expires_at, max_sessions
        )

    def session(self, session_id: str) -> defer.Deferred[SessionRecord | None]:
        return self._db.run("users.session", _session_txn, session_id)

    def delete_session(self, session_id: str) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            return txn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

        return self._db.run("users.delete_session", txn_fn)

    def delete_expired_sessions(self, now: float, limit: int = 1000) -> defer.Deferred[list[tuple[str, int]]]:
        """Delete up to ``limit`` expired sessions; return ``(session_id, user_id)`` of each."""
        return self._db.run("users.delete_expired_sessions", _expired_txn, now, limit)
