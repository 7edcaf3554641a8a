"""Group chats: creation, membership, roles.

A group is a row of ``chats`` (``is_group = 1``) whose id is the group id
clients see; its members are its ``user_chats`` rows, each with its
``role`` (migration 020; ``is_admin`` kept true for owner and admin).
Every membership or role change locks the group's row first, as sending a
group message does, so a message is delivered to exactly the members of the
moment it was stored, and checked against the sender's role of that moment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.records.groups import (
    PUBLIC_REFUSED,
    ROLE_REFUSED,
    ROLES,
    USER_BANNED,
    Action,
    GroupChange,
    MemberLimits,
    NewGroup,
    may,
    member_cap,
    outranks,
)
from umoc.records.messages import extra_text
from umoc.storage.changes import NewChange, record_returning_id_txn, record_txn
from umoc.storage.database import Database, Txn, in_clause
from umoc.storage.files import check_avatar_txn
from umoc.storage.messages import UNKNOWN_CHAT, group_members_txn
from umoc.storage.relations import BLOCKED, FRIEND
from umoc.storage.standing import require_standing_txn

__all__ = [
    "MEMBERSHIP_KINDS",
    "GroupInfo",
    "GroupMember",
    "GroupStore",
    "MembersPage",
    "MembershipChange",
    "RoleChanged",
    "active_ban_txn",
    "hears_of_change_sql",
    "info_txn",
    "insert_member_txn",
    "lock_members_txn",
    "remove_member_txn",
    "staff_txn",
    "told_of_members_txn",
    "told_txn",
]


@dataclass(frozen=True, slots=True)
class GroupMember:
    user_id: int
    username: str
    last_seen: float | None
    role: str
    display_name: str | None = None
    avatar_file_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """What payloads keep calling ``is_admin``: owner or admin."""
        return self.role in ("owner", "admin")


@dataclass(frozen=True, slots=True)
class GroupInfo:
    id: int
    name: str
    description: str | None
    created_at: float
    members: list[GroupMember]
    #: (blocker, blocked) between members: a block hides presence both ways.
    blocks: frozenset[tuple[int, int]]
    #: visibility, join_rule, kind, topic, slow_mode, read_only (`umoc.records.groups.SETTINGS`).
    settings: dict[str, Any] = field(default_factory=dict)
    #: How many members the group has (``members`` may list only the first of them).
    member_count: int = 0
    #: The role of a viewer the list stopped before.
    unlisted: dict[int, str] = field(default_factory=dict)
    #: The app's custom data (None: none).
    extra: dict[str, Any] | None = None

    def presence_visible(self, viewer_id: int, member_id: int) -> bool:
        return (viewer_id, member_id) not in self.blocks and (member_id, viewer_id) not in self.blocks

    def is_admin(self, user_id: int) -> bool:
        return self.role(user_id) in ("owner", "admin")

    def role(self, user_id: int) -> str | None:
        """``user_id``'s role (None: not a member)."""
        return next((m.role for m in self.members if m.user_id == user_id), self.unlisted.get(user_id))


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """``user_id`` now has ``role``, set by ``by`` (None: automatically, when the owner left)."""

    user_id: int
    role: str
    by: int | None


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """Who is in the group after a change, and whose role changed because of it (a new owner)."""

    members: list[int]
    promoted: RoleChanged | None
    closed: bool


def lock_members_txn(txn: Txn, group_id: int, user_id: int, action: Action | None, lock: bool = True) -> dict[int, str]:
    """``{member: role}`` of an open group, locked; RefusedError unless ``user_id`` is a member allowed ``action``."""
    locked = txn.execute(
        "SELECT id FROM chats WHERE id = ? AND is_group = 1 AND closed_at IS NULL"
        + (txn.dialect.for_update if lock else ""),
        (group_id,),
    ).fetchone()
    if locked is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    rows = txn.execute("SELECT user_id, role FROM user_chats WHERE chat_id = ?", (group_id,)).fetchall()
    members = {int(r["user_id"]): r["role"] for r in rows}
    if user_id not in members:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    if action is not None and not may(members[user_id], action):
        raise RefusedError(ROLE_REFUSED, code="forbidden")
    return members


#: Who posts in a broadcast, and so who types and sees typing there (`umoc.storage.standing`), and who hears of
#: its membership changes.
_POSTERS = ("owner", "admin", "moderator")

