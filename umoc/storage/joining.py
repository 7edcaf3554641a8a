"""Joining groups (issue 29): the directory of public groups, joins, and requests to join.

A group's ``join_rule`` (migration 020) says how outsiders get in:
``invite`` (only added by an admin), ``open`` (``join_group`` joins at
once) or ``request`` (a ``join_requests`` row until a moderator approves or
rejects it).  Each join locks the group's row first, as every membership
change does.  A request is told to the group's moderators and above through
their own feed streams (one row each, ``join_requested``), and a rejection
to the requester through theirs (``join_rejected``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from umoc.credentials import token_digest
from umoc.errors import RefusedError
from umoc.records.groups import USER_BANNED, GroupMember, MemberLimits, NewInviteLink, member_cap
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Txn
from umoc.storage.groups import (
    active_ban_txn,
    insert_member_txn,
    lock_members_txn,
    staff_txn,
    told_of_members_txn,
    told_txn,
)
from umoc.storage.messages import UNKNOWN_CHAT

__all__ = ["InviteLink", "Joined", "JoiningStore", "PublicGroup"]

NOT_OPEN = "This group is not open"
BANNED = "You are banned from this group"
ALREADY = "Already a member"
NO_REQUEST = "No such join request"
INVALID_INVITE = "Invalid or expired invite"
#: Characters of a code kept in clear, to tell links apart in ``invite_links``.
CODE_PREFIX = 6


@dataclass(frozen=True, slots=True)
class PublicGroup:
    """One group of the directory."""

    chat_id: int
    name: str
    topic: str
    member_count: int
    kind: str
    join_rule: str
    avatar_file_id: str | None = None


@dataclass(frozen=True, slots=True)
class Joined:
    """A join (``status`` "joined": ``told`` are the members now) or a request ("requested": ``told`` are
    the moderators and above to tell); ``username`` the joiner's."""

    status: str
    username: str
    told: list[int]


