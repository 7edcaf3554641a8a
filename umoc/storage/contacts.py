"""Contacts: requests, friendships, blocks, and the streak kept on each friendship."""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Row, Txn, in_clause
from umoc.storage.relations import BLOCKED, FRIEND, NEW, ensure_direct_chat_txn, statuses_txn
from umoc.streaks import shown

__all__ = ["Contact", "ContactStore"]


@dataclass(frozen=True, slots=True)
class Contact:
    """One of ``owner``'s contacts, as ``owner`` sees it."""

    user_id: int
    username: str
    #: The owner's own row: NEW, FRIEND or BLOCKED.
    status: str
    #: Who sent the request (meaningful while NEW).
    requester_id: int
    #: Both rows FRIEND: the only case in which presence and streaks are shown.
    mutual_friend: bool
    last_seen: float | None
    streak: int
    streak_last_day: int | None
    display_name: str | None = None
    avatar_file_id: str | None = None

    def streak_on(self, today: int) -> tuple[int, bool]:
        if not self.mutual_friend:
            return 0, False
        return shown(self.streak, self.streak_last_day, today)


_CONTACT_COLUMNS = (
    "c.contact_id, u.username, c.status, c.requester_id, r.status AS reverse_status, u.last_seen, c.streak,"
    " c.streak_last_day, u.display_name, u.avatar_file_id"
    " FROM contacts c JOIN users u ON u.id = c.contact_id"
    " LEFT JOIN contacts r ON r.owner_id = c.contact_id AND r.contact_id = c.owner_id"
)


def _contact(row: Row) -> Contact:
    return Contact(
        user_id=int(row["contact_id"]),
        username=row["username"],
        status=row["status"],
        requester_id=int(row["requester_id"]),
        mutual_friend=row["status"] == FRIEND and row["reverse_status"] == FRIEND,
        last_seen=row["last_seen"],
        streak=int(row["streak"]),
        streak_last_day=row["streak_last_day"],
        display_name=row["display_name"],
        avatar_file_id=row["avatar_file_id"],
    )


def _contact_change(
    owner_id: int, other_id: int, event: str, status: str | None, now: float, accepted_by: int | None = None
) -> NewChange:
    """A ``contact`` change in ``owner_id``'s own stream: the live event ``owner_id`` got, about ``other_id``."""
    data: dict[str, object] = {"event": event, "status": status}
    if accepted_by is not None:
        data["accepted_by"] = accepted_by
    return NewChange("contact", now, user_id=owner_id, actor_id=other_id, data=data)


def _user_txn(txn: Txn, user_id: int) -> tuple[int, str] | None:
    """A live account's ``(id, username)``; None for an unknown or deleted one."""
    row = txn.execute("SELECT id, username FROM users WHERE id = ? AND deleted_at IS NULL", (user_id,)).fetchone()
    return None if row is None else (int(row["id"]), row["username"])


def _add_txn(txn: Txn, requester_id: int, username: str, now: float) -> tuple[int, str]:
    row = txn.execute(
        "SELECT id, username FROM users WHERE LOWER(username) = LOWER(?) AND deleted_at IS NULL", (username,)
    ).fetchone()
    if row is None:
        raise RefusedError("User not found", code="not_found")
    target_id, target_name = int(row["id"]), row["username"]
    if target_id == requester_id:
        raise RefusedError("You cannot add yourself as a contact", code="invalid_argument")
    mine, theirs = statuses_txn(txn, requester_id, target_id, lock=True)
    if BLOCKED in (mine, theirs):
        raise RefusedError("You cannot add this user", code="forbidden")
    if mine == FRIEND:
        raise RefusedError("This user is already your contact", code="conflict")
    if mine == NEW or theirs == NEW:
        raise RefusedError("A contact request between you and this user is already pending", code="conflict")
    txn.executemany(
        "INSERT INTO contacts (owner_id, contact_id, status, requester_id, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (requester_id, target_id, NEW, requester_id, now, now),
            (target_id, requester_id, NEW, requester_id, now, now),
        ],
    )
    record_txn(
        txn,
        _contact_change(requester_id, target_id, "contact_added", NEW, now),
        _contact_change(target_id, requester_id, "contact_request", NEW, now),
    )
    return target_id, target_name


def _pending_request_txn(txn: Txn, user_id: int, requester_id: int) -> tuple[int, str]:
    """The request ``requester_id`` sent ``user_id``, locked; RefusedError if there is none."""
    row = txn.execute(
        "SELECT c.requester_id, u.username FROM contacts c JOIN users u ON u.id = c.contact_id"
        " WHERE c.owner_id = ? AND c.contact_id = ? AND c.status = ?" + txn.dialect.for_update,
        (user_id, requester_id, NEW),
    ).fetchone()
    if row is None or int(row["requester_id"]) != requester_id:
        raise RefusedError("No pending contact request from this user", code="not_found")
    return requester_id, row["username"]


