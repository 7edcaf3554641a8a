"""Group events (docs/api.md "Groups"): create, update, add, remove, leave, set a role.

Each is one command of `umoc.domain.commands.groups`; the rules (who may
do what, who is told) are there and in the store.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import groups
from umoc.errors import UserError
from umoc.events.router import EventContext, Route
from umoc.records.groups import (
    JOIN_RULES,
    KINDS,
    MAX_DESCRIPTION,
    MAX_ID_LIST,
    MAX_NAME,
    MAX_RETENTION,
    MAX_SLOW_MODE,
    MAX_TOPIC,
    ROLES,
    SETTINGS,
    VISIBILITIES,
    GroupChange,
    GroupMember,
    MembersPageAsked,
    NewGroup,
    RoleChange,
)
from umoc.records.schema import SESSION_ID, Bool, Enum, Field, Int, Obj, Schema, Str

__all__ = ["ROUTES"]


def _id_list(field: str, value: Any) -> list[int]:
    """A JSON list (its ids are checked by `NewGroup`)."""
    if not isinstance(value, list) or len(value) > MAX_ID_LIST:
        raise UserError(f"Invalid '{field}': expected a list of user ids", code="invalid_argument")
    return value


async def create_group(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    given = {name: payload[name] for name in SETTINGS if payload[name] is not None}
    group = NewGroup(payload["name"], payload["description"], payload["member_ids"], extra=payload["extra"], **given)
    return await groups.create(ctx.services, ctx.actor, group)


async def update_group(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    settings = {name: payload[name] for name in SETTINGS}
    change = GroupChange(
        payload["chat_id"], payload["name"], payload["description"], extra=payload["extra"], **settings
    )
    return await groups.update(ctx.services, ctx.actor, change)


def _avatar(field: str, value: Any) -> Any:
    """Any JSON value: `NewGroup` and `GroupChange` check the file id themselves."""
    return value


#: The settings fields of create_group and update_group (each optional).
_SETTING_FIELDS = (
    Enum("visibility", VISIBILITIES, required=False),
    Enum("join_rule", JOIN_RULES, required=False),
    Enum("kind", KINDS, required=False),
    Str("topic", required=False, max_length=MAX_TOPIC, min_length=0),
    Int("slow_mode", required=False, minimum=0, maximum=MAX_SLOW_MODE),
    Bool("read_only", required=False),
    Int("retention", required=False, minimum=0, maximum=MAX_RETENTION),
    # A UUID, or "" to clear (`umoc.records.groups` checks it).
    Field("avatar_file_id", _avatar, required=False, schema={"type": "string", "maxLength": 64}),
)


async def add_group_member(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await groups.add_member(ctx.services, ctx.actor, GroupMember(payload["chat_id"], payload["user_id"]))


async def remove_group_member(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await groups.remove_member(ctx.services, ctx.actor, GroupMember(payload["chat_id"], payload["user_id"]))


async def leave_group(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await groups.remove_member(ctx.services, ctx.actor, GroupMember(payload["chat_id"], ctx.user_id))


async def set_member_role(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    change = RoleChange(payload["chat_id"], payload["user_id"], payload["role"])
    return await groups.set_member_role(ctx.services, ctx.actor, change)


async def get_members(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    page = MembersPageAsked(payload["chat_id"], payload["cursor"], payload["limit"])
    return await groups.members(ctx.services, ctx.actor, page)


ROUTES = [
    Route(
        "create_group",
        Schema(
            SESSION_ID,
            Str("name", max_length=MAX_NAME),
            Str("description", required=False, max_length=MAX_DESCRIPTION, min_length=0),
            Field(
                "member_ids", _id_list, schema={"type": "array", "items": {"type": "integer"}, "maxItems": MAX_ID_LIST}
            ),
            Obj("extra", required=False),
            *_SETTING_FIELDS,
        ),
        create_group,
    ),
    Route(
        "update_group",
        Schema(
            SESSION_ID,
            Int("chat_id"),
            Str("name", required=False, max_length=MAX_NAME),
            Str("description", required=False, max_length=MAX_DESCRIPTION, min_length=0),
            Obj("extra", required=False),
            *_SETTING_FIELDS,
        ),
        update_group,
    ),
    Route("add_group_member", Schema(SESSION_ID, Int("chat_id"), Int("user_id")), add_group_member),
    Route("remove_group_member", Schema(SESSION_ID, Int("chat_id"), Int("user_id")), remove_group_member),
    Route("leave_group", Schema(SESSION_ID, Int("chat_id")), leave_group),
    Route(
        "get_members",
        Schema(
            SESSION_ID,
            Int("chat_id"),
            Str("cursor", required=False, max_length=32),
            Int("limit", required=False, minimum=1, maximum=200, default=100),
        ),
        get_members,
        response=notices.MEMBERS,
        writes=False,
    ),
    Route(
        "set_member_role",
        Schema(SESSION_ID, Int("chat_id"), Int("user_id"), Enum("role", ROLES)),
        set_member_role,
    ),
]
