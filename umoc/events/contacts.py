"""Contact events: list, request, accept, reject, block, unblock, remove.

Every change is committed before anyone is told, and each notice goes to
all sockets of the users concerned, so a user's other devices stay in step.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.notices import shapes
from umoc.events.router import EventContext, Route
from umoc.events.schema import SESSION_ID, Int, Schema, Str
from umoc.storage.relations import FRIEND, NEW
from umoc.timefmt import utc_day

__all__ = ["ROUTES"]


async def get_contacts(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    contacts = await ctx.services.storage.contacts.list(ctx.user_id)
    online = await ctx.services.presence.online_among([c.user_id for c in contacts if c.mutual_friend])
    today = utc_day(ctx.now())
    return {"contacts": [shapes.contact_entry(c, online, today) for c in contacts]}


async def add_contact(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    target_id, target_name = await ctx.services.storage.contacts.request(
        ctx.user_id, payload["contact_username"], ctx.now()
    )
    added = {"user_id": target_id, "username": target_name, "status": NEW}
    ctx.services.hub.tell([ctx.user_id], notices.CONTACT_ADDED(added))
    ctx.services.hub.tell([target_id], notices.CONTACT_REQUEST({"user_id": ctx.user_id, "username": ctx.username}))
    ctx.services.push.contact_requested(target_id, ctx.user_id, ctx.username)
    return added


async def accept_contact(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    other_id, other_name = await ctx.services.storage.contacts.accept(ctx.user_id, payload["contact_id"], ctx.now())
    mine = {"user_id": other_id, "username": other_name, "status": FRIEND}
    ctx.services.hub.tell([ctx.user_id], notices.CONTACT_ACCEPTED(mine))
    ctx.services.hub.tell(
        [other_id], notices.CONTACT_ACCEPTED({"user_id": ctx.user_id, "username": ctx.username, "status": FRIEND})
    )
    ctx.services.webhooks.emit(
        "contact.accepted",
        {"user_id": ctx.user_id, "username": ctx.username, "requester_id": other_id, "requester_username": other_name},
    )
    return mine


async def reject_contact(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    other_id = payload["contact_id"]
    await ctx.services.storage.contacts.reject(ctx.user_id, other_id, ctx.now())
    mine = {"user_id": other_id}
    ctx.services.hub.tell([ctx.user_id], notices.CONTACT_REJECTED(mine))
    ctx.services.hub.tell([other_id], notices.CONTACT_REJECTED({"user_id": ctx.user_id}))
    return mine


async def block_contact(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Only the blocker is told: a block is not announced to the blocked user."""
    target_id = payload["contact_id"]
    await ctx.services.storage.contacts.block(ctx.user_id, target_id, ctx.now())
    blocked = {"user_id": target_id}
    ctx.services.hub.tell([ctx.user_id], notices.CONTACT_BLOCKED(blocked))
    return blocked


async def unblock_contact(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Only the unblocker is told, as for the block; the two are strangers afterwards."""
    user_id, username = await ctx.services.storage.contacts.unblock(ctx.user_id, payload["contact_id"], ctx.now())
    unblocked = {"user_id": user_id, "username": username}
    ctx.services.hub.tell([ctx.user_id], notices.CONTACT_UNBLOCKED(unblocked))
    return unblocked


async def remove_contact(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Both sides are told, each naming the other; their chat and its history stay."""
    other_id = payload["contact_id"]
    await ctx.services.storage.contacts.remove(ctx.user_id, other_id, ctx.now())
    removed = {"user_id": other_id}
    ctx.services.hub.tell([ctx.user_id], notices.CONTACT_REMOVED(removed))
    ctx.services.hub.tell([other_id], notices.CONTACT_REMOVED({"user_id": ctx.user_id}))
    return removed


ROUTES = [
    Route("get_contacts", Schema(SESSION_ID), get_contacts, response=notices.CONTACTS),
    Route(
        "add_contact",
        Schema(SESSION_ID, Str("contact_username", max_length=64)),
        add_contact,
        rate_class="contacts",
    ),
    Route("accept_contact", Schema(SESSION_ID, Int("contact_id")), accept_contact, rate_class="contacts"),
    Route("reject_contact", Schema(SESSION_ID, Int("contact_id")), reject_contact, rate_class="contacts"),
    Route("block_contact", Schema(SESSION_ID, Int("contact_id")), block_contact, rate_class="contacts"),
    Route("unblock_contact", Schema(SESSION_ID, Int("contact_id")), unblock_contact, rate_class="contacts"),
    Route("remove_contact", Schema(SESSION_ID, Int("contact_id")), remove_contact, rate_class="contacts"),
]
