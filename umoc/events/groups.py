"""Group events (DESIGN.md "Groups"): create, update, add, remove, leave.

Only members learn anything about a group; everyone else gets the same
``error`` as for a group that does not exist.  The creator is the first
admin; when the last admin leaves, the longest-standing member becomes
admin; when the last member leaves, the group is closed.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.notices import shapes
from umoc.errors import UserError
from umoc.events.router import EventContext, Route
from umoc.events.schema import MAX_ID, SESSION_ID, Field, Int, Schema, Str

__all__ = ["ROUTES"]

_NAME_MAX = 100
_DESCRIPTION_MAX = 1000


def _id_list(field: str, value: Any) -> list[int]:
    if not isinstance(value, list) or len(value) > 10_000:
        raise UserError(f"Invalid '{field}': expected a list of user ids")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_ID:
            raise UserError(f"Invalid '{field}': expected a list of user ids")
    return list(dict.fromkeys(value))


async def create_group(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Every member gets ``group_created`` in the ``chat_info`` shape, seen through their own eyes."""
    name = payload["name"].strip()
    if not name:
        raise UserError("Invalid 'name': expected a non-blank name")
    storage = ctx.services.storage
    group_id = await storage.groups.create(
        ctx.user_id,
        name,
        payload["description"],
        payload["member_ids"],
        ctx.now(),
        ctx.services.config.messages.max_group_members,
    )
    info = await storage.groups.info(group_id, None)
    online = await ctx.services.presence.online_among([m.user_id for m in info.members])
    for member in info.members:
        created = shapes.group_info(info, member.user_id, online)
        ctx.services.hub.tell([member.user_id], notices.GROUP_CREATED(created))
    return shapes.group_info(info, ctx.user_id, online)


async def update_group(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    name = payload["name"]
    if name is None and payload["description"] is None:
        raise UserError("Nothing to update: give 'name' or 'description'")
    if name is not None:
        name = name.strip()
        if not name:
            raise UserError("Invalid 'name': expected a non-blank name")
    members, name, description = await ctx.services.storage.groups.update(
        payload["chat_id"], ctx.user_id, name, payload["description"], ctx.now()
    )
    updated = {"chat_id": payload["chat_id"], "name": name, "description": description}
    ctx.services.hub.tell(members, notices.GROUP_UPDATED(updated))
    return updated


async def add_group_member(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    chat_id, user_id = payload["chat_id"], payload["user_id"]
    username = await ctx.services.storage.groups.add_member(
        chat_id, ctx.user_id, user_id, ctx.now(), ctx.services.config.messages.max_group_members
    )
    added = {"chat_id": chat_id, "user_id": user_id, "username": username}
    info = await ctx.services.storage.groups.info(chat_id, None)
    ctx.services.hub.tell([m.user_id for m in info.members], notices.GROUP_MEMBER_ADDED(added))
    ctx.services.webhooks.emit("group.member_added", {**added, "added_by": ctx.user_id})
    return added


async def _remove(ctx: EventContext, chat_id: int, user_id: int) -> dict[str, Any]:
    change = await ctx.services.storage.groups.remove_member(chat_id, ctx.user_id, user_id, ctx.now())
    removed = {"chat_id": chat_id, "user_id": user_id}
    ctx.services.hub.tell([*change.members, user_id], notices.GROUP_MEMBER_REMOVED(removed))
    return removed


async def remove_group_member(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await _remove(ctx, payload["chat_id"], payload["user_id"])


async def leave_group(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await _remove(ctx, payload["chat_id"], ctx.user_id)


ROUTES = [
    Route(
        "create_group",
        Schema(
            SESSION_ID,
            Str("name", max_length=_NAME_MAX),
            Str("description", required=False, max_length=_DESCRIPTION_MAX, min_length=0),
            Field("member_ids", _id_list),
        ),
        create_group,
    ),
    Route(
        "update_group",
        Schema(
            SESSION_ID,
            Int("chat_id"),
            Str("name", required=False, max_length=_NAME_MAX),
            Str("description", required=False, max_length=_DESCRIPTION_MAX, min_length=0),
        ),
        update_group,
    ),
    Route("add_group_member", Schema(SESSION_ID, Int("chat_id"), Int("user_id")), add_group_member),
    Route("remove_group_member", Schema(SESSION_ID, Int("chat_id"), Int("user_id")), remove_group_member),
    Route("leave_group", Schema(SESSION_ID, Int("chat_id")), leave_group),
]
