"""External identities: the user each (issuer, subject) of a token is."""

from __future__ import annotations

from twisted.internet import defer

from umoc.records.identity import ExternalUser, IdentityRecord
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, IntegrityError, Txn
from umoc.storage.users import UsernameTakenError

__all__ = ["IdentityStore", "NoSuchIdentityError", "ServerKeyNameTakenError"]

#: The ``settings`` row holding the secret UMOC signs its own tokens with (made on first use).
SIGNING_SETTING = "token_signing_key"

#: The password hash of a user made from a token: no password verifies against it.
NO_PASSWORD = "!"


class NoSuchIdentityError(Exception):
    """No user has this (issuer, subject), and none may be created."""


class ServerKeyNameTakenError(Exception):
    """A server key with this name exists already."""


def _signing_secret_txn(txn: Txn, candidate: str, now: float) -> str:
    """The stored signing secret; ``candidate`` becomes it when there is none (every node then reads the same)."""
    txn.execute(
        "INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
        (SIGNING_SETTING, candidate, now),
    )
    return str(txn.scalar("SELECT value FROM settings WHERE name = ?", (SIGNING_SETTING,)))


def _find_txn(txn: Txn, issuer: str, subject: str) -> IdentityRecord | None:
    row = txn.execute(
        "SELECT u.id, u.username, u.deactivated_at, u.deleted_at, u.tokens_valid_after"
        " FROM external_identities e JOIN users u ON u.id = e.user_id WHERE e.issuer = ? AND e.subject = ?",
        (issuer, subject),
    ).fetchone()
    if row is None:
        return None
    active = row["deactivated_at"] is None and row["deleted_at"] is None
    valid_after = row["tokens_valid_after"]
    return IdentityRecord(
        int(row["id"]), row["username"], active, None if valid_after is None else float(valid_after), False
    )


def _find_or_create_txn(txn: Txn, user: ExternalUser) -> IdentityRecord:
    found = _find_txn(txn, user.issuer, user.subject)
    if found is not None:
        if user.extra is not None:
            txn.execute(
                "UPDATE external_identities SET extra = ? WHERE issuer = ? AND subject = ?",
                (user.extra, user.issuer, user.subject),
            )
        return found
    if not user.create:
        raise NoSuchIdentityError(user.subject)
    for username in user.usernames:
        if txn.scalar("SELECT id FROM users WHERE LOWER(username) = LOWER(?)", (username,)) is None:
            break
    else:
        raise UsernameTakenError(user.usernames[0])
    user_id = int(
        txn.scalar(
            "INSERT INTO users (username, password_hash, created_at, display_name) VALUES (?, ?, ?, ?) RETURNING id",
            (username, NO_PASSWORD, user.now, user.display_name),
        )
    )
    # The primary key makes a racing node's insert of the same subject fail: the caller looks again.
    txn.execute(
        "INSERT INTO external_identities (issuer, subject, user_id, created_at, extra) VALUES (?, ?, ?, ?, ?)",
        (user.issuer, user.subject, user_id, user.now, user.extra),
    )
    # In no stream: for the ``user.registered`` webhook, as for a registration.
    record_txn(txn, NewChange("registered", user.now, actor_id=user_id))
    return IdentityRecord(user_id, username, True, None, True)


def _revoke_txn(txn: Txn, user_id: int, now: float) -> list[str]:
    txn.execute("UPDATE users SET tokens_valid_after = ? WHERE id = ?", (now, user_id))
    rows = txn.execute("SELECT id FROM sessions WHERE user_id = ?", (user_id,)).fetchall()
    txn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
    return [row["id"] for row in rows]


class IdentityStore:
    """Find or create the user of an external identity; revoke a user's tokens."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def find(self, issuer: str, subject: str) -> defer.Deferred[IdentityRecord | None]:
        return self._db.run("identities.find", _find_txn, issuer, subject)

    async def find_or_create(self, user: ExternalUser) -> IdentityRecord:
        """The user of ``(issuer, subject)``, created with the first free username if new.

        Two nodes creating the same subject at once: one insert wins, the
        other's transaction fails on the primary key and finds the winner's
        row.  `NoSuchIdentityError` when the user is new and ``create`` is
        False; `UsernameTakenError` when every candidate username is taken.
        """
        try:
            return await self._db.run("identities.find_or_create", _find_or_create_txn, user)
        except IntegrityError:
            found = await self.find(user.issuer, user.subject)
            if found is None:
                raise
            return found

    def revoke(self, user_id: int, now: float) -> defer.Deferred[list[str]]:
        """Refuse the user's tokens issued before ``now`` and delete every session; the ended sessions' ids."""
        return self._db.run("identities.revoke", _revoke_txn, user_id, now)

    def signing_secret(self, candidate: str, now: float) -> defer.Deferred[str]:
        """The secret UMOC's own tokens are signed with, ``candidate`` stored if there was none yet."""
        return self._db.run("identities.signing_secret", _signing_secret_txn, candidate, now)

    def create_server_key(self, key_id: str, name: str, key_hash: str, now: float) -> defer.Deferred[None]:
        """Store a server key's digest; `ServerKeyNameTakenError` when the name is taken."""

        def txn_fn(txn: Txn) -> None:
            if txn.scalar("SELECT id FROM server_keys WHERE name = ?", (name,)) is not None:
                raise ServerKeyNameTakenError(name)
            txn.execute(
                "INSERT INTO server_keys (id, name, key_hash, created_at) VALUES (?, ?, ?, ?)",
                (key_id, name, key_hash, now),
            )

        return self._db.run("identities.create_server_key", txn_fn)

    def server_key(self, key_id: str) -> defer.Deferred[tuple[str, str] | None]:
        """``(name, key_hash)`` of the server key with this id, or None."""

        def txn_fn(txn: Txn) -> tuple[str, str] | None:
            row = txn.execute("SELECT name, key_hash FROM server_keys WHERE id = ?", (key_id,)).fetchone()
            return None if row is None else (row["name"], row["key_hash"])

        return self._db.read("identities.server_key", txn_fn)

    def delete_server_key(self, name: str) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            return txn.execute("DELETE FROM server_keys WHERE name = ?", (name,)).rowcount > 0

        return self._db.run("identities.delete_server_key", txn_fn)
