"""Push events: registrations, chat mutes and the per-user switch.

A registration belongs to the session that made it, and ends with it
(logout, expiry, revocation).  Registering, unregistering and the switch
are commands of `umoc.domain.commands.push`; the rules of what is pushed
when are `umoc.domain.push.PushNotifier`'s.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import chats, push
from umoc.domain.push import registration_json
from umoc.errors import UserError
from umoc.events.router import EventContext, Route
from umoc.records.messages import Mute
from umoc.records.push import PushRegistration, PushRemoval, PushSwitch
from umoc.records.schema import SESSION_ID, Bool, Enum, Field, Int, Schema, Str, Uuid
from umoc.timefmt import parse_iso

__all__ = ["ROUTES"]


def _object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"Invalid '{name}': expected a JSON object", code="invalid_argument")
    return value


async def register_push(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await push.register(ctx.services, ctx.actor, PushRegistration.parse(payload))


async def unregister_push(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await push.unregister(ctx.services, ctx.actor, PushRemoval(payload["registration_id"]))


async def get_push_registrations(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    store = ctx.services.storage.push
    registrations = await store.registrations(ctx.user_id)
    return {"registrations": [registration_json(r) for r in registrations], "enabled": await store.enabled(ctx.user_id)}


async def set_push_enabled(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await push.set_enabled(ctx.services, ctx.actor, PushSwitch(payload["enabled"]))


async def mute_chat(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    until = None
    if payload["until"] is not None:
        try:
            until = parse_iso(payload["until"])
        except ValueError:
            raise UserError(
                "Invalid 'until': expected an ISO 8601 time like 2026-01-01T12:00:00Z", code="invalid_argument"
            ) from None
    return await chats.mute(ctx.services, ctx.actor, Mute(payload["chat_id"], payload["is_group"], True, until))


async def unmute_chat(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await chats.mute(ctx.services, ctx.actor, Mute(payload["chat_id"], payload["is_group"], False))


_CHAT = (SESSION_ID, Int("chat_id"), Bool("is_group", required=False, default=False))

ROUTES = [
    Route(
        "register_push",
        Schema(
            SESSION_ID,
            Enum("kind", ("webpush", "gateway")),
            Field("subscription", _object, required=False, schema={"type": "object"}),
            Str("app_id", required=False, max_length=256),
            Str("pushkey", required=False, max_length=1024),
            Str("gateway", required=False, max_length=64),
        ),
        register_push,
        response=notices.PUSH_REGISTERED,
    ),
    Route(
        "unregister_push",
        Schema(SESSION_ID, Uuid("registration_id")),
        unregister_push,
        response=notices.PUSH_UNREGISTERED,
    ),
    Route(
        "get_push_registrations",
        Schema(SESSION_ID),
        get_push_registrations,
        response=notices.PUSH_REGISTRATIONS,
        writes=False,
    ),
    Route("set_push_enabled", Schema(SESSION_ID, Bool("enabled")), set_push_enabled, response=notices.PUSH_SETTINGS),
    # No response event: the command tells chat_muted to every socket of the user, this one included.
    Route("mute_chat", Schema(*_CHAT, Str("until", required=False, max_length=64)), mute_chat),
    Route("unmute_chat", Schema(*_CHAT), unmute_chat),
]
