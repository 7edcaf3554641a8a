"""Message events: send (with replies and mentions), edit, delete, read and delivery receipts, typing.

Plus the reader's own read state (``mark_unread``) and a sender's view of
who got and read a message (``get_read_receipts``).

Each handler builds a record from its payload and calls one command of
`umoc.domain.commands.messages`, which the bot and admin edges call too.
The schemas here only say what type each field has; the records check
what a message may hold, against the configured limits.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import chats, messages
from umoc.events.router import EventContext, Route
from umoc.records.messages import (
    MAX_MENTIONS,
    MESSAGE_TYPE_SCHEMA,
    Deletion,
    Delivered,
    Edit,
    MarkUnread,
    NewMessage,
    NewPoll,
    ReadReceipt,
    ReceiptsQuery,
    Typing,
    message_type,
)
from umoc.records.schema import CLIENT_MSG_ID, SESSION_ID, Bool, Field, Int, IntList, Obj, Schema, Str, Uuid, UuidList

__all__ = ["ROUTES", "answer_sent"]

#: Schema-level ceilings; the configured limits (smaller) are the records'.
_MAX_TEXT = 1_000_000


async def send_message(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    new = NewMessage(
        payload["recipient_id"],
        payload["is_group"],
        payload["content"],
        payload["type"],
        payload["encrypted_content"],
        payload["reply_to"],
        tuple(payload["mentions"] or ()),
        payload["client_msg_id"],
        payload["extra"],
        NewPoll.parse(payload["poll"]),
        payload["thread_id"],
        payload["also_in_chat"],
    )
    return answer_sent(ctx, await messages.send(ctx.services, ctx.actor, new))


def answer_sent(ctx: EventContext, sent: dict[str, Any]) -> dict[str, Any]:
    """A retry told nobody (``duplicate``): the asking socket still gets its ``new_message``, as the ack."""
    if sent.get("duplicate"):
        ctx.socket.tell(notices.NEW_MESSAGE(sent))
    return sent


async def edit_message(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``message_edited`` to every member; the ack carries the editor's view of it."""
    return await messages.edit(ctx.services, ctx.actor, Edit(payload["message_id"], payload["content"]))


async def delete_message(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await messages.delete(ctx.services, ctx.actor, Deletion(payload["message_id"]))


async def read_receipt(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    receipt = ReadReceipt(payload["sender_id"], tuple(payload["message_ids"]))
    return await messages.mark_read(ctx.services, ctx.actor, receipt)


async def mark_unread(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    mark = MarkUnread(payload["chat_id"], payload["is_group"], payload["from_message_id"])
    return await chats.mark_unread(ctx.services, ctx.actor, mark)


async def get_read_receipts(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await messages.read_receipts(ctx.services, ctx.actor, ReceiptsQuery(payload["message_id"]))


async def message_delivered(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await messages.mark_delivered(ctx.services, ctx.actor, Delivered(tuple(payload["message_ids"])))


async def typing(ctx: EventContext, payload: dict[str, Any]) -> None:
    state = Typing(payload["recipient_id"], payload["is_group"], payload["is_typing"])
    await messages.typing(ctx.services, ctx.actor, state)


ROUTES = [
    Route(
        "send_message",
        Schema(
            SESSION_ID,
            Int("recipient_id"),
            Str("content", max_length=_MAX_TEXT),
            Bool("is_group", required=False, default=False),
            Field("type", lambda _name, value: message_type(value), False, "text", MESSAGE_TYPE_SCHEMA),
            Str("encrypted_content", required=False, max_length=_MAX_TEXT),
            Uuid("reply_to", required=False),
            IntList("mentions", MAX_MENTIONS, required=False),
            CLIENT_MSG_ID,
            Obj("extra", required=False),
            Obj("poll", required=False),
            Uuid("thread_id", required=False),
            Bool("also_in_chat", required=False, default=False),
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
        "mark_unread",
        Schema(SESSION_ID, Int("chat_id"), Bool("is_group", required=False, default=False), Uuid("from_message_id")),
        mark_unread,
        rate_class="reads",
    ),
    Route(
        "get_read_receipts",
        Schema(SESSION_ID, Uuid("message_id")),
        get_read_receipts,
        response=notices.READ_RECEIPTS,
        rate_class="reads",
        writes=False,
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
        writes=False,  # told to sockets, never stored
    ),
]
