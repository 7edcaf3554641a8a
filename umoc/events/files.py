"""File sharing events: ``upload_file_prepare`` and ``upload_file_complete``.

Prepare checks what can be checked before any byte moves (name, size, type,
the right to write to the chat) and hands out a single-use upload token;
the bytes then go over plain HTTP (``umoc.web.uploads``), never through the
socket.  Complete turns a whole upload into a chat message whose content is
the file's metadata as a JSON string, as the spec's Type Definitions say.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from typing import Any

from umoc.config import UploadsConfig
from umoc.credentials import new_token, token_digest
from umoc.events import access, messages
from umoc.events.errors import UserError
from umoc.events.router import EventContext, Route
from umoc.events.schema import Bool, Int, Schema, Str, Uuid

__all__ = ["ROUTES", "check_file_name", "download_url", "message_type_for", "normalise_type"]

#: Separators of any platform a client may save the file on, and NUL.
_SEPARATORS = frozenset("/\\:\x00")
#: Bidirectional overrides and isolates: they make "gpj.exe" display as "exe.jpg".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def check_file_name(name: str, max_length: int) -> str:
    """The client's file name if it is a plain name: no path, no control or bidi characters.

    The name is only ever shown and offered back in Content-Disposition (files
    are stored by id), but clients save files under it, so it must not be able
    to climb directories or disguise its extension.
    """
    if not 1 <= len(name) <= max_length:
        raise UserError(f"Invalid 'file_name': expected 1 to {max_length} characters")
    for char in name:
        if char in _SEPARATORS or char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise UserError("Invalid 'file_name': no path separators or control characters allowed")
    if not name.strip(" ."):
        raise UserError("Invalid 'file_name': not a file name")
    return name


def normalise_type(file_type: str) -> str:
    """MIME types compare case-insensitively; parameters (``; charset=``) are not part of the type."""
    return file_type.split(";", 1)[0].strip().lower()


def message_type_for(file_type: str, config: UploadsConfig) -> str | None:
    """``image``/``video``/``audio``/``file``: the allow-list the type is in, or None if in none."""
    if not _MIME.fullmatch(file_type):
        return None
    for kind, types in config.allowed_types.items():
        if file_type in types:
            return kind
    return None


def download_url(file_id: str) -> str:
    return f"/api/files/{file_id}"


async def upload_file_prepare(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate the file and the chat, record the upload, answer with its URL and one-time token."""
    config = ctx.app.config.uploads
    file_name = check_file_name(payload["file_name"], config.max_file_name)
    file_size = payload["file_size"]
    if file_size > config.max_size:
        raise UserError(f"File too large: at most {config.max_size} bytes")
    file_type = normalise_type(payload["file_type"])
    if message_type_for(file_type, config) is None:
        raise UserError(f"File type '{file_type[:100]}' is not allowed")
    await access.require_writable_chat(ctx, payload["recipient_id"], payload["is_group"])
    file_id, token, now = str(uuid.uuid4()), new_token(), ctx.now()
    await ctx.app.storage.files.create(
        file_id, ctx.user_id, payload["recipient_id"], payload["is_group"], file_name, file_type, file_size,
        token_digest(token), now, now + config.expires_in,
    )
    return {
        "file_id": file_id,
        "upload_url": f"/api/upload/{file_id}",
        "upload_token": token,
        "expires_in": int(config.expires_in),
    }


async def upload_file_complete(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Post the ``new_message`` for a whole upload, once; the ack carries the message."""
    files = ctx.app.storage.files
    file_id = payload["file_id"]
    record = await files.get(file_id)
    if record is None or record.uploader_id != ctx.user_id:
        raise UserError("Unknown file")
    if record.chat_id != payload["recipient_id"] or record.is_group != payload["is_group"]:
        raise UserError("The file was prepared for another chat")
    if record.file_name != payload["file_name"] or record.file_type != normalise_type(payload["file_type"]):
        raise UserError("'file_name' and 'file_type' must be those given to upload_file_prepare")
    if record.completed_at is not None:
        raise UserError("File already shared")
    if record.uploaded_at is None:
        raise UserError("The file has not arrived whole yet")
    await access.require_writable_chat(ctx, record.chat_id, record.is_group)
    if not await files.claim_completion(file_id, ctx.user_id, ctx.now()):
        raise UserError("File already shared")
    content = json.dumps(
        {
            "file_id": file_id,
            "file_name": record.file_name,
            "file_size": record.file_size,
            "file_type": record.file_type,
            "url": download_url(file_id),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
    kind = message_type_for(record.file_type, ctx.app.config.uploads) or "file"
    try:
        message = await messages.post_message(ctx, record.chat_id, record.is_group, kind, content)
    except BaseException:
        await files.release_completion(file_id)
        raise
    await files.set_message(file_id, message["message_id"])
    return message


_SESSION = Str("sessionID", required=False, max_length=64)

ROUTES = [
    Route(
        "upload_file_prepare",
        Schema(
            _SESSION,
            Int("recipient_id"),
            Bool("is_group"),
            Str("file_name", max_length=4096),
            Int("file_size"),
            Str("file_type", max_length=255),
        ),
        upload_file_prepare,
        response="file_upload_ready",
        rate_class="uploads",
    ),
    Route(
        "upload_file_complete",
        Schema(
            _SESSION,
            Uuid("file_id"),
            Int("recipient_id"),
            Bool("is_group"),
            Str("file_name", max_length=4096),
            Str("file_type", max_length=255),
        ),
        upload_file_complete,
        rate_class="messages",
    ),
]
