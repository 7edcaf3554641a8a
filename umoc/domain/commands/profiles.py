"""Profile and settings commands.

A profile (display name, status text, avatar) is seen by the user, their
contacts and the members of groups they share; a change reaches the user's
own sockets and their contacts'.  Settings are the user's alone.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.profiles import ProfileChange, SettingsChange

__all__ = ["update", "update_settings"]


async def update(services: Services, actor: Actor, record: ProfileChange) -> dict[str, Any]:
    """Change the profile; the user and their contacts get ``profile_updated``."""
    record = record.checked(services.config.messages)
    image_types = tuple(services.config.uploads.allowed_types.get("image", ()))
    now = services.clock.seconds()
    profile, contacts = await services.storage.profiles.update(actor.uid, record, image_types, now)
    updated = shapes.profile(profile)
    services.hub.tell([actor.uid, *contacts], notices.PROFILE_UPDATED(updated), key=replay.profile(actor.uid, now))
    return updated


async def update_settings(services: Services, actor: Actor, record: SettingsChange) -> dict[str, Any]:
    """Change the settings given; with none given, answer the settings as they are.  The user's sockets are told."""
    found = await services.storage.profiles.update_settings(actor.uid, record)
    updated = shapes.settings(found)
    services.hub.tell([actor.uid], notices.SETTINGS_UPDATED(updated))
    return updated