#: The feed kinds of a membership change (a join, a leave, a role, a ban, a mute), each about its ``actor_id``.
MEMBERSHIP_KINDS = ("member_added", "member_removed", "member_role", "member_banned", "member_muted")


def _sql_list(names: tuple[str, ...]) -> str:
    """A literal SQL list of this module's constant names (never of a value from outside)."""
    return "(" + ", ".join(f"'{name}'" for name in names) + ")"


def hears_of_change_sql(change: str, reader: str, role: str | None, chat: str) -> str:
    """SQL true when the reader hears of the change, `told_of_members_txn`'s rule for the change feed.

    ``change``, ``reader``, ``role``, ``chat``: expressions for the change row, the reader's id, their role in
    the group (None: a former member, read as a reader) and the chat row.  In a ``broadcast`` a reader reads
    no membership change but those about themselves; anything else, and anyone else, reads them all.
    """
    staff = "" if role is None else f" OR {role} IN {_sql_list(_POSTERS)}"
    return (
        f"({chat}.kind <> 'broadcast'{staff} OR {change}.kind NOT IN {_sql_list(MEMBERSHIP_KINDS)}"
        f" OR {change}.actor_id = {reader})"
    )


def told_of_members_txn(txn: Txn, group_id: int, members: dict[int, str], *also: int) -> list[int]:
    """Who hears of a membership change (a join, a leave, a role, a mute, a ban): every member, and ``also``.

    In a ``broadcast`` only those who post (moderators and above) and ``also``
    (the member the change is about): its readers, up to
    ``groups.max_members_broadcast`` of them, hear of no one else's comings
    and goings, so a join costs O(staff) deliveries, not O(audience).
    """
    told = dict.fromkeys(members)
    if txn.scalar("SELECT kind FROM chats WHERE id = ?", (group_id,)) == "broadcast":
        told = dict.fromkeys(m for m, role in members.items() if role in _POSTERS)
    told.update(dict.fromkeys(also))
    return list(told)


def staff_txn(txn: Txn, group_id: int) -> list[int]:
    """The group's moderators and above (who post in a broadcast and moderate): by the partial index of
    migration 026, however large the audience."""
    rows = txn.execute(
        "SELECT user_id FROM user_chats WHERE chat_id = ? AND role IN " + in_clause(_POSTERS), (group_id, *_POSTERS)
    ).fetchall()
    return [int(r["user_id"]) for r in rows]


def told_txn(txn: Txn, group_id: int, kind: str, *also: int) -> list[int]:
    """`told_of_members_txn` for a caller that has not read the members: read only those it needs."""
    if kind == "broadcast":
        return list(dict.fromkeys([*staff_txn(txn, group_id), *also]))
    rows = txn.execute("SELECT user_id FROM user_chats WHERE chat_id = ?", (group_id,)).fetchall()
    return list(dict.fromkeys([*(int(r["user_id"]) for r in rows), *also]))


def active_ban_txn(txn: Txn, group_id: int, user_id: int, now: float) -> bool:
    """Whether a ban of ``user_id`` from the group holds at ``now`` (``group_bans``, `umoc.storage.moderation`)."""
    row = txn.execute("SELECT until FROM group_bans WHERE chat_id = ? AND user_id = ?", (group_id, user_id)).fetchone()
    return row is not None and (row["until"] is None or float(row["until"]) > now)


def _set_role_txn(txn: Txn, group_id: int, user_id: int, role: str, by: int | None, now: float) -> RoleChanged:
    """Write ``user_id``'s new role (and ``is_admin`` with it) and its feed row, ``member_role``."""
    txn.execute(
        "UPDATE user_chats SET role = ?, is_admin = ? WHERE chat_id = ? AND user_id = ?",
        (role, int(role in ("owner", "admin")), group_id, user_id),
    )
    record_txn(txn, NewChange("member_role", now, chat_id=group_id, actor_id=user_id, data={"role": role, "by": by}))
    return RoleChanged(user_id, role, by)


