"""Chat events: the chat list, one chat's details, and paged history.

Each costs a fixed number of store calls whatever the number of chats or
messages; presence comes from `Presence` in one batch.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.notices import shapes
from umoc.errors import UNKNOWN_CHAT, UserError
from umoc.events.router import EventContext, Route
from umoc.records.groups import LISTED_MEMBERS
from umoc.records.schema import SESSION_ID, Bool, Int, Schema
from umoc.timefmt import utc_day

__all__ = ["ROUTES"]

MAX_PAGE_SIZE = 100


async def get_chats(ctx: EventContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    entries = await ctx.services.storage.messages.chat_list(ctx.user_id)
    online = await ctx.services.presence.online_among([e.id for e in entries if not e.is_group and e.presence_visible])
    return [shapes.chat_list_entry(e, online) for e in entries]


async def get_chat_info(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    chat_id, storage = payload["chat_id"], ctx.services.storage
    if payload["is_group"]:
        info = await storage.groups.info(chat_id, ctx.user_id, LISTED_MEMBERS)
        online = await ctx.services.presence.online_among([m.user_id for m in info.members])
        mentions = await storage.mentions.count(ctx.user_id, chat_id, True)
        return shapes.group_info(info, ctx.user_id, online, mentions)
    contact = await storage.contacts.get(ctx.user_id, chat_id)
    if contact is None:
        # A user who blocked us is no longer our contact, but our chat with them
        # remains: it is shown with no status and no presence.
        if not await storage.messages.has_direct_chat(ctx.user_id, chat_id):
            raise UserError(UNKNOWN_CHAT, code="not_found")
        peer = await storage.users.by_id(chat_id)
        if peer is None:
            raise UserError(UNKNOWN_CHAT, code="not_found")
        mentions = await storage.mentions.count(ctx.user_id, chat_id, False)
        return shapes.former_contact_chat_info(peer.id, peer.username, mentions)
    online = await ctx.services.presence.online_among([chat_id] if contact.mutual_friend else [])
    mentions = await storage.mentions.count(ctx.user_id, chat_id, False)
    return shapes.direct_chat_info(contact, online, utc_day(ctx.now()), mentions)


async def get_chat_history(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    history = await ctx.services.storage.messages.history(
        ctx.user_id, payload["chat_id"], payload["is_group"], payload["page"], payload["page_size"]
    )
    now = ctx.now()
    messages = [shapes.history_message(m, is_read, ctx.user_id, now) for m, is_read in history.messages]
    return {
        "chat_id": history.chat_id,
        "is_group": history.is_group,
        "messages": messages,
        "page": history.page,
        "total_pages": history.total_pages,
        "total_messages": history.total_messages,
    }


_CHAT = (SESSION_ID, Int("chat_id"), Bool("is_group", required=False, default=False))

ROUTES = [
    Route("get_chats", Schema(SESSION_ID), get_chats, response=notices.CHATS, writes=False),
    Route("get_chat_info", Schema(*_CHAT), get_chat_info, response=notices.CHAT_INFO, writes=False),
    Route(
        "get_chat_history",
        Schema(
            *_CHAT,
            Int("page", required=False, default=1, maximum=10_000_000),
            Int("page_size", required=False, default=20, maximum=MAX_PAGE_SIZE),
        ),
        get_chat_history,
        response=notices.CHAT_HISTORY,
        rate_class="reads",
        writes=False,
    ),
]