def _accept_txn(txn: Txn, user_id: int, requester_id: int, now: float) -> tuple[int, str]:
    other = _pending_request_txn(txn, user_id, requester_id)
    txn.execute(
        "UPDATE contacts SET status = ?, updated_at = ? WHERE (owner_id = ? AND contact_id = ?)"
        " OR (owner_id = ? AND contact_id = ?)",
        (FRIEND, now, user_id, requester_id, requester_id, user_id),
    )
    ensure_direct_chat_txn(txn, user_id, requester_id, now)
    # The accepter's own row is the one the ``contact.accepted`` webhook is rendered from.
    record_txn(
        txn,
        _contact_change(user_id, requester_id, "contact_accepted", FRIEND, now, accepted_by=user_id),
        _contact_change(requester_id, user_id, "contact_accepted", FRIEND, now, accepted_by=user_id),
    )
    return other


def _reject_txn(txn: Txn, user_id: int, requester_id: int, now: float) -> None:
    _pending_request_txn(txn, user_id, requester_id)
    txn.execute(
        "DELETE FROM contacts WHERE (owner_id = ? AND contact_id = ?) OR (owner_id = ? AND contact_id = ?)",
        (user_id, requester_id, requester_id, user_id),
    )
    record_txn(
        txn,
        _contact_change(user_id, requester_id, "contact_rejected", None, now),
        _contact_change(requester_id, user_id, "contact_rejected", None, now),
    )


def _block_txn(txn: Txn, user_id: int, target_id: int, now: float) -> None:
    if target_id == user_id:
        raise RefusedError("You cannot block yourself", code="invalid_argument")
    if _user_txn(txn, target_id) is None:
        raise RefusedError("User not found", code="not_found")
    mine, theirs = statuses_txn(txn, user_id, target_id, lock=True)
    if mine is None:
        txn.execute(
            "INSERT INTO contacts (owner_id, contact_id, status, requester_id, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, target_id, BLOCKED, user_id, now, now),
        )
    elif mine != BLOCKED:
        txn.execute(
            "UPDATE contacts SET status = ?, updated_at = ?, streak = 0, streak_last_day = NULL"
            " WHERE owner_id = ? AND contact_id = ?",
            (BLOCKED, now, user_id, target_id),
        )
    if theirs is not None and theirs != BLOCKED:
        # The blocked user loses the contact: no presence, no messages, no request.
        txn.execute("DELETE FROM contacts WHERE owner_id = ? AND contact_id = ?", (target_id, user_id))
    # Only the blocker is told, live and in the feed.
    record_txn(txn, _contact_change(user_id, target_id, "contact_blocked", BLOCKED, now))


def _unblock_txn(txn: Txn, user_id: int, target_id: int, now: float) -> tuple[int, str]:
    """Drop the user's block; the two are strangers afterwards (a new request starts over)."""
    user = _user_txn(txn, target_id)
    if user is None:
        raise RefusedError("User not found", code="not_found")
    mine, _theirs = statuses_txn(txn, user_id, target_id, lock=True)
    if mine != BLOCKED:
        raise RefusedError("This user is not blocked", code="conflict")
    txn.execute("DELETE FROM contacts WHERE owner_id = ? AND contact_id = ?", (user_id, target_id))
    record_txn(txn, _contact_change(user_id, target_id, "contact_unblocked", None, now))
    return user


def _remove_txn(txn: Txn, user_id: int, target_id: int, now: float) -> None:
    """End a friendship or a pending request, both sides; the direct chat and its history stay."""
    mine, theirs = statuses_txn(txn, user_id, target_id, lock=True)
    if mine == BLOCKED:
        raise RefusedError("You have blocked this user: use unblock_contact", code="conflict")
    if mine is None or theirs is None or theirs == BLOCKED:
        raise RefusedError("This user is not your contact", code="not_found")
    txn.execute(
        "DELETE FROM contacts WHERE (owner_id = ? AND contact_id = ?) OR (owner_id = ? AND contact_id = ?)",
        (user_id, target_id, target_id, user_id),
    )
    record_txn(
        txn,
        _contact_change(user_id, target_id, "contact_removed", None, now),
        _contact_change(target_id, user_id, "contact_removed", None, now),
    )