def _check_friends_txn(txn: Txn, user_id: int, others: list[int]) -> dict[int, str]:
    """``{id: username}`` of ``others``; RefusedError unless each is ``user_id``'s friend both ways.

    Without ``txn.rules.require_friendship`` (``contacts.require_friendship: false``): unless each is a
    user no block separates from ``user_id``.
    """
    if not others:
        return {}
    if not txn.rules.require_friendship:
        return _check_unblocked_txn(txn, user_id, others)
    rows = txn.execute(
        "SELECT c.contact_id, u.username FROM contacts c"
        " JOIN contacts r ON r.owner_id = c.contact_id AND r.contact_id = c.owner_id"
        " JOIN users u ON u.id = c.contact_id"
        " WHERE c.owner_id = ? AND c.status = ? AND r.status = ? AND c.contact_id IN " + in_clause(others),
        [user_id, FRIEND, FRIEND, *others],
    ).fetchall()
    found = {int(r["contact_id"]): r["username"] for r in rows}
    if len(found) != len(others):
        raise RefusedError("You can only add your friends to a group", code="forbidden")
    return found


def _require_server_admin_txn(txn: Txn, user_id: int) -> None:
    """``groups.public_creation: admins``: refuse a public group to a user who is not a server administrator."""
    if not txn.scalar("SELECT is_admin FROM users WHERE id = ?", (user_id,)):
        raise RefusedError(PUBLIC_REFUSED, code="forbidden")


def _check_unblocked_txn(txn: Txn, user_id: int, others: list[int]) -> dict[int, str]:
    found = {
        int(r["id"]): r["username"]
        for r in txn.execute(
            "SELECT id, username FROM users WHERE deleted_at IS NULL AND id IN " + in_clause(others), others
        ).fetchall()
    }
    blocked = txn.execute(
        "SELECT 1 FROM contacts WHERE status = ? AND ((owner_id = ? AND contact_id IN "
        + in_clause(others)
        + ") OR (contact_id = ? AND owner_id IN "
        + in_clause(others)
        + ")) LIMIT 1",
        [BLOCKED, user_id, *others, user_id, *others],
    ).fetchone()
    if len(found) != len(others) or blocked is not None:
        raise RefusedError("You cannot add this user to a group", code="forbidden")
    return found


def _create_txn(
    txn: Txn,
    creator_id: int,
    group: NewGroup,
    now: float,
    limits: int | MemberLimits,
) -> int:
    if group.visibility == "public" and txn.rules.public_admins_only:
        _require_server_admin_txn(txn, creator_id)
    others = [m for m in group.member_ids if m != creator_id]
    max_members = member_cap(limits, group.kind)
    if len(others) + 1 > max_members:
        raise RefusedError(f"A group has at most {max_members} members", code="conflict")
    _check_friends_txn(txn, creator_id, others)
    avatar = group.avatar_file_id or None
    if avatar is not None:
        check_avatar_txn(txn, creator_id, avatar, txn.rules.image_types, now)
    group_id = int(
        txn.scalar(
            "INSERT INTO chats (is_group, name, description, created_by, created_at, member_count, last_activity,"
            " visibility, join_rule, kind, topic, slow_mode, read_only, retention, extra, avatar_file_id)"
            " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                group.name,
                group.description,
                creator_id,
                now,
                len(others) + 1,
                now,
                group.visibility,
                group.join_rule,
                group.kind,
                group.topic,
                group.slow_mode,
                int(group.read_only),
                group.retention,
                extra_text(group.extra),
                avatar,
            ),
        )
    )
    # The members read the group's stream from its creation on.
    created = record_returning_id_txn(
        txn, NewChange("group", now, chat_id=group_id, actor_id=creator_id, data={"event": "group_created"})
    )
    txn.executemany(
        "INSERT INTO user_chats (user_id, chat_id, is_group, is_admin, role, joined_at, joined_change)"
        " VALUES (?, ?, 1, ?, ?, ?, ?)",
        [(creator_id, group_id, 1, "owner", now, created)] + [(m, group_id, 0, "member", now, created) for m in others],
    )
    return group_id