def _public_txn(txn: Txn, query: str | None, after: int, limit: int) -> list[PublicGroup]:
    sql = (
        "SELECT id, name, topic, member_count, kind, join_rule, avatar_file_id FROM chats"
        " WHERE visibility = 'public' AND closed_at IS NULL AND is_group = 1 AND id > ?"
    )
    params: list[Any] = [after]
    if query:
        pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sql += " AND (LOWER(name) LIKE ? ESCAPE '\\' OR LOWER(topic) LIKE ? ESCAPE '\\')"
        params += [pattern, pattern]
    rows = txn.execute(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
    return [
        PublicGroup(
            int(r["id"]), r["name"], r["topic"], int(r["member_count"]), r["kind"], r["join_rule"], r["avatar_file_id"]
        )
        for r in rows
    ]


def _join_txn(
    txn: Txn, group_id: int, user_id: int, now: float, limits: int | MemberLimits, invited: bool = False
) -> Joined:
    """Join (``invited``: by an invite link, as to an ``open`` group whatever the rule) or ask to.

    The members are not read (a broadcast may have 100,000): the joiner's own
    row, the count kept on the chat row (locked), and whom to tell (`told_txn`).
    """
    row = txn.execute(
        "SELECT visibility, join_rule, kind, member_count FROM chats WHERE id = ? AND is_group = 1"
        " AND closed_at IS NULL" + txn.dialect.for_update,
        (group_id,),
    ).fetchone()
    if row is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    if txn.scalar("SELECT 1 FROM user_chats WHERE chat_id = ? AND user_id = ?", (group_id, user_id)) is not None:
        raise RefusedError(ALREADY, code="conflict")
    if row["join_rule"] == "invite" and not invited:
        # A private group by invitation is not there for outsiders at all.
        if row["visibility"] != "public":
            raise RefusedError(UNKNOWN_CHAT, code="not_found")
        raise RefusedError(NOT_OPEN, code="forbidden")
    if active_ban_txn(txn, group_id, user_id, now):
        raise RefusedError(BANNED, code="forbidden")
    max_members = member_cap(limits, row["kind"])
    if int(row["member_count"]) + 1 > max_members:
        raise RefusedError(f"A group has at most {max_members} members", code="conflict")
    username = txn.scalar("SELECT username FROM users WHERE id = ?", (user_id,))
    if row["join_rule"] == "open" or invited:
        insert_member_txn(txn, group_id, user_id, None, now)
        return Joined("joined", username, told_txn(txn, group_id, row["kind"], user_id))
    moderators = staff_txn(txn, group_id)
    asked = txn.scalar("SELECT 1 FROM join_requests WHERE chat_id = ? AND user_id = ?", (group_id, user_id))
    if asked is None:
        txn.execute(
            "INSERT INTO join_requests (chat_id, user_id, created_at) VALUES (?, ?, ?)", (group_id, user_id, now)
        )
        for moderator in moderators:
            record_txn(
                txn,
                NewChange("join_requested", now, user_id=moderator, actor_id=user_id, data={"chat_id": group_id}),
            )
        # Once per request, in no stream: the ``group.join_requested`` webhook.
        record_txn(txn, NewChange("join_request", now, actor_id=user_id, data={"chat_id": group_id}))
    return Joined("requested", username, moderators if asked is None else [])


def _answer_txn(
    txn: Txn, actor_id: int, request: GroupMember, approve: bool, now: float, limits: int | MemberLimits
) -> tuple[str, list[int]]:
    """Approve or reject a request: the requester's username and the members now."""
    group_id, user_id = request.chat_id, request.user_id
    members = lock_members_txn(txn, group_id, actor_id, "moderate")
    asked = txn.scalar("SELECT 1 FROM join_requests WHERE chat_id = ? AND user_id = ?", (group_id, user_id))
    if asked is None:
        raise RefusedError(NO_REQUEST, code="not_found")
    txn.execute("DELETE FROM join_requests WHERE chat_id = ? AND user_id = ?", (group_id, user_id))
    username = txn.scalar("SELECT username FROM users WHERE id = ?", (user_id,))
    if not approve:
        record_txn(txn, NewChange("join_rejected", now, user_id=user_id, actor_id=actor_id, data={"chat_id": group_id}))
        return username, list(members)
    if user_id in members:
        raise RefusedError(ALREADY, code="conflict")
    if active_ban_txn(txn, group_id, user_id, now):
        raise RefusedError(USER_BANNED, code="forbidden")
    max_members = member_cap(limits, txn.scalar("SELECT kind FROM chats WHERE id = ?", (group_id,)))
    if len(members) + 1 > max_members:
        raise RefusedError(f"A group has at most {max_members} members", code="conflict")
    insert_member_txn(txn, group_id, user_id, actor_id, now)
    return username, told_of_members_txn(txn, group_id, members, user_id)


@dataclass(frozen=True, slots=True)
class InviteLink:
    """A link as lists show it: ``code`` only when just created (only its digest is stored)."""

    link_id: int
    chat_id: int
    code: str | None
    code_prefix: str
    uses: int
    max_uses: int | None
    expires_at: float | None
    created_by: int | None
    created_at: float


def _link(row: Any, code: str | None = None) -> InviteLink:
    return InviteLink(
        int(row["id"]),
        int(row["chat_id"]),
        code,
        row["code_prefix"],
        int(row["uses"]),
        None if row["max_uses"] is None else int(row["max_uses"]),
        None if row["expires_at"] is None else float(row["expires_at"]),
        None if row["created_by"] is None else int(row["created_by"]),
        float(row["created_at"]),
    )


_LINK_COLUMNS = "id, chat_id, code_prefix, uses, max_uses, expires_at, created_by, created_at"


def _create_link_txn(txn: Txn, actor_id: int, link: NewInviteLink, code: str, now: float) -> InviteLink:
    lock_members_txn(txn, link.chat_id, actor_id, "manage_members")
    expires_at = None if link.expires_in is None else now + link.expires_in
    link_id = txn.scalar(
        "INSERT INTO group_invites (chat_id, code_hash, code_prefix, created_by, created_at, expires_at, max_uses)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (link.chat_id, token_digest(code), code[:CODE_PREFIX], actor_id, now, expires_at, link.max_uses),
    )
    row = txn.execute("SELECT " + _LINK_COLUMNS + " FROM group_invites WHERE id = ?", (link_id,)).fetchone()
    return _link(row, code)


def _links_txn(txn: Txn, group_id: int, actor_id: int, now: float) -> list[InviteLink]:
    """The links still usable, oldest first (admins and the owner)."""
    lock_members_txn(txn, group_id, actor_id, "manage_members", lock=False)
    rows = txn.execute(
        "SELECT " + _LINK_COLUMNS + " FROM group_invites WHERE chat_id = ? AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > ?) AND (max_uses IS NULL OR uses < max_uses) ORDER BY id",
        (group_id, now),
    ).fetchall()
    return [_link(r) for r in rows]


def _revoke_link_txn(
    txn: Txn, actor_id: int, code: str | None, now: float, link_id: int | None = None
) -> tuple[int, int]:
    """Revoke the link ``code`` (or ``link_id``); ``(its group, its id)``. Someone who may not manage the group
    learns nothing of it."""
    key: str | int | None
    if code is not None:
        where, key = "code_hash = ?", token_digest(code)
    else:
        where, key = "id = ?", link_id
    row = txn.execute(
        "SELECT id, chat_id FROM group_invites WHERE " + where + " AND revoked_at IS NULL", (key,)
    ).fetchone()
    if row is None:
        raise RefusedError(INVALID_INVITE, code="not_found")
    lock_members_txn(txn, int(row["chat_id"]), actor_id, "manage_members")
    txn.execute("UPDATE group_invites SET revoked_at = ? WHERE id = ?", (now, int(row["id"])))
    return int(row["chat_id"]), int(row["id"])


def _join_by_invite_txn(
    txn: Txn, code: str, user_id: int, now: float, limits: int | MemberLimits
) -> tuple[int, Joined]:
    row = txn.execute(
        "SELECT id, chat_id, expires_at, max_uses, uses FROM group_invites WHERE code_hash = ? AND revoked_at IS NULL"
        + txn.dialect.for_update,
        (token_digest(code),),
    ).fetchone()
    if (
        row is None
        or (row["expires_at"] is not None and float(row["expires_at"]) <= now)
        or (row["max_uses"] is not None and int(row["uses"]) >= int(row["max_uses"]))
    ):
        raise RefusedError(INVALID_INVITE, code="not_found")
    group_id = int(row["chat_id"])
    try:
        joined = _join_txn(txn, group_id, user_id, now, limits, invited=True)
    except RefusedError as refused:
        if refused.message == UNKNOWN_CHAT:  # the group closed since
            raise RefusedError(INVALID_INVITE, code="not_found") from None
        raise
    txn.execute("UPDATE group_invites SET uses = uses + 1 WHERE id = ?", (int(row["id"]),))
    return group_id, joined


class JoiningStore:
    """The directory, joins and join requests (rules checked inside each transaction)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def public(self, query: str | None, after: int, limit: int) -> defer.Deferred[list[PublicGroup]]:
        """Public groups with ids after ``after``, by id, whose name or topic contains ``query`` (any case)."""
        return self._db.read("joining.public", _public_txn, query, after, limit)

    def join(self, group_id: int, user_id: int, now: float, limits: int | MemberLimits) -> defer.Deferred[Joined]:
        """Join an open group, or ask to join one by request. Raises `RefusedError`."""
        return self._db.run("joining.join", _join_txn, group_id, user_id, now, limits)

    def answer(
        self, actor_id: int, request: GroupMember, approve: bool, now: float, limits: int | MemberLimits
    ) -> defer.Deferred[tuple[str, list[int]]]:
        """A moderator approves (the requester becomes a member) or rejects a request to join."""
        return self._db.run("joining.answer", _answer_txn, actor_id, request, approve, now, limits)

    def create_link(self, actor_id: int, link: NewInviteLink, code: str, now: float) -> defer.Deferred[InviteLink]:
        """A new invite link (admins and the owner), with ``code`` (a fresh secret: only its digest is kept)."""
        return self._db.run("joining.create_link", _create_link_txn, actor_id, link, code, now)

    def links(self, group_id: int, actor_id: int, now: float) -> defer.Deferred[list[InviteLink]]:
        """The group's usable links, without their codes."""
        return self._db.read("joining.links", _links_txn, group_id, actor_id, now)

    def revoke_link(
        self, actor_id: int, code: str | None, now: float, link_id: int | None = None
    ) -> defer.Deferred[tuple[int, int]]:
        """Revoke a link named by its code or its id; ``(the group it was for, its id)``."""
        return self._db.run("joining.revoke_link", _revoke_link_txn, actor_id, code, now, link_id)

    def join_by_invite(
        self, code: str, user_id: int, now: float, limits: int | MemberLimits
    ) -> defer.Deferred[tuple[int, Joined]]:
        """Join the link's group as an open group is joined; the group and the join."""
        return self._db.run("joining.join_by_invite", _join_by_invite_txn, code, user_id, now, limits)
