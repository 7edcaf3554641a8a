"""`post_message`: the one way a message enters UMOC, from a socket or a bot.

The permission check, the insert and every counter it moves are one
transaction; the broadcast to sockets happens only after that commits, and
then, never waiting, pushes to recipients with no socket and the
``message.created`` webhook.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.access import MESSAGE_TYPES
from umoc.domain.notices import shapes
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.ids import MessageIds

__all__ = ["post_message"]

#: Message ids for this process: UUID v4 strings without a system call each (see `umoc.ids`).
_IDS = MessageIds()


async def post_message(
    services: Services,
    sender_id: int,
    sender_username: str,
    recipient_id: int,
    is_group: bool,
    msg_type: str,
    content: str,
    encrypted_content: str | None = None,
    reply_to: str | None = None,
    mentions: list[int] | None = None,
) -> dict[str, Any]:
    """Store a message and deliver ``new_message`` to every socket of its audience.

    The audience is both users of a direct chat, or the group's members at
    the moment the message is stored (the sender's own sockets included).
    Returns the ``new_message`` payload.  Raises `UserError` when the user
    may not write to that chat, or ``reply_to`` is not a message of that chat,
    or a mentioned user is not a member of it; nothing is stored then.
    """
    if msg_type not in MESSAGE_TYPES:
        raise UserError(f"Invalid 'type': expected one of {', '.join(MESSAGE_TYPES)}")
    message, audience = await services.storage.messages.post(
        sender_id,
        sender_username,
        recipient_id,
        is_group,
        _IDS.new(),
        msg_type,
        content,
        encrypted_content,
        services.clock.seconds(),
        reply_to,
        mentions or (),
    )
    services.metrics.messages_stored.inc()
    payload = shapes.new_message(message)
    services.hub.tell(audience, notices.NEW_MESSAGE(payload), message_id=message.id)
    services.push.message_posted(message, audience)
    services.webhooks.emit("message.created", payload)
    return payload
