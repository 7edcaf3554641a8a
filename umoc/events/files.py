"""File sharing events: ``upload_file_prepare`` and ``upload_file_complete``.

Prepare checks what can be checked before any byte moves (name, size, type,
the right to write to the chat) and hands out a single-use upload token;
the bytes then go over plain HTTP (``umoc.web.uploads``), never through the
socket.  Complete turns a whole upload into a chat message whose content is
the file's metadata as a JSON string, as the spec's Type Definitions say.
The rules are `umoc.domain.files.FileManager`'s, the message is posted by
`umoc.domain.commands.messages.share_file`.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import messages
from umoc.errors import UserError
from umoc.events.messages import answer_sent
from umoc.events.router import EventContext, Route
from umoc.records.files import FileOffer, FileShare
from umoc.records.schema import CLIENT_MSG_ID, SESSION_ID, Bool, Enum, Int, Schema, Str, Uuid

__all__ = ["ROUTES"]


async def upload_file_prepare(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A chat file (``recipient_id``/``is_group``), or with ``purpose: "avatar"`` an image for the profile."""
    if payload["purpose"] == "avatar":
        return await ctx.services.files.prepare_avatar(
            ctx.user_id, payload["file_name"], payload["file_size"], payload["file_type"]
        )
    if payload["recipient_id"] is None or payload["is_group"] is None:
        raise UserError("Missing 'recipient_id' or 'is_group' (only an avatar needs no chat)", code="invalid_argument")
    offer = FileOffer(
        payload["recipient_id"], payload["is_group"], payload["file_name"], payload["file_size"], payload["file_type"]
    )
    return await messages.prepare_file(ctx.services, ctx.actor, offer)


async def upload_file_complete(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Post the ``new_message`` for a whole upload, once; the ack carries the message."""
    share = FileShare(
        payload["file_id"],
        payload["recipient_id"],
        payload["is_group"],
        payload["file_name"],
        payload["file_type"],
        payload["client_msg_id"],
        payload["thread_id"],
        payload["also_in_chat"],
    )
    return answer_sent(ctx, await messages.share_file(ctx.services, ctx.actor, share))


ROUTES = [
    Route(
        "upload_file_prepare",
        Schema(
            SESSION_ID,
            Int("recipient_id", required=False),
            Bool("is_group", required=False),
            Str("file_name", max_length=4096),
            Int("file_size"),
            Str("file_type", max_length=255),
            Enum("purpose", ("message", "avatar"), required=False, default="message"),
        ),
        upload_file_prepare,
        response=notices.FILE_UPLOAD_READY,
        rate_class="uploads",
    ),
    Route(
        "upload_file_complete",
        Schema(
            SESSION_ID,
            Uuid("file_id"),
            Int("recipient_id"),
            Bool("is_group"),
            Str("file_name", max_length=4096),
            Str("file_type", max_length=255),
            CLIENT_MSG_ID,
            Uuid("thread_id", required=False),
            Bool("also_in_chat", required=False, default=False),
        ),
        upload_file_complete,
        rate_class="messages",
    ),
]
