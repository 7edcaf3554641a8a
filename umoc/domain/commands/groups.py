"""Group commands (docs/api.md "Groups"): create, update, add a member, remove one, leave.

Only members learn anything about a group; everyone else gets the same
error as for a group that does not exist.  The creator is the first admin;
when the last admin leaves, the longest-standing member becomes admin; when
the last member leaves, the group is closed.  The rules are checked inside
the store's transaction (`umoc.storage.groups`).
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands.audit import record_moderation
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.groups import GroupChange, GroupMember, NewGroup

__all__ = ["add_member", "create", "remove_member", "update"]


async def create(services: Services, actor: Actor, record: NewGroup) -> dict[str, Any]:
    """Every member gets ``group_created`` in the ``chat_info`` shape, seen through their own eyes."""
    record = record.checked(services.config.messages)
    storage, now = services.storage, services.clock.seconds()
    group_id = await storage.groups.create(actor.uid, record, now, services.config.messages.max_group_members)
    info = await storage.groups.info(group_id, None)
    online = await services.presence.online_among([m.user_id for m in info.members])
    key = replay.group(group_id, "group_created", now)
    for member in info.members:
        shown = shapes.group_info(info, member.user_id, online)
        services.hub.tell([member.user_id], notices.GROUP_CREATED(shown), key=key)
    return shapes.group_info(info, actor.uid, online)


async def update(services: Services, actor: Actor, record: GroupChange) -> dict[str, Any]:
    """Admins only; every member gets ``group_updated`` with the name, description and ``extra`` now."""
    record = record.checked(services.config.messages)
    now = services.clock.seconds()
    done = await services.storage.groups.update(actor.uid, record, now)
    updated = shapes.group_updated(record.chat_id, done.name, done.description, done.extra)
    key = replay.group(record.chat_id, "group_updated", now)
    services.hub.tell(done.members, notices.GROUP_UPDATED(updated), key=key)
    await record_moderation(services, actor, "group.update", record.chat_id)
    return updated


async def add_member(services: Services, actor: Actor, record: GroupMember) -> dict[str, Any]:
    """An admin adds a friend; every member (the new one too) is told; ``group.member_added`` webhook."""
    chat_id, user_id, now = record.chat_id, record.user_id, services.clock.seconds()
    username = await services.storage.groups.add_member(
        chat_id, actor.uid, user_id, now, services.config.messages.max_group_members
    )
    added = {"chat_id": chat_id, "user_id": user_id, "username": username}
    info = await services.storage.groups.info(chat_id, None)
    key = replay.member("member_added", chat_id, user_id, now)
    services.hub.tell([m.user_id for m in info.members], notices.GROUP_MEMBER_ADDED(added), key=key)
    services.webhooks.wake()  # ``group.member_added``, read from the feed
    await record_moderation(services, actor, "group.add_member", chat_id, user_id)
    return added


async def remove_member(services: Services, actor: Actor, record: GroupMember) -> dict[str, Any]:
    """An admin removes ``user_id``, or a member leaves (``user_id`` is the actor); the members and they are told."""
    now = services.clock.seconds()
    change = await services.storage.groups.remove_member(record.chat_id, actor.uid, record.user_id, now)
    removed = {"chat_id": record.chat_id, "user_id": record.user_id}
    key = replay.member("member_removed", record.chat_id, record.user_id, now)
    services.hub.tell([*change.members, record.user_id], notices.GROUP_MEMBER_REMOVED(removed), key=key)
    await record_moderation(services, actor, "group.remove_member", record.chat_id, record.user_id)
    return removed
