"""Group commands (docs/api.md "Groups"): create, update, add a member, remove one, leave, set a role.

Only members learn anything about a group; everyone else gets the same
error as for a group that does not exist.  The creator is the owner
(roles: `umoc.records.groups`); when the owner leaves, the highest-ranked
longest-standing member becomes owner, announced as any role change; when
the last member leaves, the group is closed.  The rules are checked inside
the store's transaction (`umoc.storage.groups`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from umoc.domain import notices
from umoc.domain.commands.audit import record_moderation
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.groups import (
    GroupChange,
    GroupMember,
    MemberLimits,
    MembersPageAsked,
    NewGroup,
    RoleChange,
)
from umoc.storage.groups import RoleChanged

__all__ = ["add_member", "create", "members", "remove_member", "set_member_role", "update"]


async def create(services: Services, actor: Actor, record: NewGroup) -> dict[str, Any]:
    """Every member gets ``group_created`` in the ``chat_info`` shape, seen through their own eyes."""
    record = record.checked(services.config.messages)
    storage, now = services.storage, services.clock.seconds()
    group_id = await storage.groups.create(actor.uid, record, now, _limits(services))
    info = await storage.groups.info(group_id, None)
    online = await services.presence.online_among([m.user_id for m in info.members])
    key = replay.group(group_id, "group_created", now)
    for member in info.members:
        shown = shapes.group_info(info, member.user_id, online)
        services.hub.tell([member.user_id], notices.GROUP_CREATED(shown), key=key)
    return shapes.group_info(info, actor.uid, online)


async def update(services: Services, actor: Actor, record: GroupChange) -> dict[str, Any]:
    """Admins and the owner; every member gets ``group_updated``: the name, description, settings and ``extra`` now."""
    record = record.checked(services.config.messages)
    now = services.clock.seconds()
    members, written = await services.storage.groups.update(actor.uid, record, now)
    updated = shapes.group_updated(written)
    services.hub.tell(members, notices.GROUP_UPDATED(updated), key=replay.group(record.chat_id, "group_updated", now))
    services.webhooks.wake()  # ``group.updated``, read from the feed
    await record_moderation(services, actor, "group.update", record.chat_id)
    return updated


async def add_member(services: Services, actor: Actor, record: GroupMember) -> dict[str, Any]:
    """An admin adds a friend; every member (the new one too) is told; ``group.member_added`` webhook."""
    chat_id, user_id, now = record.chat_id, record.user_id, services.clock.seconds()
    username, told = await services.storage.groups.add_member(chat_id, actor.uid, user_id, now, _limits(services))
    added = {"chat_id": chat_id, "user_id": user_id, "username": username}
    key = replay.member("member_added", chat_id, user_id, now)
    services.hub.tell(told, notices.GROUP_MEMBER_ADDED(added), key=key)
    services.webhooks.wake()  # ``group.member_added``, read from the feed
    await record_moderation(services, actor, "group.add_member", chat_id, user_id)
    return added


async def remove_member(services: Services, actor: Actor, record: GroupMember) -> dict[str, Any]:
    """An admin removes ``user_id``, or a member leaves (``user_id`` is the actor); the members and they are told.

    The owner leaving makes another member owner: ``member_role_changed`` with ``by`` null.
    """
    now = services.clock.seconds()
    change = await services.storage.groups.remove_member(record.chat_id, actor.uid, record.user_id, now)
    removed = {"chat_id": record.chat_id, "user_id": record.user_id}
    key = replay.member("member_removed", record.chat_id, record.user_id, now)
    services.hub.tell([*change.members, record.user_id], notices.GROUP_MEMBER_REMOVED(removed), key=key)
    if change.promoted is not None:
        _announce_role(services, record.chat_id, change.members, change.promoted, now)
    services.webhooks.wake()  # ``group.member_removed`` (and ``group.member_role_changed``), read from the feed
    await record_moderation(services, actor, "group.remove_member", record.chat_id, record.user_id)
    return removed


async def set_member_role(services: Services, actor: Actor, record: RoleChange) -> dict[str, Any]:
    """Admins set roles below their own; the owner hands over (two changes); every member is told each.

    The answer is the ``member_role_changed`` of ``user_id`` (unchanged: the
    role they had, nothing told or written).
    """
    now = services.clock.seconds()
    members, changes = await services.storage.groups.set_member_role(
        record.chat_id, actor.uid, record.user_id, record.role, now
    )
    for change in changes:
        _announce_role(services, record.chat_id, members, change, now)
    if changes:
        services.webhooks.wake()  # ``group.member_role_changed``, read from the feed
        await record_moderation(services, actor, "group.set_role", record.chat_id, record.user_id, role=record.role)
    return shapes.member_role_changed(record.chat_id, RoleChanged(record.user_id, record.role, actor.uid))


def _announce_role(services: Services, chat_id: int, members: list[int], change: RoleChanged, now: float) -> None:
    key = replay.member_role(chat_id, change.user_id, change.role, now)
    services.hub.tell(members, notices.MEMBER_ROLE_CHANGED(shapes.member_role_changed(chat_id, change)), key=key)


async def members(services: Services, actor: Actor, page: MembersPageAsked) -> dict[str, Any]:
    """``members``: a page of the group's members by user id, for any member; ``next_cursor`` null at the end."""
    found = await services.storage.groups.members_page(page.chat_id, actor.uid, page.after, page.limit + 1)
    more = len(found.members) > page.limit
    shown = replace(found, members=found.members[: page.limit])
    online = await services.presence.online_among([m.user_id for m in shown.members])
    cursor = str(shown.members[-1].user_id) if more else None
    return shapes.members_page(page.chat_id, shown, online, cursor)


def _limits(services: Services) -> MemberLimits:
    """The member caps of the configuration: ``groups.max_members`` (or ``messages.max_group_members``),
    ``groups.max_members_broadcast``."""
    return MemberLimits(services.config.group_member_cap, services.config.groups.max_members_broadcast)
