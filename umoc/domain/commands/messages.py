"""Messages: send, share a file, edit, delete, read and delivery receipts, typing.

`send` is the one way a message enters UMOC, from a socket, a bot or a
shared upload: the permission check, the insert and every counter it moves
are one write (``messages.post``); the broadcast to sockets happens only
after that commits, and then, never waiting, pushes to recipients with no
socket and the ``message.created`` webhook.

`delete` is the one way a message leaves: the sender's own from a socket,
anybody's for an operator (`Actor.is_admin`: ``/api/admin/`` and
``umoc-admin``), with the same ``message_deleted`` notice, feed row and
``message.deleted`` webhook on every path.  ``deleted_by`` is the deleting
user's id, or null for ``umoc-admin`` (an operator acting for no account).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from umoc.domain import notices
from umoc.domain.access import require_writable_chat
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.ids import MessageIds
from umoc.records import Actor
from umoc.records.files import FileOffer, FileShare
from umoc.records.messages import Deletion, Delivered, Edit, NewMessage, ReadReceipt, Typing
from umoc.timefmt import iso

__all__ = ["delete", "edit", "mark_delivered", "mark_read", "prepare_file", "send", "share_file", "typing"]

log = Logger()

#: Message ids for this process: UUID v4 strings without a system call each (see `umoc.ids`).
_IDS = MessageIds()


async def send(services: Services, actor: Actor, new: NewMessage) -> dict[str, Any]:
    """Store a message and deliver ``new_message`` to every socket of its audience; the payload.

    The audience is both users of a direct chat, or the group's members at
    the moment the message is stored (the sender's own sockets included).
    Raises `UserError` when the message is not well formed, the actor may
    not write to that chat, ``reply_to`` is not a message of that chat, or
    a mentioned user is not a member of it; nothing is stored then.
    """
    new = new.checked(services.config.messages)
    message, audience = await services.storage.messages.post(actor, new, _IDS.new(), services.clock.seconds())
    services.metrics.messages_stored.inc()
    payload = shapes.new_message(message)
    services.hub.tell(audience, notices.NEW_MESSAGE(payload), key=replay.message(message.id))
    services.push.message_posted(message, audience)
    services.webhooks.emit("message.created", payload)
    return payload


async def prepare_file(services: Services, actor: Actor, offer: FileOffer) -> dict[str, Any]:
    """Check a file about to be uploaded to a chat; its upload URL and one-time token."""
    return await services.files.prepare(actor.uid, offer)


async def share_file(services: Services, actor: Actor, share: FileShare) -> dict[str, Any]:
    """Post the ``new_message`` for a whole upload, once; the payload.

    The upload is claimed first (one message per file); a refused message
    gives it back (it may be shared again), a posted one marks it shared
    with that message.
    """
    files = services.files
    upload = await files.claim_for_sharing(actor.uid, share)
    record = upload.record
    try:
        message = await send(
            services, actor, NewMessage(record.chat_id, record.is_group, upload.content, upload.message_type)
        )
    except BaseException:
        await files.unclaim(record.id)
        raise
    await files.shared(record.id, message["message_id"])
    return message


async def edit(services: Services, actor: Actor, change: Edit) -> dict[str, Any]:
    """``message_edited`` to every member (each with their own chat id); the editor's view of it."""
    limits = services.config.messages
    change = change.checked(limits)
    edited = await services.storage.edits.edit(actor.uid, change, services.clock.seconds(), limits.edit_window)
    target = edited.target
    key = replay.edit(target.id, edited.edited_at)
    for users, chat_id in target.views():
        shown = shapes.message_edited(target.id, chat_id, target.is_group, edited.content, edited.edited_at)
        services.hub.tell(users, notices.MESSAGE_EDITED(shown), key=key)
    mine = shapes.message_edited(
        target.id, target.chat_id_for(actor.uid), target.is_group, edited.content, edited.edited_at
    )
    services.webhooks.emit("message.edited", {**mine, "sender_id": actor.uid})
    return mine


async def delete(services: Services, actor: Actor, deletion: Deletion) -> dict[str, Any]:
    """Soft-delete a message; ``message_deleted`` to its chat's members, the ``message.deleted`` webhook.

    A user deletes their own message (anybody else's is "Message not
    found"); an operator (`Actor.is_admin`) anybody's, logged.
    """
    now = services.clock.seconds()
    deleted = await services.storage.messages.delete(actor, deletion, now)
    payload = {"message_id": deletion.message_id, "sender_id": deleted.sender_id, "timestamp": iso(now)}
    services.hub.tell(deleted.audience, notices.MESSAGE_DELETED(payload), key=replay.delete(deletion.message_id, now))
    services.webhooks.emit("message.deleted", {**payload, "deleted_by": actor.user_id})
    if actor.is_admin:
        log.info(
            "Message {message_id} in chat {chat_id} deleted by {actor}",
            message_id=deletion.message_id,
            chat_id=deleted.chat_id,
            actor=actor.name,
        )
    return payload


async def mark_read(services: Services, actor: Actor, receipt: ReadReceipt) -> dict[str, Any]:
    """Mark messages read; ``messages_read`` to their sender unless a block stands between the two."""
    receipt = receipt.checked(services.config.messages)
    now = services.clock.seconds()
    ids = await services.storage.messages.mark_read(actor.uid, receipt, now)
    answer = {"reader_id": actor.uid, "reader_username": actor.name, "message_ids": ids, "timestamp": iso(now)}
    # Reads of messages sent before a block still count for the reader, but a
    # block stops everything between the two users, read receipts included.
    if not await services.storage.contacts.blocked_between(actor.uid, receipt.sender_id):
        services.hub.tell([receipt.sender_id], notices.MESSAGES_READ(answer), key=replay.read(actor.uid, ids, now))
    return answer


async def mark_delivered(services: Services, actor: Actor, delivered: Delivered) -> dict[str, Any]:
    """Tell each sender which of their messages reached this user's client (unless the user turned that off)."""
    delivered = delivered.checked(services.config.messages)
    now = services.clock.seconds()
    found = await services.storage.deliveries.mark_delivered(actor.uid, list(delivered.message_ids), now)
    for each in found:
        services.hub.tell(
            [each.sender_id],
            notices.MESSAGES_DELIVERED(shapes.messages_delivered(each, actor.uid, now)),
            key=replay.delivered(actor.uid, each.chat_id, each.is_group, now),
        )
    return {"message_ids": [i for d in found for i in d.message_ids]}


async def typing(services: Services, actor: Actor, state: Typing) -> None:
    """``typing_indicator`` to the chat; group indicators also carry ``chat_id`` and ``is_group``.

    Without them a client could not place a group's indicator.
    """
    indicator: dict[str, Any] = {
        "user_id": actor.uid,
        "username": actor.name,
        "is_typing": state.is_typing,
        "timestamp": services.clock.seconds(),
    }
    if state.is_group:
        audience = await services.storage.groups.typing_audience(state.recipient_id, actor.uid)
        indicator.update(chat_id=state.recipient_id, is_group=True)
    else:
        await require_writable_chat(services.storage, actor.uid, state.recipient_id, False)
        audience = [state.recipient_id]
    services.hub.tell(audience, notices.TYPING_INDICATOR(indicator))