def info_txn(txn: Txn, group_id: int, viewer_id: int | None, limit: int | None = None) -> GroupInfo:
    """The group and its members (the first ``limit`` who joined; None: all of them).

    With ``viewer_id``, RefusedError unless the viewer is a member; their own
    role is known even when the list stops before them.
    """
    row = txn.execute(
        "SELECT " + _GROUP_COLUMNS + ", created_at, member_count, extra FROM chats"
        " WHERE id = ? AND is_group = 1 AND closed_at IS NULL",
        (group_id,),
    ).fetchone()
    if row is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    rows = txn.execute(
        "SELECT uc.user_id, u.username, u.last_seen, uc.role, u.display_name, u.avatar_file_id"
        " FROM user_chats uc JOIN users u ON u.id = uc.user_id WHERE uc.chat_id = ?"
        " ORDER BY uc.joined_at, uc.user_id" + (" LIMIT ?" if limit is not None else ""),
        (group_id,) if limit is None else (group_id, limit),
    ).fetchall()
    members = [
        GroupMember(
            int(r["user_id"]),
            r["username"],
            r["last_seen"],
            r["role"],
            r["display_name"],
            r["avatar_file_id"],
        )
        for r in rows
    ]
    unlisted: dict[int, str] = {}
    if viewer_id is not None and all(m.user_id != viewer_id for m in members):
        role = None
        if limit is not None and len(members) == limit:
            role = txn.scalar("SELECT role FROM user_chats WHERE chat_id = ? AND user_id = ?", (group_id, viewer_id))
        if role is None:
            raise RefusedError(UNKNOWN_CHAT, code="not_found")
        unlisted[viewer_id] = role
    if limit is None:
        blocks = txn.execute(
            "SELECT b.owner_id, b.contact_id FROM contacts b"
            " JOIN user_chats o ON o.chat_id = ? AND o.user_id = b.owner_id"
            " JOIN user_chats t ON t.chat_id = ? AND t.user_id = b.contact_id"
            " WHERE b.status = ?",
            (group_id, group_id, BLOCKED),
        ).fetchall()
    else:
        # Only between the viewer and those listed: what the payload shows.
        listed = [m.user_id for m in members]
        blocks = (
            txn.execute(
                "SELECT owner_id, contact_id FROM contacts WHERE status = ? AND ((owner_id = ? AND contact_id IN "
                + in_clause(listed)
                + ") OR (contact_id = ? AND owner_id IN "
                + in_clause(listed)
                + "))",
                [BLOCKED, viewer_id, *listed, viewer_id, *listed],
            ).fetchall()
            if listed and viewer_id is not None
            else []
        )
    return GroupInfo(
        group_id,
        row["name"],
        row["description"],
        float(row["created_at"]),
        members,
        frozenset((int(b["owner_id"]), int(b["contact_id"])) for b in blocks),
        settings_of(row),
        int(row["member_count"]),
        unlisted,
        None if row["extra"] is None else json.loads(row["extra"]),
    )


@dataclass(frozen=True, slots=True)
class MembersPage:
    """A page of ``get_members``: the members, and the blocks between the viewer and them."""

    members: list[GroupMember]
    blocks: frozenset[tuple[int, int]]


def _members_page_txn(txn: Txn, group_id: int, viewer_id: int, after: int, limit: int) -> MembersPage:
    viewer = txn.scalar(
        "SELECT 1 FROM user_chats uc JOIN chats c ON c.id = uc.chat_id"
        " WHERE uc.chat_id = ? AND uc.user_id = ? AND c.is_group = 1 AND c.closed_at IS NULL",
        (group_id, viewer_id),
    )
    if viewer is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    rows = txn.execute(
        "SELECT uc.user_id, u.username, u.last_seen, uc.role, u.display_name, u.avatar_file_id"
        " FROM user_chats uc JOIN users u ON u.id = uc.user_id WHERE uc.chat_id = ? AND uc.user_id > ?"
        " ORDER BY uc.user_id LIMIT ?",
        (group_id, after, limit),
    ).fetchall()
    members = [
        GroupMember(int(r["user_id"]), r["username"], r["last_seen"], r["role"], r["display_name"], r["avatar_file_id"])
        for r in rows
    ]
    listed = [m.user_id for m in members]
    blocks = []
    if listed:
        blocks = txn.execute(
            "SELECT owner_id, contact_id FROM contacts WHERE status = ? AND ((owner_id = ? AND contact_id IN "
            + in_clause(listed)
            + ") OR (contact_id = ? AND owner_id IN "
            + in_clause(listed)
            + "))",
            [BLOCKED, viewer_id, *listed, viewer_id, *listed],
        ).fetchall()
    return MembersPage(members, frozenset((int(b["owner_id"]), int(b["contact_id"])) for b in blocks))


def settings_of(row: Any) -> dict[str, Any]:
    """A ``chats`` row's settings as payloads show them."""
    return {
        "visibility": row["visibility"],
        "join_rule": row["join_rule"],
        "kind": row["kind"],
        "topic": row["topic"],
        "slow_mode": int(row["slow_mode"]),
        "read_only": bool(row["read_only"]),
        "retention": int(row["retention"]),
        "avatar_file_id": row["avatar_file_id"],
    }


