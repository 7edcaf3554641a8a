"""Joining commands (docs/api.md "Joining groups"): the directory, join_group, approve_join, reject_join.

A join (``open``, or a request approved) tells the members
``group_member_added`` as an admin's add does, and the joiner
``group_joined``, the group in the ``chat_info`` shape; a request tells the
moderators and above ``join_requested``; a rejection tells the requester
``join_rejected``.  The rules are checked in the store's transaction
(`umoc.storage.joining`).
"""

from __future__ import annotations

from typing import Any

from umoc.credentials import new_token
from umoc.domain import notices
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.groups import LISTED_MEMBERS, DirectoryPage, GroupMember, MemberLimits, NewInviteLink

__all__ = ["answer", "create_link", "join", "join_by_invite", "links", "public_groups", "revoke_link"]


async def public_groups(services: Services, actor: Actor, page: DirectoryPage) -> dict[str, Any]:
    """``public_groups``: a page of the directory, by id; ``next_cursor`` null on the last page."""
    found = await services.storage.joining.public(page.query, page.after, page.limit + 1)
    more = len(found) > page.limit
    found = found[: page.limit]
    return {
        "groups": [shapes.public_group(g) for g in found],
        "next_cursor": str(found[-1].chat_id) if more else None,
    }


async def join(services: Services, actor: Actor, chat_id: int) -> dict[str, Any]:
    """Join at once (``open``: the ``group_joined`` payload), or ask (``request``: ``{"status": "requested"}``)."""
    now = services.clock.seconds()
    joined = await services.storage.joining.join(chat_id, actor.uid, now, _limits(services))
    if joined.status == "requested":
        asked = {"chat_id": chat_id, "user_id": actor.uid, "username": joined.username}
        key = replay.join_requested(chat_id, actor.uid, now)
        services.hub.tell(joined.told, notices.JOIN_REQUESTED(asked), key=key)
        return {"status": "requested"}
    return await _welcome(services, chat_id, actor.uid, joined.username, joined.told, now)


async def answer(services: Services, actor: Actor, record: GroupMember, approve: bool) -> dict[str, Any]:
    """A moderator approves (``group_member_added``, ``group_joined``) or rejects (``join_rejected``) a request.

    The ack: ``group_member_added``'s payload, or ``{chat_id, user_id}`` for a rejection.
    """
    now, chat_id, user_id = services.clock.seconds(), record.chat_id, record.user_id
    max_members = _limits(services)
    username, members = await services.storage.joining.answer(actor.uid, record, approve, now, max_members)
    if not approve:
        rejected = {"chat_id": chat_id}
        services.hub.tell([user_id], notices.JOIN_REJECTED(rejected), key=replay.join_rejected(chat_id, now))
        return {"chat_id": chat_id, "user_id": user_id}
    await _welcome(services, chat_id, user_id, username, members, now)
    return {"chat_id": chat_id, "user_id": user_id, "username": username}


async def create_link(services: Services, actor: Actor, link: NewInviteLink) -> dict[str, Any]:
    """``invite_link``: the new link with its code, shown this once (admins and the owner)."""
    made = await services.storage.joining.create_link(actor.uid, link, new_token(), services.clock.seconds())
    return shapes.invite_link(made)


async def links(services: Services, actor: Actor, chat_id: int) -> dict[str, Any]:
    """``invite_links``: the group's usable links, without their codes."""
    found = await services.storage.joining.links(chat_id, actor.uid, services.clock.seconds())
    return {"chat_id": chat_id, "links": [shapes.invite_link(link) for link in found]}


async def revoke_link(services: Services, actor: Actor, code: str | None, link_id: int | None = None) -> dict[str, Any]:
    """Revoke a link, named by its ``code`` or (as ``invite_links`` lists it) its ``link_id``: nobody joins by it
    any more; the ack is ``{chat_id, code, link_id}``."""
    chat_id, link_id = await services.storage.joining.revoke_link(actor.uid, code, services.clock.seconds(), link_id)
    return {"chat_id": chat_id, "code": code, "link_id": link_id}


async def join_by_invite(services: Services, actor: Actor, code: str) -> dict[str, Any]:
    """Join by a link as an ``open`` group is joined: the ``group_joined`` payload."""
    now = services.clock.seconds()
    max_members = _limits(services)
    chat_id, joined = await services.storage.joining.join_by_invite(code, actor.uid, now, max_members)
    return await _welcome(services, chat_id, actor.uid, joined.username, joined.told, now)


async def _welcome(
    services: Services, chat_id: int, user_id: int, username: str, members: list[int], now: float
) -> dict[str, Any]:
    """``group_member_added`` to the members (the joiner too), ``group_joined`` to the joiner; the latter's payload."""
    added = {"chat_id": chat_id, "user_id": user_id, "username": username}
    key = replay.member("member_added", chat_id, user_id, now)
    services.hub.tell(members, notices.GROUP_MEMBER_ADDED(added), key=key)
    info = await services.storage.groups.info(chat_id, user_id, LISTED_MEMBERS)
    online = await services.presence.online_among([m.user_id for m in info.members])
    shown = shapes.group_info(info, user_id, online)
    services.hub.tell([user_id], notices.GROUP_JOINED(shown))
    services.webhooks.wake()  # ``group.member_added``, read from the feed
    return shown


def _limits(services: Services) -> MemberLimits:
    """The member caps of the configuration: ``groups.max_members`` (or ``messages.max_group_members``),
    ``groups.max_members_broadcast``."""
    return MemberLimits(services.config.group_member_cap, services.config.groups.max_members_broadcast)
