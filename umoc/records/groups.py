"""Group changes: a new group, a rename or new description, a member added or removed, a role set.

Roles, highest first: ``owner`` > ``admin`` > ``moderator`` > ``member`` >
``reader`` (`ROLES`).  What each may do is `ALLOWED`, the one table every
check reads (the stores ask `may`), so the permission matrix test walks it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from umoc.config import MessagesConfig
from umoc.errors import UserError, check_text
from umoc.records.contacts import user_id
from umoc.records.messages import extra as check_extra

__all__ = [
    "ACTIONS",
    "ALLOWED",
    "DELETE_WINDOWS",
    "DirectoryPage",
    "LISTED_MEMBERS",
    "MAX_INVITE_TTL",
    "MAX_INVITE_USES",
    "NewInviteLink",
    "MAX_QUERY",
    "MAX_DURATION",
    "MAX_REASON",
    "MAX_DESCRIPTION",
    "MAX_NAME",
    "MUTED",
    "MemberLimits",
    "PUBLIC_REFUSED",
    "MembersPageAsked",
    "ROLES",
    "READ_ONLY",
    "ROLE_REFUSED",
    "Action",
    "Ban",
    "GroupChange",
    "JOIN_RULES",
    "KINDS",
    "MAX_SLOW_MODE",
    "MAX_TOPIC",
    "SETTINGS",
    "VISIBILITIES",
    "GroupMember",
    "Mute",
    "NewGroup",
    "Role",
    "RoleChange",
    "USER_BANNED",
    "may",
    "member_cap",
    "outranks",
]

MAX_NAME = 100
MAX_DESCRIPTION = 1000
#: Most ids one ``member_ids`` list may hold (the group's size is bounded by ``messages.max_group_members``).
MAX_ID_LIST = 10_000


Role = Literal["owner", "admin", "moderator", "member", "reader"]
#: Highest first: a role may act on (remove, set the role of) only those below it.
ROLES: tuple[Role, ...] = ("owner", "admin", "moderator", "member", "reader")

#: What a role may do in its group, beyond reading (which every member does).
Action = Literal[
    "send", "react", "type", "delete_others", "pin", "moderate", "update_group", "manage_members", "set_roles"
]
ACTIONS: tuple[Action, ...] = (
    "send",
    "react",
    "type",
    "delete_others",
    "pin",
    "moderate",
    "update_group",
    "manage_members",
    "set_roles",
)
#: The lowest role allowed each action (docs/api.md "Roles"): members send, react and type;
#: moderators also delete others' messages, pin and moderate (mute, ban, approve joins); admins also
#: update the group, add and remove members and set roles below their own; the owner everything.
_LOWEST: dict[Action, Role] = {
    "send": "member",
    "react": "member",
    "type": "member",
    "delete_others": "moderator",
    "pin": "moderator",
    "moderate": "moderator",
    "update_group": "admin",
    "manage_members": "admin",
    "set_roles": "admin",
}
ALLOWED: dict[Role, frozenset[Action]] = {
    role: frozenset(a for a, lowest in _LOWEST.items() if ROLES.index(role) <= ROLES.index(lowest)) for role in ROLES
}

#: The refusal of an action the actor's role does not allow (code ``forbidden``).
ROLE_REFUSED = "Your role does not allow that"
#: A message to a read-only group from below admin (code ``forbidden``).
READ_ONLY = "This group is read-only"
#: Adding a user whose ban from the group holds (code ``forbidden``).
USER_BANNED = "This user is banned from this group"
#: The refusal of a message, reaction or typing from a muted member (code ``forbidden``).
MUTED = "You are muted in this group"


def may(role: str, action: Action) -> bool:
    """Whether ``role`` may do ``action`` (an unknown role may do nothing)."""
    return role in ALLOWED and action in ALLOWED[role]


def outranks(role: str, other: str) -> bool:
    """Whether ``role`` is strictly above ``other``."""
    return ROLES.index(role) < ROLES.index(other)


def _name(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME:
        raise UserError(f"Invalid 'name': expected 1 to {MAX_NAME} characters", code="invalid_argument")
    name = check_text("name", value).strip()
    if not name:
        raise UserError("Invalid 'name': expected a non-blank name", code="invalid_argument")
    return name


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise UserError(f"Invalid 'description': expected 0 to {MAX_DESCRIPTION} characters", code="invalid_argument")
    return check_text("description", value)


def _ids(field: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_ID_LIST:
        raise UserError(f"Invalid '{field}': expected a list of user ids", code="invalid_argument")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 2**63 - 1:
            raise UserError(f"Invalid '{field}': expected a list of user ids", code="invalid_argument")
    return tuple(dict.fromkeys(value))


VISIBILITIES = ("private", "public")
JOIN_RULES = ("invite", "open", "request")
KINDS = ("group", "broadcast")
MAX_TOPIC = 250
MAX_SLOW_MODE = 21600
#: A group's own retention (seconds): 0 (the server's ``retention.messages``) or from an hour to ten years.
MIN_RETENTION = 3600
MAX_RETENTION = 315_360_000
#: The settings a group has besides its name and description, as payloads name them.
SETTINGS = ("visibility", "join_rule", "kind", "topic", "slow_mode", "read_only", "retention", "avatar_file_id")
#: Refused when ``groups.public_creation`` is ``admins`` and a user who is not one makes a group public.
PUBLIC_REFUSED = "Only administrators may create public groups"


def _one_of(field: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise UserError(f"Invalid '{field}': expected one of {', '.join(choices)}", code="invalid_argument")


def _settings(record: NewGroup | GroupChange) -> None:
    """Check the settings fields of a `NewGroup` or a `GroupChange` (None: not given)."""
    _one_of("visibility", record.visibility, VISIBILITIES)
    _one_of("join_rule", record.join_rule, JOIN_RULES)
    _one_of("kind", record.kind, KINDS)
    topic: object = record.topic
    if topic is not None:
        if not isinstance(topic, str) or len(topic) > MAX_TOPIC:
            raise UserError(f"Invalid 'topic': expected 0 to {MAX_TOPIC} characters", code="invalid_argument")
        check_text("topic", topic)
    slow: object = record.slow_mode
    if slow is not None and (isinstance(slow, bool) or not isinstance(slow, int) or not 0 <= slow <= MAX_SLOW_MODE):
        raise UserError(f"Invalid 'slow_mode': expected 0 to {MAX_SLOW_MODE} seconds", code="invalid_argument")
    if record.read_only is not None and not isinstance(record.read_only, bool):
        raise UserError("Invalid 'read_only': expected true or false", code="invalid_argument")
    keep: object = record.retention
    if keep is not None and (
        isinstance(keep, bool) or not isinstance(keep, int) or not (keep == 0 or MIN_RETENTION <= keep <= MAX_RETENTION)
    ):
        raise UserError(
            f"Invalid 'retention': expected 0 (the server's) or {MIN_RETENTION} to {MAX_RETENTION} seconds",
            code="invalid_argument",
        )
    if record.avatar_file_id is not None:
        object.__setattr__(record, "avatar_file_id", _avatar(record.avatar_file_id))


def _avatar(value: object) -> str:
    """A file id in its canonical form, or ``""`` (no picture: clears it)."""
    if value == "":
        return ""
    if not isinstance(value, str) or len(value) > 64:
        raise UserError("Invalid 'avatar_file_id': expected a UUID string", code="invalid_argument")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise UserError("Invalid 'avatar_file_id': expected a UUID string", code="invalid_argument") from None


@dataclass(frozen=True, slots=True)
class NewGroup:
    """A group to create: its name (outer spaces stripped), description, first members (besides the creator)
    and settings (defaults: a private ``group`` joined by invitation, no topic, no slow mode, not read-only)."""

    name: str
    description: str | None = None
    member_ids: tuple[int, ...] = ()
    visibility: str = "private"
    join_rule: str = "invite"
    kind: str = "group"
    topic: str = ""
    slow_mode: int = 0
    read_only: bool = False
    #: Seconds its messages are kept (0: the server's ``retention.messages``).
    retention: int = 0
    #: The group's picture: an image the creator uploaded (None or ``""``: none).
    avatar_file_id: str | None = None
    #: The app's custom data (a JSON object), bounded by `checked`.
    extra: dict[str, object] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _name(self.name))
        object.__setattr__(self, "description", _description(self.description))
        object.__setattr__(self, "member_ids", _ids("member_ids", self.member_ids))
        _settings(self)

    def checked(self, limits: MessagesConfig) -> NewGroup:
        """This group if its ``extra`` is within ``limits``, else `UserError`."""
        check_extra(self.extra, limits.max_extra_bytes)
        return self


@dataclass(frozen=True, slots=True)
class GroupChange:
    """New values for the group ``chat_id`` (None: left as it is; an ``extra`` of ``{}`` clears it)."""

    chat_id: int
    name: str | None = None
    description: str | None = None
    visibility: str | None = None
    join_rule: str | None = None
    kind: str | None = None
    topic: str | None = None
    slow_mode: int | None = None
    read_only: bool | None = None
    retention: int | None = None
    #: An image the admin uploaded, or ``""`` to clear the picture.
    avatar_file_id: str | None = None
    extra: dict[str, object] | None = None

    def __post_init__(self) -> None:
        user_id("chat_id", self.chat_id)
        if all(getattr(self, f) is None for f in ("name", "description", "extra", *SETTINGS)):
            raise UserError(
                "Nothing to update: give 'name', 'description', 'extra' or a setting", code="invalid_argument"
            )
        if self.name is not None:
            object.__setattr__(self, "name", _name(self.name))
        object.__setattr__(self, "description", _description(self.description))
        _settings(self)

    def checked(self, limits: MessagesConfig) -> GroupChange:
        """This change if its ``extra`` is within ``limits``, else `UserError`."""
        check_extra(self.extra, limits.max_extra_bytes)
        return self


@dataclass(frozen=True, slots=True)
class GroupMember:
    """``user_id`` joining or leaving the group ``chat_id`` (leaving: the actor's own id)."""

    chat_id: int
    user_id: int

    def __post_init__(self) -> None:
        user_id("chat_id", self.chat_id)
        user_id("user_id", self.user_id)


@dataclass(frozen=True, slots=True)
class RoleChange:
    """``user_id`` of the group ``chat_id`` to have ``role`` (one of `ROLES`)."""

    chat_id: int
    user_id: int
    role: str

    def __post_init__(self) -> None:
        user_id("chat_id", self.chat_id)
        user_id("user_id", self.user_id)
        if self.role not in ROLES:
            raise UserError(f"Invalid 'role': expected one of {', '.join(ROLES)}", code="invalid_argument")


#: The longest ban or mute with a ``duration`` (ten years); without one it lasts until lifted.
MAX_DURATION = 10 * 365 * 86400
MAX_REASON = 500
#: ``delete_messages`` of a ban: how far back the banned member's messages in the group go (None: none).
DELETE_WINDOWS: dict[str, float | None] = {"none": None, "1h": 3600.0, "24h": 86400.0, "all": float("inf")}


def _duration(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DURATION:
        raise UserError(f"Invalid 'duration': expected 1 to {MAX_DURATION} seconds", code="invalid_argument")
    return value


@dataclass(frozen=True, slots=True)
class Ban:
    """``user_id`` out of the group ``chat_id`` for ``duration`` seconds (None: until unbanned).

    ``delete_messages`` (a key of `DELETE_WINDOWS`) also deletes their messages in the group sent that recently.
    """

    chat_id: int
    user_id: int
    duration: int | None = None
    reason: str | None = None
    delete_messages: str = "none"

    def __post_init__(self) -> None:
        user_id("chat_id", self.chat_id)
        user_id("user_id", self.user_id)
        object.__setattr__(self, "duration", _duration(self.duration))
        if self.reason is not None:
            if not isinstance(self.reason, str) or len(self.reason) > MAX_REASON:
                raise UserError(f"Invalid 'reason': expected 0 to {MAX_REASON} characters", code="invalid_argument")
            object.__setattr__(self, "reason", check_text("reason", self.reason))
        if self.delete_messages not in DELETE_WINDOWS:
            raise UserError(
                f"Invalid 'delete_messages': expected one of {', '.join(DELETE_WINDOWS)}", code="invalid_argument"
            )


@dataclass(frozen=True, slots=True)
class Mute:
    """``user_id`` of the group ``chat_id`` muted for ``duration`` seconds (None: until unmuted)."""

    chat_id: int
    user_id: int
    duration: int | None = None

    def __post_init__(self) -> None:
        user_id("chat_id", self.chat_id)
        user_id("user_id", self.user_id)
        object.__setattr__(self, "duration", _duration(self.duration))


MAX_QUERY = 100
#: How many members ``chat_info`` (and ``group_joined``, and a replayed ``group_created``) lists: the first
#: who joined; ``get_members`` pages through all of them.
LISTED_MEMBERS = 100


@dataclass(frozen=True, slots=True)
class DirectoryPage:
    """A page of ``list_public_groups``: ``query`` (None: every public group), after the ``cursor`` given."""

    query: str | None = None
    cursor: str | None = None
    limit: int = 20

    def __post_init__(self) -> None:
        if self.query is not None:
            check_text("query", self.query)
        if self.cursor is not None and (not self.cursor.isdigit() or len(self.cursor) > 19):
            raise UserError("Invalid 'cursor': not a cursor from public_groups", code="invalid_argument")

    @property
    def after(self) -> int:
        """The last group id of the page before (0: the first page)."""
        return int(self.cursor) if self.cursor else 0


MAX_INVITE_USES = 100_000
MAX_INVITE_TTL = 365 * 86400


@dataclass(frozen=True, slots=True)
class NewInviteLink:
    """A link to join ``chat_id``: at most ``max_uses`` joins, for ``expires_in`` seconds (None: no limit)."""

    chat_id: int
    max_uses: int | None = None
    expires_in: int | None = None

    def __post_init__(self) -> None:
        user_id("chat_id", self.chat_id)
        for name, value, top in (
            ("max_uses", self.max_uses, MAX_INVITE_USES),
            ("expires_in", self.expires_in, MAX_INVITE_TTL),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top):
                raise UserError(f"Invalid '{name}': expected 1 to {top}", code="invalid_argument")


@dataclass(frozen=True, slots=True)
class MembersPageAsked:
    """A page of ``get_members`` of the group ``chat_id``, after the ``cursor`` given (None: the first)."""

    chat_id: int
    cursor: str | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        user_id("chat_id", self.chat_id)
        if self.cursor is not None and (not self.cursor.isdigit() or len(self.cursor) > 19):
            raise UserError("Invalid 'cursor': not a cursor from members", code="invalid_argument")

    @property
    def after(self) -> int:
        """The last user id of the page before (0: the first page)."""
        return int(self.cursor) if self.cursor else 0


@dataclass(frozen=True, slots=True)
class MemberLimits:
    """The most members a group may have: ``broadcast`` for a ``broadcast``, ``group`` for any other."""

    group: int
    broadcast: int

    def cap(self, kind: str) -> int:
        return self.broadcast if kind == "broadcast" else self.group


def member_cap(limits: int | MemberLimits, kind: str) -> int:
    """The cap for a group of ``kind`` (a plain number caps every kind alike)."""
    return limits if isinstance(limits, int) else limits.cap(kind)