#: What ``group_updated`` shows of a group (and `info_txn` reads).
_GROUP_COLUMNS = (
    "name, description, visibility, join_rule, kind, topic, slow_mode, read_only, retention, avatar_file_id"
)


def _update_txn(txn: Txn, admin_id: int, change: GroupChange, now: float) -> tuple[list[int], dict[str, Any]]:
    group_id = change.chat_id
    members = lock_members_txn(txn, group_id, admin_id, "update_group")
    if change.visibility == "public" and txn.rules.public_admins_only:
        _require_server_admin_txn(txn, admin_id)
    if change.avatar_file_id is not None:
        # "" clears the picture; a file must be the admin's own image upload.
        if change.avatar_file_id:
            check_avatar_txn(txn, admin_id, change.avatar_file_id, txn.rules.image_types, now)
        txn.execute("UPDATE chats SET avatar_file_id = ? WHERE id = ?", (change.avatar_file_id or None, group_id))
    if change.retention == 0 and txn.scalar("SELECT retention FROM chats WHERE id = ?", (group_id,)):
        # Its old messages fall under the server's retention again: the purge's walk looks at them once
        # more (umoc.storage.retention.reset_walk_txn, which imports this module).
        txn.execute("UPDATE retention_state SET through_seq = 0 WHERE singleton = 1")
    txn.execute(
        "UPDATE chats SET name = COALESCE(?, name), description = COALESCE(?, description),"
        " visibility = COALESCE(?, visibility), join_rule = COALESCE(?, join_rule), kind = COALESCE(?, kind),"
        " topic = COALESCE(?, topic), slow_mode = COALESCE(?, slow_mode), read_only = COALESCE(?, read_only),"
        " retention = COALESCE(?, retention) WHERE id = ?",
        (
            change.name,
            change.description,
            change.visibility,
            change.join_rule,
            change.kind,
            change.topic,
            change.slow_mode,
            None if change.read_only is None else int(change.read_only),
            change.retention,
            group_id,
        ),
    )
    if change.extra is not None:
        txn.execute("UPDATE chats SET extra = ? WHERE id = ?", (extra_text(change.extra), group_id))
    row = txn.execute("SELECT " + _GROUP_COLUMNS + ", extra FROM chats WHERE id = ?", (group_id,)).fetchone()
    assert row is not None  # lock_members_txn found the group
    updated = {"chat_id": group_id, "name": row["name"], "description": row["description"], **settings_of(row)}
    if row["extra"] is not None:
        updated["extra"] = json.loads(row["extra"])
    record_txn(
        txn,
        NewChange("group", now, chat_id=group_id, actor_id=admin_id, data={"event": "group_updated", **updated}),
    )
    return list(members), updated


def _add_member_txn(
    txn: Txn,
    group_id: int,
    admin_id: int,
    user_id: int,
    now: float,
    limits: int | MemberLimits,
) -> tuple[str, list[int]]:
    members = lock_members_txn(txn, group_id, admin_id, "manage_members")
    if user_id in members:
        raise RefusedError("This user is already a member", code="conflict")
    if active_ban_txn(txn, group_id, user_id, now):
        raise RefusedError(USER_BANNED, code="forbidden")
    max_members = member_cap(limits, txn.scalar("SELECT kind FROM chats WHERE id = ?", (group_id,)))
    if len(members) + 1 > max_members:
        raise RefusedError(f"A group has at most {max_members} members", code="conflict")
    username = _check_friends_txn(txn, admin_id, [user_id])[user_id]
    insert_member_txn(txn, group_id, user_id, admin_id, now)
    return username, told_of_members_txn(txn, group_id, members, user_id)


def insert_member_txn(txn: Txn, group_id: int, user_id: int, added_by: int | None, now: float) -> None:
    """``user_id`` a ``member`` of the (locked, checked) group from now on, with the ``member_added`` feed row.

    ``added_by``: the admin who added them, the moderator who approved their request, or None (they joined).
    """
    # The new member reads the group's stream from this change on (it included).
    # ``added_by`` for the ``group.member_added`` webhook, rendered from this row (`umoc.domain.webhooks`).
    added = record_returning_id_txn(
        txn, NewChange("member_added", now, chat_id=group_id, actor_id=user_id, data={"added_by": added_by})
    )
    txn.execute(
        "INSERT INTO user_chats (user_id, chat_id, is_group, is_admin, role, joined_at, joined_seq, base_count,"
        " joined_change) SELECT ?, id, 1, 0, 'member', ?, last_seq, message_count, ? FROM chats WHERE id = ?",
        (user_id, now, added, group_id),
    )
    txn.execute("UPDATE chats SET member_count = member_count + 1 WHERE id = ?", (group_id,))


