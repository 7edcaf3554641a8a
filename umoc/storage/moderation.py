"""Moderation in groups: bans and mutes (issue 29), each checked and written in one transaction.

A moderator (and above) bans or mutes members of a lower role.  A ban
removes the member (as leaving does, with its feed rows), may delete their
recent messages in the group, and keeps them from being added again until
it ends (``group_bans``, migration 020).  A mute sets ``user_chats.muted_until``,
which sending (`umoc.storage.messages.write`, migration 020's function),
reacting and typing read (`umoc.storage.standing`).  Permanent mutes are
stored as infinity, so one comparison with the time serves both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.records.groups import DELETE_WINDOWS, ROLE_REFUSED, Ban, Mute, may, outranks
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Txn
from umoc.storage.groups import (
    MembershipChange,
    active_ban_txn,
    lock_members_txn,
    remove_member_txn,
    told_of_members_txn,
)
from umoc.storage.messages import UNKNOWN_CHAT
from umoc.storage.messages.write import Deleted, LiveMessage, soft_delete_txn

__all__ = ["BanEntry", "Banned", "ModerationStore", "Muted"]

NOT_A_MEMBER = "This user is not a member"


@dataclass(frozen=True, slots=True)
class BanEntry:
    """One ban in force: ``until`` None lasts until lifted; ``by`` the moderator."""

    user_id: int
    username: str
    until: float | None
    reason: str | None
    by: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Banned:
    """A ban made: the entry, the removal it made, and the messages it deleted (in order)."""

    ban: BanEntry
    removal: MembershipChange
    deleted: list[Deleted]


@dataclass(frozen=True, slots=True)
class Muted:
    """A mute set or lifted: the members to tell and ``until`` (None: until unmuted)."""

    members: list[int]
    until: float | None


def _target(members: dict[int, str], actor_id: int, user_id: int) -> None:
    """Refuse unless ``user_id`` is a member below the actor (a moderator or above: checked by the lock)."""
    if user_id not in members:
        raise RefusedError(NOT_A_MEMBER, code="not_found")
    if not outranks(members[actor_id], members[user_id]):
        raise RefusedError(ROLE_REFUSED, code="forbidden")


def _ban_txn(txn: Txn, actor_id: int, ban: Ban, now: float, operator: bool = False) -> Banned:
    """A moderator's ban of a lower member; with ``operator``, a server administrator's (resolving a report).

    An administrator need not be a member and outranks every role; the
    reported user may have left the group already: the ban is recorded all
    the same (they cannot come back), with nothing to remove.
    """
    group_id, user_id = ban.chat_id, ban.user_id
    if operator:
        members = _operator_lock_txn(txn, group_id)
    else:
        members = lock_members_txn(txn, group_id, actor_id, "moderate")
        _target(members, actor_id, user_id)
    deleted = []
    window = DELETE_WINDOWS[ban.delete_messages]
    if window is not None:
        since = -1.0 if math.isinf(window) else now - window
        rows = txn.execute(
            "SELECT seq, id FROM messages WHERE chat_id = ? AND sender_id = ? AND deleted_at IS NULL"
            " AND created_at >= ? ORDER BY seq",
            (group_id, user_id, since),
        ).fetchall()
        deleted = [
            soft_delete_txn(txn, LiveMessage(int(r["seq"]), group_id, user_id, r["id"]), actor_id, now) for r in rows
        ]
    until = None if ban.duration is None else now + ban.duration
    txn.execute("DELETE FROM group_bans WHERE chat_id = ? AND user_id = ?", (group_id, user_id))
    txn.execute(
        "INSERT INTO group_bans (chat_id, user_id, until, reason, banned_by, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (group_id, user_id, until, ban.reason, actor_id, now),
    )
    # Before the removal: the banned user reads it in the group's stream, as the last change there.
    record_txn(
        txn,
        NewChange(
            "member_banned",
            now,
            chat_id=group_id,
            actor_id=user_id,
            data={"until": until, "reason": ban.reason, "by": actor_id},
        ),
    )
    if user_id in members:
        removal = remove_member_txn(txn, group_id, user_id, user_id, now)
    else:
        removal = MembershipChange(list(members), None, False)
    username = txn.scalar("SELECT username FROM users WHERE id = ?", (user_id,))
    return Banned(BanEntry(user_id, username, until, ban.reason, actor_id, now), removal, deleted)


def _operator_lock_txn(txn: Txn, group_id: int) -> dict[int, str]:
    """``{member: role}`` of an open group, locked, for an administrator who may not be a member."""
    locked = txn.execute(
        "SELECT id FROM chats WHERE id = ? AND is_group = 1 AND closed_at IS NULL" + txn.dialect.for_update,
        (group_id,),
    ).fetchone()
    if locked is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    rows = txn.execute("SELECT user_id, role FROM user_chats WHERE chat_id = ?", (group_id,)).fetchall()
    return {int(r["user_id"]): r["role"] for r in rows}


def _unban_txn(txn: Txn, group_id: int, actor_id: int, user_id: int, now: float) -> None:
    lock_members_txn(txn, group_id, actor_id, "moderate")
    if not active_ban_txn(txn, group_id, user_id, now):
        raise RefusedError("This user is not banned", code="not_found")
    txn.execute("DELETE FROM group_bans WHERE chat_id = ? AND user_id = ?", (group_id, user_id))


def _bans_txn(txn: Txn, group_id: int, viewer_id: int, now: float) -> list[BanEntry]:
    role = txn.scalar(
        "SELECT uc.role FROM user_chats uc JOIN chats c ON c.id = uc.chat_id"
        " WHERE uc.chat_id = ? AND uc.user_id = ? AND c.closed_at IS NULL",
        (group_id, viewer_id),
    )
    if role is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    if not may(role, "moderate"):
        raise RefusedError(ROLE_REFUSED, code="forbidden")
    rows = txn.execute(
        "SELECT b.user_id, u.username, b.until, b.reason, b.banned_by, b.created_at FROM group_bans b"
        " JOIN users u ON u.id = b.user_id WHERE b.chat_id = ? AND (b.until IS NULL OR b.until > ?)"
        " ORDER BY b.created_at, b.user_id",
        (group_id, now),
    ).fetchall()
    return [
        BanEntry(
            int(r["user_id"]),
            r["username"],
            None if r["until"] is None else float(r["until"]),
            r["reason"],
            None if r["banned_by"] is None else int(r["banned_by"]),
            float(r["created_at"]),
        )
        for r in rows
    ]


def _mute_txn(txn: Txn, actor_id: int, mute: Mute, lift: bool, now: float) -> Muted:
    """Mute (``lift`` False) or unmute; the feed row ``member_muted`` says until when (now, when lifted)."""
    group_id, user_id = mute.chat_id, mute.user_id
    members = lock_members_txn(txn, group_id, actor_id, "moderate")
    _target(members, actor_id, user_id)
    until: float | None
    if lift:
        until, stored = now, None
    else:
        until = None if mute.duration is None else now + mute.duration
        stored = math.inf if until is None else until
    txn.execute("UPDATE user_chats SET muted_until = ? WHERE chat_id = ? AND user_id = ?", (stored, group_id, user_id))
    record_txn(
        txn,
        NewChange("member_muted", now, chat_id=group_id, actor_id=user_id, data={"until": until, "by": actor_id}),
    )
    return Muted(told_of_members_txn(txn, group_id, members, user_id), until)


class ModerationStore:
    """Bans and mutes (rules checked inside each transaction)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def ban(self, actor_id: int, ban: Ban, now: float, operator: bool = False) -> defer.Deferred[Banned]:
        """Ban a lower member: their messages deleted as asked, then removed. Raises `RefusedError`.

        ``operator``: a server administrator's ban (a report resolved with ``ban_member``): no role check.
        """
        return self._db.run("moderation.ban", _ban_txn, actor_id, ban, now, operator)

    def unban(self, group_id: int, actor_id: int, user_id: int, now: float) -> defer.Deferred[None]:
        """Lift a ban in force (moderators and above)."""
        return self._db.run("moderation.unban", _unban_txn, group_id, actor_id, user_id, now)

    def bans(self, group_id: int, viewer_id: int, now: float) -> defer.Deferred[list[BanEntry]]:
        """The bans in force, oldest first (moderators and above)."""
        return self._db.read("moderation.bans", _bans_txn, group_id, viewer_id, now)

    def mute(self, actor_id: int, mute: Mute, now: float) -> defer.Deferred[Muted]:
        """Mute a lower member for ``mute.duration`` (None: until unmuted)."""
        return self._db.run("moderation.mute", _mute_txn, actor_id, mute, False, now)

    def unmute(self, actor_id: int, mute: Mute, now: float) -> defer.Deferred[Muted]:
        """Lift a mute (``until`` in the answer is now)."""
        return self._db.run("moderation.unmute", _mute_txn, actor_id, mute, True, now)