def friend_ids_of_txn(txn: Txn, user_ids: list[int]) -> dict[int, list[int]]:
    """The friends (both ways) of each of ``user_ids``: every one of them a key, friendless or not."""
    found: dict[int, list[int]] = {user_id: [] for user_id in user_ids}
    rows = txn.execute(
        "SELECT c.owner_id, c.contact_id FROM contacts c JOIN contacts r"
        " ON r.owner_id = c.contact_id AND r.contact_id = c.owner_id"
        " WHERE c.owner_id IN " + in_clause(user_ids) + " AND c.status = ? AND r.status = ?",
        (*user_ids, FRIEND, FRIEND),
    ).fetchall()
    for r in rows:
        found[int(r["owner_id"])].append(int(r["contact_id"]))
    return found


class ContactStore:
    """Queries and changes on the contacts table; rules that need atomicity live in the txns."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def list(self, owner_id: int) -> defer.Deferred[list[Contact]]:
        """All of ``owner_id``'s contacts, by username."""

        def txn_fn(txn: Txn) -> list[Contact]:
            rows = txn.execute(
                "SELECT " + _CONTACT_COLUMNS + " WHERE c.owner_id = ? ORDER BY LOWER(u.username)", (owner_id,)
            ).fetchall()
            return [_contact(r) for r in rows]

        return self._db.read("contacts.list", txn_fn)

    def get(self, owner_id: int, contact_id: int) -> defer.Deferred[Contact | None]:
        def txn_fn(txn: Txn) -> Contact | None:
            row = txn.execute(
                "SELECT " + _CONTACT_COLUMNS + " WHERE c.owner_id = ? AND c.contact_id = ?", (owner_id, contact_id)
            ).fetchone()
            return None if row is None else _contact(row)

        return self._db.read("contacts.get", txn_fn)

    def request(self, requester_id: int, username: str, now: float) -> defer.Deferred[tuple[int, str]]:
        """Send a request to ``username``; ``(user_id, username)`` of the target. Raises `RefusedError`."""
        return self._db.run("contacts.request", _add_txn, requester_id, username, now)

    def accept(self, user_id: int, requester_id: int, now: float) -> defer.Deferred[tuple[int, str]]:
        """Accept ``requester_id``'s request (and open the direct chat); ``(id, username)`` of the requester."""
        return self._db.run("contacts.accept", _accept_txn, user_id, requester_id, now)

    def reject(self, user_id: int, requester_id: int, now: float) -> defer.Deferred[None]:
        """Drop ``requester_id``'s request to ``user_id``; both rows go."""
        return self._db.run("contacts.reject", _reject_txn, user_id, requester_id, now)

    def block(self, user_id: int, target_id: int, now: float) -> defer.Deferred[None]:
        return self._db.run("contacts.block", _block_txn, user_id, target_id, now)

    def unblock(self, user_id: int, target_id: int, now: float) -> defer.Deferred[tuple[int, str]]:
        """Lift the user's block of ``target_id``; ``(id, username)``. Raises `RefusedError`."""
        return self._db.run("contacts.unblock", _unblock_txn, user_id, target_id, now)

    def remove(self, user_id: int, target_id: int, now: float) -> defer.Deferred[None]:
        """Unfriend (or withdraw / decline a pending request): both rows go. Raises `RefusedError`."""
        return self._db.run("contacts.remove", _remove_txn, user_id, target_id, now)

    def friend_ids(self, user_id: int) -> defer.Deferred[builtins.list[int]]:  # `list` is a method here
        """Users who are ``user_id``'s friends both ways (so neither blocked the other)."""

        def txn_fn(txn: Txn) -> list[int]:
            return friend_ids_of_txn(txn, [user_id])[user_id]

        return self._db.read("contacts.friend_ids", txn_fn)

    def friend_ids_of(self, user_ids: builtins.list[int]) -> defer.Deferred[dict[int, builtins.list[int]]]:
        """`friend_ids` of each of ``user_ids`` in one read (every one of them a key, friendless or not)."""
        return self._db.read("contacts.friend_ids_of", friend_ids_of_txn, user_ids)

    def blocked_between(self, a: int, b: int) -> defer.Deferred[bool]:
        """Whether either user blocked the other."""

        def txn_fn(txn: Txn) -> bool:
            return BLOCKED in statuses_txn(txn, a, b)

        return self._db.read("contacts.blocked_between", txn_fn)

    def statuses(self, a: int, b: int) -> defer.Deferred[tuple[str | None, str | None]]:
        """(a's status for b, b's status for a)."""
        return self._db.read("contacts.statuses", statuses_txn, a, b)