def remove_member_txn(txn: Txn, group_id: int, actor_id: int, user_id: int, now: float) -> MembershipChange:
    """``actor_id`` removes ``user_id`` (a role below their own), or leaves (``actor_id == user_id``).

    When the owner leaves, the highest-ranked of those who stay (the
    longest-standing among equals) becomes owner: a ``member_role`` change
    with ``by`` None, announced as any role change.
    """
    leaving = actor_id == user_id
    members = lock_members_txn(txn, group_id, actor_id, None if leaving else "manage_members")
    if user_id not in members:
        raise RefusedError("This user is not a member", code="not_found")
    if not leaving and not outranks(members[actor_id], members[user_id]):
        raise RefusedError(ROLE_REFUSED, code="forbidden")
    joined = txn.scalar(
        "DELETE FROM user_chats WHERE chat_id = ? AND user_id = ? RETURNING joined_change", (group_id, user_id)
    )
    # In the group's stream for those who stay, and in the removed user's own: they keep reading what
    # happened while they were a member (left_chats), nothing after, and learn they left.
    left = record_returning_id_txn(
        txn, NewChange("member_removed", now, chat_id=group_id, user_id=user_id, actor_id=user_id)
    )
    txn.execute(
        "INSERT INTO left_chats (user_id, chat_id, joined_change, left_change) VALUES (?, ?, ?, ?)",
        (user_id, group_id, joined, left),
    )
    role = members.pop(user_id)
    if not members:
        txn.execute("UPDATE chats SET member_count = 0, closed_at = ? WHERE id = ?", (now, group_id))
        return MembershipChange([], None, True)
    txn.execute("UPDATE chats SET member_count = member_count - 1 WHERE id = ?", (group_id,))
    promoted: RoleChanged | None = None
    if role == "owner":
        rows = txn.execute(
            "SELECT user_id, role FROM user_chats WHERE chat_id = ? ORDER BY joined_at, user_id", (group_id,)
        ).fetchall()
        heir = min(rows, key=lambda r: ROLES.index(r["role"]) if r["role"] in ROLES else len(ROLES))
        promoted = _set_role_txn(txn, group_id, int(heir["user_id"]), "owner", None, now)
        members[promoted.user_id] = "owner"
    return MembershipChange(told_of_members_txn(txn, group_id, members), promoted, False)


def _set_member_role_txn(
    txn: Txn, group_id: int, actor_id: int, user_id: int, role: str, now: float
) -> tuple[list[int], list[RoleChanged]]:
    """The members and the role changes made: ``user_id`` to ``role``, by ``actor_id``.

    An admin sets roles below their own on members below them; the owner
    also hands the group over (``role`` owner: the old owner becomes admin).
    Setting the role someone has already changes nothing and writes nothing.
    """
    members = lock_members_txn(txn, group_id, actor_id, "set_roles")
    if user_id not in members:
        raise RefusedError("This user is not a member", code="not_found")
    mine = members[actor_id]
    if members[user_id] == role:
        return list(members), []
    handover = mine == "owner" and role == "owner" and user_id != actor_id
    if not handover and (not outranks(mine, members[user_id]) or not outranks(mine, role)):
        raise RefusedError(ROLE_REFUSED, code="forbidden")
    changes = [_set_role_txn(txn, group_id, user_id, role, actor_id, now)]
    if handover:
        changes.append(_set_role_txn(txn, group_id, actor_id, "admin", actor_id, now))
    return told_of_members_txn(txn, group_id, members, user_id, actor_id), changes


