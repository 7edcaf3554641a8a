"""Message events: send (with replies and mentions), edit, delete, read and delivery receipts, typing.

`post_message` is the one way a message enters UMOC from a socket (the
files events use it too); it is `umoc.domain.messaging.post_message`, which
bots' messages go through as well.
"""

from __future__ import annotations

import json
from typing import Any

from umoc.domain import messaging, notices
from umoc.domain.access import MESSAGE_TYPES, require_writable_chat
from umoc.domain.notices import shapes
from umoc.errors import UserError
from umoc.events.router import EventContext, Route
from umoc.events.schema import SESSION_ID, Bool, Enum, Int, IntList, Schema, Str, Uuid, UuidList
from umoc.timefmt import iso

__all__ = ["ROUTES", "post_message"]

#: Schema-level ceilings; the configured limits (smaller) are checked in the handlers.
_MAX_TEXT = 1_000_000
#: Users one message may mention.
MAX_MENTIONS = 50


async def post_message(
    ctx: EventContext,
    recipient_id: int,
    is_group: bool,
    msg_type: str,
    content: str,
    encrypted_content: str | None = None,
    reply_to: str | None = None,
    mentions: list[int] | None = None,
) -> dict[str, Any]:
    """`umoc.domain.messaging.post_message` as ``ctx``'s user: store, deliver, push, webhooks."""
    return await messaging.post_message(
        ctx.services,
        ctx.user_id,
        ctx.username,
        recipient_id,
        is_group,
        msg_type,
        content,
        encrypted_content,
        reply_to,
        mentions,
    )


async def send_message(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    limits = ctx.services.config.messages
    content = payload["content"]
    if len(content) > limits.max_content_length:
        raise UserError(f"Invalid 'content': at most {limits.max_content_length} characters")
    encrypted = payload["encrypted_content"]
    if encrypted is not None and len(encrypted) > limits.max_encrypted_length:
        raise UserError(f"Invalid 'encrypted_content': at most {limits.max_encrypted_length} characters")
    if payload["type"] != "text":
        # The spec stores file-like messages as a JSON string of metadata.
        try:
            metadata = json.loads(content)
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            raise UserError("Invalid 'content': a non-text message carries a JSON object")
    return await post_message(
        ctx,
        payload["recipient_id"],
        payload["is_group"],
        payload["type"],
        content,
        encrypted,
        payload["reply_to"],
        payload["mentions"],
    )


async def edit_message(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``message_edited`` to every member; the ack carries the editor's view of it."""
    limits = ctx.services.config.messages
    content = payload["content"]
    if len(content) > limits.max_content_length:
        raise UserError(f"Invalid 'content': at most {limits.max_content_length} characters")
    edit = await ctx.services.storage.edits.edit(
        ctx.user_id, payload["message_id"], content, ctx.now(), limits.edit_window
    )
    target = edit.target
    for users, chat_id in target.views():
        edited = shapes.message_edited(target.id, chat_id, target.is_group, edit.content, edit.edited_at)
        ctx.services.hub.tell(users, notices.MESSAGE_EDITED(edited))
    mine = shapes.message_edited(
        target.id, target.chat_id_for(ctx.user_id), target.is_group, edit.content, edit.edited_at
    )
    ctx.services.webhooks.emit("message.edited", {**mine, "sender_id": ctx.user_id})
    return mine


async def delete_message(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()
    _chat_id, audience = await ctx.services.storage.messages.delete(ctx.user_id, payload["message_id"], now)
    deleted = {"message_id": payload["message_id"], "sender_id": ctx.user_id, "timestamp": iso(now)}
    ctx.services.hub.tell(audience, notices.MESSAGE_DELETED(deleted))
    ctx.services.webhooks.emit("message.deleted", {**deleted, "deleted_by": ctx.user_id})
    return deleted


async def read_receipt(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    if len(payload["message_ids"]) > ctx.services.config.messages.max_ids_per_receipt:
        raise UserError(f"Invalid 'message_ids': at most {ctx.services.config.messages.max_ids_per_receipt} ids")
    now = ctx.now()
    ids = await ctx.services.storage.messages.mark_read(ctx.user_id, payload["sender_id"], payload["message_ids"], now)
    receipt = {"reader_id": ctx.user_id, "reader_username": ctx.username, "message_ids": ids, "timestamp": iso(now)}
    # Reads of messages sent before a block still count for the reader, but a
    # block stops everything between the two users, read receipts included.
    if not await ctx.services.storage.contacts.blocked_between(ctx.user_id, payload["sender_id"]):
        ctx.services.hub.tell([payload["sender_id"]], notices.MESSAGES_READ(receipt))
    return receipt


async def message_delivered(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Tell each sender which of their messages reached this user's client (unless the user turned that off)."""
    if len(payload["message_ids"]) > ctx.services.config.messages.max_ids_per_receipt:
        raise UserError(f"Invalid 'message_ids': at most {ctx.services.config.messages.max_ids_per_receipt} ids")
    now = ctx.now()
    found = await ctx.services.storage.deliveries.mark_delivered(ctx.user_id, payload["message_ids"], now)
    for delivered in found:
        ctx.services.hub.tell(
            [delivered.sender_id], notices.MESSAGES_DELIVERED(shapes.messages_delivered(delivered, ctx.user_id, now))
        )
    return {"message_ids": [i for d in found for i in d.message_ids]}


async def typing(ctx: EventContext, payload: dict[str, Any]) -> None:
    """Group indicators also carry ``chat_id`` and ``is_group``: without them a client cannot place them."""
    recipient_id, is_group = payload["recipient_id"], payload["is_group"]
    indicator: dict[str, Any] = {
        "user_id": ctx.user_id,
        "username": ctx.username,
        "is_typing": payload["is_typing"],
        "timestamp": ctx.now(),
    }
    if is_group:
        audience = await ctx.services.storage.groups.typing_audience(recipient_id, ctx.user_id)
        indicator.update(chat_id=recipient_id, is_group=True)
    else:
        await require_writable_chat(ctx.services.storage, ctx.user_id, recipient_id, False)
        audience = [recipient_id]
    ctx.services.hub.tell(audience, notices.TYPING_INDICATOR(indicator))


ROUTES = [
    Route(
        "send_message",
        Schema(
            SESSION_ID,
            Int("recipient_id"),
            Str("content", max_length=_MAX_TEXT),
            Bool("is_group", required=False, default=False),
            Enum("type", MESSAGE_TYPES, required=False, default="text"),
            Str("encrypted_content", required=False, max_length=_MAX_TEXT),
            Uuid("reply_to", required=False),
            IntList("mentions", MAX_MENTIONS, required=False),
        ),
        send_message,
        rate_class="messages",
    ),
    Route(
        "edit_message",
        Schema(SESSION_ID, Uuid("message_id"), Str("content", max_length=_MAX_TEXT)),
        edit_message,
        rate_class="messages",
    ),
    Route("delete_message", Schema(SESSION_ID, Uuid("message_id")), delete_message, rate_class="messages"),
    Route(
        "read_receipt",
        Schema(SESSION_ID, UuidList("message_ids", max_items=10_000), Int("sender_id")),
        read_receipt,
        rate_class="reads",
    ),
    Route(
        "message_delivered",
        Schema(SESSION_ID, UuidList("message_ids", max_items=10_000)),
        message_delivered,
        rate_class="reads",
    ),
    Route(
        "typing",
        Schema(
            SESSION_ID,
            Int("recipient_id"),
            Bool("is_typing"),
            Bool("is_group", required=False, default=False),
        ),
        typing,
        rate_class="typing",
    ),
]
