"""Profile and settings events: ``update_profile``, ``get_profile``, ``update_settings``.

A profile (display name, status text, avatar) is seen by the user, their
contacts and the members of groups they share; changes reach the user's
own sockets and their contacts'.  Settings are the user's alone.  The
changes are commands of `umoc.domain.commands.profiles`.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import profiles
from umoc.domain.notices import shapes
from umoc.events.router import EventContext, Route
from umoc.records.profiles import MAX_DISPLAY_NAME, MAX_STATUS_TEXT, UNSET, ProfileChange, SettingsChange
from umoc.records.schema import SESSION_ID, Bool, Field, Int, Schema

__all__ = ["ROUTES"]


def _any(field: str, value: Any) -> Any:
    """Any JSON value: `ProfileChange` checks these fields itself."""
    return value


def _given(payload: dict[str, Any], name: str) -> Any:
    """A field of the payload; absent (or null) leaves it alone."""
    value = payload[name]
    return UNSET if value is None else value


async def update_profile(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    names = ("display_name", "status_text", "avatar_file_id", "extra")
    change = ProfileChange(*(_given(payload, name) for name in names))
    return await profiles.update(ctx.services, ctx.actor, change)


async def get_profile(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Anyone's profile one may see; one's own also says whether one is a server administrator."""
    if payload["user_id"] != ctx.user_id:
        return shapes.profile(await ctx.services.storage.profiles.get(ctx.user_id, payload["user_id"]))
    profile, is_admin = await ctx.services.storage.profiles.own(ctx.user_id)
    return {**shapes.profile(profile), "is_admin": is_admin}


async def update_settings(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Change the settings given; with none given, answer the settings as they are."""
    return await profiles.update_settings(ctx.services, ctx.actor, SettingsChange(payload["send_delivery_receipts"]))


ROUTES = [
    Route(
        "update_profile",
        Schema(
            SESSION_ID,
            Field("display_name", _any, required=False, schema={"type": "string", "maxLength": MAX_DISPLAY_NAME}),
            Field("status_text", _any, required=False, schema={"type": "string", "maxLength": MAX_STATUS_TEXT}),
            Field("avatar_file_id", _any, required=False, schema={"type": "string"}),  # a UUID, or "" to clear
            Field("extra", _any, required=False, schema={"type": "object"}),  # {} clears
        ),
        update_profile,
        rate_class="contacts",
    ),
    Route("get_profile", Schema(SESSION_ID, Int("user_id")), get_profile, response=notices.PROFILE, writes=False),
    Route(
        "update_settings",
        Schema(SESSION_ID, Bool("send_delivery_receipts", required=False)),
        update_settings,
    ),
]