def _typing_audience_txn(txn: Txn, group_id: int, user_id: int, now: float) -> list[int]:
    """In a broadcast only those who post (moderators and above) type, and only they see it: its
    readers, however many, get no typing (and the audience is read without them)."""
    row = txn.execute(
        "SELECT c.kind, uc.role FROM chats c JOIN user_chats uc ON uc.chat_id = c.id AND uc.user_id = ?"
        " WHERE c.id = ? AND c.is_group = 1 AND c.closed_at IS NULL",
        (user_id, group_id),
    ).fetchone()
    if row is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    require_standing_txn(txn, group_id, user_id, "type", now)
    if row["kind"] == "broadcast":
        if row["role"] not in _POSTERS:
            raise RefusedError(ROLE_REFUSED, code="forbidden")
        members = staff_txn(txn, group_id)
    else:
        members = group_members_txn(txn, group_id) or []
    blocked = {
        int(r["blocked_id"])
        for r in txn.execute(
            "SELECT contact_id AS blocked_id FROM contacts WHERE owner_id = ? AND status = ?"
            " UNION SELECT owner_id FROM contacts WHERE contact_id = ? AND status = ?",
            (user_id, BLOCKED, user_id, BLOCKED),
        ).fetchall()
    }
    return [m for m in members if m != user_id and m not in blocked]


class GroupStore:
    """Group queries and membership changes (rules checked inside each transaction)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        creator_id: int,
        group: NewGroup,
        now: float,
        max_members: int | MemberLimits,
    ) -> defer.Deferred[int]:
        """A new group with the creator as its owner; members must be the creator's friends (unless
        ``contacts.require_friendship`` is false); an avatar an image the creator uploaded. Raises `RefusedError`."""
        return self._db.run("groups.create", _create_txn, creator_id, group, now, max_members)

    def info(self, group_id: int, viewer_id: int | None, limit: int | None = None) -> defer.Deferred[GroupInfo]:
        """The group with its first ``limit`` members (None: all); with ``viewer_id``, RefusedError unless a member."""
        return self._db.read("groups.info", info_txn, group_id, viewer_id, limit)

    def members_page(self, group_id: int, viewer_id: int, after: int, limit: int) -> defer.Deferred[MembersPage]:
        """Members with ids after ``after``, by id (RefusedError unless the viewer is a member)."""
        return self._db.read("groups.members_page", _members_page_txn, group_id, viewer_id, after, limit)

    def update(
        self, admin_id: int, change: GroupChange, now: float
    ) -> defer.Deferred[tuple[list[int], dict[str, Any]]]:
        """Change a group's name, description, settings or ``extra`` (admins and the owner); the members to tell and
        ``group_updated``'s payload (the group now)."""
        return self._db.run("groups.update", _update_txn, admin_id, change, now)

    def add_member(
        self, group_id: int, admin_id: int, user_id: int, now: float, max_members: int | MemberLimits
    ) -> defer.Deferred[tuple[str, list[int]]]:
        """Add one of the admin's friends; the new member's username and who to tell (`told_of_members_txn`)."""
        return self._db.run("groups.add_member", _add_member_txn, group_id, admin_id, user_id, now, max_members)

    def remove_member(self, group_id: int, actor_id: int, user_id: int, now: float) -> defer.Deferred[MembershipChange]:
        """An admin removes ``user_id``, or a member leaves (``actor_id == user_id``)."""
        return self._db.run("groups.remove_member", remove_member_txn, group_id, actor_id, user_id, now)

    def is_member(self, group_id: int, user_id: int) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            row = txn.execute(
                "SELECT 1 FROM user_chats uc JOIN chats c ON c.id = uc.chat_id"
                " WHERE uc.chat_id = ? AND uc.user_id = ? AND c.is_group = 1 AND c.closed_at IS NULL",
                (group_id, user_id),
            ).fetchone()
            return row is not None

        return self._db.read("groups.is_member", txn_fn)

    def typing_audience(self, group_id: int, user_id: int, now: float) -> defer.Deferred[list[int]]:
        """Members to show ``user_id`` typing to: all but ``user_id`` and anyone a block separates them from.

        Refused (`RefusedError`) for a reader or a muted member, who do not type.
        """
        return self._db.read("groups.typing_audience", _typing_audience_txn, group_id, user_id, now)

    def set_member_role(
        self, group_id: int, actor_id: int, user_id: int, role: str, now: float
    ) -> defer.Deferred[tuple[list[int], list[RoleChanged]]]:
        """``user_id``'s role set by ``actor_id``; the members to tell and the changes made (none: unchanged)."""
        return self._db.run("groups.set_member_role", _set_member_role_txn, group_id, actor_id, user_id, role, now)
