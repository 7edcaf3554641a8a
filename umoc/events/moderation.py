"""Moderation events (docs/api.md "Moderation"): ban, unban, get_bans, mute, unmute.

Each is one command of `umoc.domain.commands.moderation`.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import moderation
from umoc.events.router import EventContext, Route
from umoc.records.groups import DELETE_WINDOWS, MAX_DURATION, MAX_REASON, Ban, GroupMember, Mute
from umoc.records.schema import SESSION_ID, Enum, Int, Schema, Str

__all__ = ["ROUTES"]


async def ban_member(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    record = Ban(
        payload["chat_id"], payload["user_id"], payload["duration"], payload["reason"], payload["delete_messages"]
    )
    return await moderation.ban(ctx.services, ctx.actor, record)


async def unban_member(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await moderation.unban(ctx.services, ctx.actor, GroupMember(payload["chat_id"], payload["user_id"]))


async def get_bans(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await moderation.bans(ctx.services, ctx.actor, payload["chat_id"])


async def mute_member(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await moderation.mute(
        ctx.services, ctx.actor, Mute(payload["chat_id"], payload["user_id"], payload["duration"])
    )


async def unmute_member(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await moderation.unmute(ctx.services, ctx.actor, Mute(payload["chat_id"], payload["user_id"]))


_DURATION = Int("duration", required=False, maximum=MAX_DURATION)

ROUTES = [
    Route(
        "ban_member",
        Schema(
            SESSION_ID,
            Int("chat_id"),
            Int("user_id"),
            _DURATION,
            Str("reason", required=False, max_length=MAX_REASON, min_length=0),
            Enum("delete_messages", tuple(DELETE_WINDOWS), required=False, default="none"),
        ),
        ban_member,
    ),
    Route("unban_member", Schema(SESSION_ID, Int("chat_id"), Int("user_id")), unban_member),
    Route("get_bans", Schema(SESSION_ID, Int("chat_id")), get_bans, response=notices.BANS, writes=False),
    Route("mute_member", Schema(SESSION_ID, Int("chat_id"), Int("user_id"), _DURATION), mute_member),
    Route("unmute_member", Schema(SESSION_ID, Int("chat_id"), Int("user_id")), unmute_member),
]
