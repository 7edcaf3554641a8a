"""Chat events: the chat list, one chat's details, and paged history.

Each costs a fixed number of store calls whatever the number of chats or
messages; presence comes from `Presence` in one batch.
"""

from __future__ import annotations

from typing import Any

from umoc.clock import iso, utc_day
from umoc.events.access import presence_fields, refused_as_error
from umoc.events.errors import UserError
from umoc.events.router import EventContext, Route
from umoc.events.schema import Bool, Int, Schema, Str
from umoc.storage.groups import GroupInfo
from umoc.storage.messages import UNKNOWN_CHAT

__all__ = ["ROUTES", "group_payload"]

_SESSION = Str("sessionID", required=False, max_length=64)
MAX_PAGE_SIZE = 100


def group_payload(info: GroupInfo, viewer_id: int, online: set[int]) -> dict[str, Any]:
    """The ``chat_info`` shape of a group as ``viewer_id`` sees it (also ``group_created``)."""
    members = []
    for m in info.members:
        is_online, last_seen = presence_fields(info.presence_visible(viewer_id, m.user_id), m.user_id in online,
                                               m.last_seen)
        members.append(
            {
                "user_id": m.user_id,
                "username": m.username,
                "is_online": is_online,
                "last_seen": last_seen,
                "is_admin": m.is_admin,
            }
        )
    return {
        "id": info.id,
        "name": info.name,
        "description": info.description,
        "created_at": iso(info.created_at),
        "is_group": True,
        "members": members,
        "member_count": len(members),
        "is_admin": info.is_admin(viewer_id),
    }


async def get_chats(ctx: EventContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    entries = await ctx.app.storage.messages.chat_list(ctx.user_id)
    online = await ctx.app.presence.online_among([e.id for e in entries if not e.is_group and e.presence_visible])
    chats = []
    for e in entries:
        last = e.last_message.summary() if e.last_message is not None else None
        if e.is_group:
            chats.append(
                {
                    "id": e.id,
                    "name": e.name,
                    "description": e.description,
                    "member_count": e.member_count,
                    "last_message": last,
                    "unread_count": e.unread_count,
                    "is_group": True,
                }
            )
        else:
            is_online, last_seen = presence_fields(e.presence_visible, e.id in online, e.last_seen)
            chats.append(
                {
                    "id": e.id,
                    "username": e.username,
                    "status": "online" if is_online else "offline",
                    "last_seen": last_seen,
                    "last_message": last,
                    "unread_count": e.unread_count,
                    "is_group": False,
                }
            )
    return chats


async def get_chat_info(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    chat_id, storage = payload["chat_id"], ctx.app.storage
    if payload["is_group"]:
        info = await refused_as_error(storage.groups.info(chat_id, ctx.user_id))
        online = await ctx.app.presence.online_among([m.user_id for m in info.members])
        return group_payload(info, ctx.user_id, online)
    contact = await storage.contacts.get(ctx.user_id, chat_id)
    if contact is None:
        # A user who blocked us is no longer our contact, but our chat with them
        # remains: it is shown with no status and no presence.
        if not await storage.messages.has_direct_chat(ctx.user_id, chat_id):
            raise UserError(UNKNOWN_CHAT)
        peer = await storage.users.by_id(chat_id)
        if peer is None:
            raise UserError(UNKNOWN_CHAT)
        return {
            "id": peer.id,
            "username": peer.username,
            "is_online": False,
            "last_seen": None,
            "status": None,
            "is_group": False,
            "streak": 0,
            "continue_streak": False,
        }
    online = await ctx.app.presence.online_among([chat_id] if contact.mutual_friend else [])
    is_online, last_seen = presence_fields(contact.mutual_friend, chat_id in online, contact.last_seen)
    streak, continue_streak = contact.streak_on(utc_day(ctx.now()))
    return {
        "id": contact.user_id,
        "username": contact.username,
        "is_online": is_online,
        "last_seen": last_seen,
        "status": contact.status,
        "is_group": False,
        "streak": streak,
        "continue_streak": continue_streak,
    }


async def get_chat_history(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    history = await refused_as_error(
        ctx.app.storage.messages.history(
            ctx.user_id, payload["chat_id"], payload["is_group"], payload["page"], payload["page_size"]
        )
    )
    messages = []
    for message, is_read in history.messages:
        item = {
            "message_id": message.id,
            "sender_id": message.sender_id,
            "sender_username": message.sender_username,
            "content": message.content,
            "type": message.type,
            "timestamp": iso(message.created_at),
            "is_read": is_read,
        }
        if message.encrypted_content is not None:
            item["encrypted_content"] = message.encrypted_content
        messages.append(item)
    return {
        "chat_id": history.chat_id,
        "is_group": history.is_group,
        "messages": messages,
        "page": history.page,
        "total_pages": history.total_pages,
        "total_messages": history.total_messages,
    }


_CHAT = (_SESSION, Int("chat_id"), Bool("is_group", required=False, default=False))

ROUTES = [
    Route("get_chats", Schema(_SESSION), get_chats, response="chats"),
    Route("get_chat_info", Schema(*_CHAT), get_chat_info, response="chat_info"),
    Route(
        "get_chat_history",
        Schema(
            *_CHAT,
            Int("page", required=False, default=1, maximum=10_000_000),
            Int("page_size", required=False, default=20, maximum=MAX_PAGE_SIZE),
        ),
        get_chat_history,
        response="chat_history",
        rate_class="reads",
    ),
]
