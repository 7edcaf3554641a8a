"""Moderation commands (docs/api.md "Moderation"): ban, unban, list bans, mute, unmute.

Moderators and above act on members of a lower role; the rules are checked
in the store's transaction (`umoc.storage.moderation`).  A ban tells the
members and the banned user ``member_banned``, then ``group_member_removed``
(as leaving does); the messages it deletes go out as ``message_deleted``
with ``deleted_by``, before both.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands.audit import record_moderation
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.groups import Ban, GroupMember, Mute
from umoc.timefmt import iso

__all__ = ["ban", "bans", "mute", "unban", "unmute"]


async def ban(services: Services, actor: Actor, record: Ban) -> dict[str, Any]:
    """Ban ``record.user_id``; the answer is the ``member_banned`` payload.

    A server administrator (an operator actor: the admin API resolving a
    report with ``ban_member``) bans from any group, member or not, any role.
    """
    now = services.clock.seconds()
    banned = await services.storage.moderation.ban(actor.uid, record, now, operator=actor.is_admin)
    hub, chat_id, user_id = services.hub, record.chat_id, record.user_id
    for deleted in banned.deleted:
        payload = {
            "message_id": deleted.message_id,
            "sender_id": deleted.sender_id,
            "timestamp": iso(now),
            "deleted_by": actor.uid,
        }
        hub.tell(deleted.audience, notices.MESSAGE_DELETED(payload), key=replay.delete(deleted.message_id, now))
    entry = banned.ban
    told = [*banned.removal.members, user_id]
    payload = shapes.member_banned(chat_id, user_id, entry.until, entry.reason, entry.by)
    hub.tell(told, notices.MEMBER_BANNED(payload), key=replay.member("member_banned", chat_id, user_id, now))
    removed = {"chat_id": chat_id, "user_id": user_id}
    key = replay.member("member_removed", chat_id, user_id, now)
    hub.tell(told, notices.GROUP_MEMBER_REMOVED(removed), key=key)
    services.webhooks.wake()  # ``group.member_banned``, ``group.member_removed`` (``message.deleted``), from the feed
    await record_moderation(
        services, actor, "group.ban_member", chat_id, user_id, until=entry.until, deleted=len(banned.deleted)
    )
    return payload


async def unban(services: Services, actor: Actor, record: GroupMember) -> dict[str, Any]:
    """Lift a ban in force; only the ack answers (``{chat_id, user_id}``)."""
    await services.storage.moderation.unban(record.chat_id, actor.uid, record.user_id, services.clock.seconds())
    await record_moderation(services, actor, "group.unban_member", record.chat_id, record.user_id)
    return {"chat_id": record.chat_id, "user_id": record.user_id}


async def bans(services: Services, actor: Actor, chat_id: int) -> dict[str, Any]:
    """``bans``: the bans in force, oldest first (moderators and above)."""
    found = await services.storage.moderation.bans(chat_id, actor.uid, services.clock.seconds())
    return {"chat_id": chat_id, "bans": [shapes.ban_entry(b) for b in found]}


async def mute(services: Services, actor: Actor, record: Mute) -> dict[str, Any]:
    """Mute a lower member; every member (the muted one too) gets ``member_muted``."""
    return await _mute(services, actor, record, lift=False)


async def unmute(services: Services, actor: Actor, record: Mute) -> dict[str, Any]:
    """Lift a mute: ``member_muted`` with ``until`` the moment it was lifted."""
    return await _mute(services, actor, record, lift=True)


async def _mute(services: Services, actor: Actor, record: Mute, lift: bool) -> dict[str, Any]:
    now = services.clock.seconds()
    moderation = services.storage.moderation
    muted = await (moderation.unmute if lift else moderation.mute)(actor.uid, record, now)
    payload = shapes.member_muted(record.chat_id, record.user_id, muted.until)
    key = replay.member("member_muted", record.chat_id, record.user_id, now)
    services.hub.tell(muted.members, notices.MEMBER_MUTED(payload), key=key)
    services.webhooks.wake()  # ``group.member_muted``, read from the feed
    action = "group.unmute_member" if lift else "group.mute_member"
    await record_moderation(services, actor, action, record.chat_id, record.user_id, until=muted.until)
    return payload
