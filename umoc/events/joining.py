"""Joining events (docs/api.md "Joining groups"): list_public_groups, join_group, approve_join, reject_join.

Each is one command of `umoc.domain.commands.joining`.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import joining
from umoc.errors import UserError
from umoc.events.router import EventContext, Route
from umoc.records.groups import (
    MAX_INVITE_TTL,
    MAX_INVITE_USES,
    MAX_QUERY,
    DirectoryPage,
    GroupMember,
    NewInviteLink,
)
from umoc.records.schema import SESSION_ID, Int, Schema, Str

__all__ = ["ROUTES"]


async def list_public_groups(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    page = DirectoryPage(payload["query"], payload["cursor"], payload["limit"])
    return await joining.public_groups(ctx.services, ctx.actor, page)


async def join_group(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await joining.join(ctx.services, ctx.actor, payload["chat_id"])


async def approve_join(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    record = GroupMember(payload["chat_id"], payload["user_id"])
    return await joining.answer(ctx.services, ctx.actor, record, approve=True)


async def reject_join(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    record = GroupMember(payload["chat_id"], payload["user_id"])
    return await joining.answer(ctx.services, ctx.actor, record, approve=False)


async def create_invite_link(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    link = NewInviteLink(payload["chat_id"], payload["max_uses"], payload["expires_in"])
    return await joining.create_link(ctx.services, ctx.actor, link)


async def get_invite_links(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await joining.links(ctx.services, ctx.actor, payload["chat_id"])


async def revoke_invite_link(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    code, link_id = payload["code"], payload["link_id"]
    if (code is None) == (link_id is None):
        raise UserError("Give 'code' or 'link_id' (from get_invite_links), not both", code="invalid_argument")
    return await joining.revoke_link(ctx.services, ctx.actor, code, link_id)


async def join_by_invite(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await joining.join_by_invite(ctx.services, ctx.actor, payload["code"])


_CODE = Str("code", max_length=64)

ROUTES = [
    Route(
        "list_public_groups",
        Schema(
            SESSION_ID,
            Str("query", required=False, max_length=MAX_QUERY),
            Str("cursor", required=False, max_length=32),
            Int("limit", required=False, minimum=1, maximum=50, default=20),
        ),
        list_public_groups,
        response=notices.PUBLIC_GROUPS,
        writes=False,
    ),
    Route("join_group", Schema(SESSION_ID, Int("chat_id")), join_group),
    Route("approve_join", Schema(SESSION_ID, Int("chat_id"), Int("user_id")), approve_join),
    Route("reject_join", Schema(SESSION_ID, Int("chat_id"), Int("user_id")), reject_join),
    Route(
        "create_invite_link",
        Schema(
            SESSION_ID,
            Int("chat_id"),
            Int("max_uses", required=False, maximum=MAX_INVITE_USES),
            Int("expires_in", required=False, maximum=MAX_INVITE_TTL),
        ),
        create_invite_link,
        response=notices.INVITE_LINK,
    ),
    Route(
        "get_invite_links",
        Schema(SESSION_ID, Int("chat_id")),
        get_invite_links,
        response=notices.INVITE_LINKS,
        writes=False,
    ),
    Route(
        "revoke_invite_link",
        Schema(SESSION_ID, Str("code", required=False, max_length=64), Int("link_id", required=False)),
        revoke_invite_link,
    ),
    Route("join_by_invite", Schema(SESSION_ID, _CODE), join_by_invite),
]
