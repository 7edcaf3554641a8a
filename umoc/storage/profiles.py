"""Profiles (display name, status text, avatar) and per-user settings.

Who may see a profile: the user, their friends (both rows FRIEND, so
neither blocked), and members of an open group they share.  The same rule
decides who may download the avatar.  A pending contact request shows its
two sides each other's id and username (``contact_request``) and nothing
more: otherwise anyone could read any profile by sending a request its owner
never answers (issue 22, G13).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.records.profiles import ProfileChange, SettingsChange
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Row, Txn
from umoc.storage.files import check_avatar_txn
from umoc.storage.relations import FRIEND

__all__ = ["Profile", "ProfileStore", "Settings", "profile_txn"]

USER_NOT_FOUND = "User not found"


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: int
    username: str
    display_name: str | None
    status_text: str | None
    avatar_file_id: str | None
    #: The app's custom data (None: none).
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    send_delivery_receipts: bool


def _profile(row: Row) -> Profile:
    extra = None if row["extra"] is None else json.loads(row["extra"])
    return Profile(
        int(row["id"]), row["username"], row["display_name"], row["status_text"], row["avatar_file_id"], extra
    )


def profile_txn(txn: Txn, user_id: int) -> Profile | None:
    row = txn.execute(
        "SELECT id, username, display_name, status_text, avatar_file_id, extra FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    return None if row is None else _profile(row)


def visible_txn(txn: Txn, viewer_id: int, user_id: int) -> bool:
    """Whether ``viewer_id`` may see ``user_id``'s profile and avatar."""
    if viewer_id == user_id:
        return True
    contact = txn.execute(
        "SELECT 1 FROM contacts c JOIN contacts r ON r.owner_id = c.contact_id AND r.contact_id = c.owner_id"
        " WHERE c.owner_id = ? AND c.contact_id = ? AND c.status = ? AND r.status = ?",
        (viewer_id, user_id, FRIEND, FRIEND),
    ).fetchone()
    if contact is not None:
        return True
    shared = txn.execute(
        "SELECT 1 FROM user_chats a JOIN user_chats b ON b.chat_id = a.chat_id JOIN chats c ON c.id = a.chat_id"
        " WHERE a.user_id = ? AND b.user_id = ? AND a.is_group = 1 AND c.closed_at IS NULL LIMIT 1",
        (viewer_id, user_id),
    ).fetchone()
    return shared is not None


def contacts_txn(txn: Txn, user_id: int) -> list[int]:
    """``user_id``'s friends (both rows FRIEND): who hears of profile changes."""
    rows = txn.execute(
        "SELECT c.contact_id FROM contacts c JOIN contacts r ON r.owner_id = c.contact_id AND r.contact_id = c.owner_id"
        " WHERE c.owner_id = ? AND c.status = ? AND r.status = ?",
        (user_id, FRIEND, FRIEND),
    ).fetchall()
    return [int(r["contact_id"]) for r in rows]


def _update_txn(
    txn: Txn, user_id: int, change: ProfileChange, image_types: tuple[str, ...], now: float
) -> tuple[Profile, list[int]]:
    fields = change.fields()
    avatar_file_id = fields.get("avatar_file_id")
    if avatar_file_id is not None:
        # Completed files are never purged; an avatar is kept as long as any shared file.
        check_avatar_txn(txn, user_id, avatar_file_id, image_types, now)
    for column, value in fields.items():
        txn.execute(f"UPDATE users SET {column} = ? WHERE id = ?", (value, user_id))
    profile = profile_txn(txn, user_id)
    if profile is None:
        raise RefusedError(USER_NOT_FOUND, code="not_found")
    record_txn(txn, NewChange("profile", now, profile_id=user_id, actor_id=user_id))
    return profile, contacts_txn(txn, user_id)


def _visible_profile_txn(txn: Txn, viewer_id: int, user_id: int) -> Profile:
    profile = profile_txn(txn, user_id)
    if profile is None or not visible_txn(txn, viewer_id, user_id):
        raise RefusedError(USER_NOT_FOUND, code="not_found")
    return profile


def _avatar_readable_txn(txn: Txn, file_id: str, viewer_id: int) -> bool:
    """A user's avatar: whoever may see their profile; a group's: its members, and anyone for a public group."""
    group = txn.execute(
        "SELECT 1 FROM chats c WHERE c.avatar_file_id = ? AND c.is_group = 1 AND c.closed_at IS NULL"
        " AND (c.visibility = 'public' OR EXISTS (SELECT 1 FROM user_chats uc WHERE uc.chat_id = c.id"
        " AND uc.user_id = ?)) LIMIT 1",
        (file_id, viewer_id),
    ).fetchone()
    if group is not None:
        return True
    rows = txn.execute("SELECT id FROM users WHERE avatar_file_id = ?", (file_id,)).fetchall()
    return any(visible_txn(txn, viewer_id, int(r["id"])) for r in rows)


def _own_profile_txn(txn: Txn, user_id: int) -> tuple[Profile, bool]:
    profile = _visible_profile_txn(txn, user_id, user_id)
    return profile, bool(txn.scalar("SELECT is_admin FROM users WHERE id = ?", (user_id,)))


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, viewer_id: int, user_id: int) -> defer.Deferred[Profile]:
        """``user_id``'s profile if ``viewer_id`` may see it; RefusedError (``User not found``) otherwise."""
        return self._db.read("profiles.get", _visible_profile_txn, viewer_id, user_id)

    def own(self, user_id: int) -> defer.Deferred[tuple[Profile, bool]]:
        """The user's own profile and whether they are a server administrator (one read)."""
        return self._db.read("profiles.own", _own_profile_txn, user_id)

    def update(
        self, user_id: int, change: ProfileChange, image_types: tuple[str, ...] = (), now: float = 0.0
    ) -> defer.Deferred[tuple[Profile, list[int]]]:
        """Change the fields ``change`` sets (None clears one); ``(profile now, contacts to tell)``.

        An avatar must be a whole upload of the user's whose type is one of
        ``image_types``. Raises `RefusedError`.
        """
        return self._db.run("profiles.update", _update_txn, user_id, change, image_types, now)

    def avatar_readable(self, file_id: str, viewer_id: int) -> defer.Deferred[bool]:
        """Whether ``file_id`` is the avatar of someone whose profile ``viewer_id`` may see, or of a group
        ``viewer_id`` is in or that is public."""
        return self._db.read("profiles.avatar_readable", _avatar_readable_txn, file_id, viewer_id)

    def settings(self, user_id: int) -> defer.Deferred[Settings]:
        def txn_fn(txn: Txn) -> Settings:
            return Settings(bool(txn.scalar("SELECT send_delivery_receipts FROM users WHERE id = ?", (user_id,))))

        return self._db.read("profiles.settings", txn_fn)

    def update_settings(self, user_id: int, change: SettingsChange) -> defer.Deferred[Settings]:
        """Change the settings given (None leaves one alone); the settings now."""

        def txn_fn(txn: Txn) -> Settings:
            if change.send_delivery_receipts is not None:
                txn.execute(
                    "UPDATE users SET send_delivery_receipts = ? WHERE id = ?",
                    (int(change.send_delivery_receipts), user_id),
                )
            return Settings(bool(txn.scalar("SELECT send_delivery_receipts FROM users WHERE id = ?", (user_id,))))

        return self._db.run("profiles.update_settings", txn_fn)
