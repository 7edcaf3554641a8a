"""Profile and settings events: ``update_profile``, ``get_profile``, ``update_settings``.

A profile (display name, status text, avatar) is seen by the user, their
contacts and the members of groups they share; changes reach the user's
own sockets and their contacts'.  Settings are the user's alone.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from umoc.domain import notices
from umoc.domain.notices import shapes
from umoc.errors import UserError, check_visible
from umoc.events.router import EventContext, Route
from umoc.events.schema import SESSION_ID, Bool, Field, Int, Schema, Uuid
from umoc.storage.profiles import UNSET

__all__ = ["MAX_DISPLAY_NAME", "MAX_STATUS_TEXT", "ROUTES"]

MAX_DISPLAY_NAME = 64
MAX_STATUS_TEXT = 200


def _line(maximum: int, visible: bool = False) -> Any:
    """One line of text, ``""`` to clear: no control characters, outer spaces stripped.

    ``visible`` (a name others see) also refuses invisible and direction-changing
    characters (`check_visible`): a name that looks like another's, or blank.
    """

    def check(field: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > maximum:
            raise UserError(f"Invalid '{field}': expected a string of at most {maximum} characters")
        if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value):
            raise UserError(f"Invalid '{field}': no control characters or line breaks allowed")
        return check_visible(field, value).strip() if visible else value.strip()

    return check


_uuid = Uuid("avatar_file_id").check


def _avatar(field: str, value: Any) -> str:
    """A file id, or ``""`` to clear the avatar."""
    return "" if value == "" else _uuid(field, value)


async def update_profile(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    changes = {
        name: (payload[name] or None) if payload[name] is not None else UNSET
        for name in ("display_name", "status_text", "avatar_file_id")
    }
    if all(value is UNSET for value in changes.values()):
        raise UserError("Nothing to update: give 'display_name', 'status_text' or 'avatar_file_id'")
    image_types = tuple(ctx.services.config.uploads.allowed_types.get("image", ()))
    profile, contacts = await ctx.services.storage.profiles.update(
        ctx.user_id, image_types=image_types, now=ctx.now(), **changes
    )
    updated = shapes.profile(profile)
    ctx.services.hub.tell([ctx.user_id, *contacts], notices.PROFILE_UPDATED(updated))
    return updated


async def get_profile(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return shapes.profile(await ctx.services.storage.profiles.get(ctx.user_id, payload["user_id"]))


async def update_settings(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Change the settings given; with none given, answer the settings as they are."""
    found = await ctx.services.storage.profiles.update_settings(ctx.user_id, payload["send_delivery_receipts"])
    updated = shapes.settings(found)
    ctx.services.hub.tell([ctx.user_id], notices.SETTINGS_UPDATED(updated))
    return updated


ROUTES = [
    Route(
        "update_profile",
        Schema(
            SESSION_ID,
            Field("display_name", _line(MAX_DISPLAY_NAME, visible=True), required=False),
            Field("status_text", _line(MAX_STATUS_TEXT), required=False),
            Field("avatar_file_id", _avatar, required=False),
        ),
        update_profile,
        rate_class="contacts",
    ),
    Route("get_profile", Schema(SESSION_ID, Int("user_id")), get_profile, response=notices.PROFILE),
    Route(
        "update_settings",
        Schema(SESSION_ID, Bool("send_delivery_receipts", required=False)),
        update_settings,
    ),
]
