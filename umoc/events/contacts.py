"""Contact events: list, request, accept, reject, block, unblock, remove.

Each change is one command of `umoc.domain.commands.contacts`, which the
bot API calls too.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from umoc.domain import notices
from umoc.domain.commands import contacts
from umoc.domain.notices import shapes
from umoc.domain.services import Services
from umoc.events.router import EventContext, Handler, Route
from umoc.records import Actor
from umoc.records.contacts import ContactChange, ContactRequest
from umoc.records.schema import SESSION_ID, Int, Schema, Str
from umoc.timefmt import utc_day

__all__ = ["ROUTES"]

Command = Callable[[Services, Actor, ContactChange], Awaitable[dict[str, Any]]]


async def get_contacts(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.services.storage.contacts.list(ctx.user_id)
    online = await ctx.services.presence.online_among([c.user_id for c in found if c.mutual_friend])
    today = utc_day(ctx.now())
    return {"contacts": [shapes.contact_entry(c, online, today) for c in found]}


def _change(command: Command) -> Handler:
    """A handler that builds the `ContactChange` from ``contact_id`` and runs ``command``."""

    async def handle(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
        return await command(ctx.services, ctx.actor, ContactChange(payload["contact_id"]))

    return handle


async def add_contact(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await contacts.request(ctx.services, ctx.actor, ContactRequest(payload["contact_username"]))


ROUTES = [
    Route("get_contacts", Schema(SESSION_ID), get_contacts, response=notices.CONTACTS, writes=False),
    Route(
        "add_contact",
        Schema(SESSION_ID, Str("contact_username", max_length=64)),
        add_contact,
        rate_class="contacts",
    ),
    Route("accept_contact", Schema(SESSION_ID, Int("contact_id")), _change(contacts.accept), rate_class="contacts"),
    Route("reject_contact", Schema(SESSION_ID, Int("contact_id")), _change(contacts.reject), rate_class="contacts"),
    Route("block_contact", Schema(SESSION_ID, Int("contact_id")), _change(contacts.block), rate_class="contacts"),
    Route("unblock_contact", Schema(SESSION_ID, Int("contact_id")), _change(contacts.unblock), rate_class="contacts"),
    Route("remove_contact", Schema(SESSION_ID, Int("contact_id")), _change(contacts.remove), rate_class="contacts"),
]
