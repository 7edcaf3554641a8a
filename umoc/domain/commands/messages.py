"""Messages: send, share a file, edit, delete, read and delivery receipts, typing.

`send` is the one way a message enters UMOC, from a socket, a bot or a
shared upload: the permission check, the insert and every counter it moves
are one write (``messages.post``); the broadcast to sockets happens only
after that commits, and then, never waiting, wakes the feed's consumers
that push to recipients with no socket and send the ``message.created``
webhook (`umoc.domain.outbox`: they read the message from the feed).

`delete` is the one way a message leaves: the sender's own from a socket,
anybody's for an operator (`Actor.is_admin`: ``/api/admin/`` and
``umoc-admin``), with the same ``message_deleted`` notice, feed row and
``message.deleted`` webhook on every path.  ``deleted_by`` is the deleting
user's id, or null for ``umoc-admin`` (an operator acting for no account).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from twisted.logger import Logger

from umoc.domain import notices
from umoc.domain.access import require_writable_chat
from umoc.domain.commands.audit import record as audit
from umoc.domain.moderation import check_new_account, check_text
from umoc.domain.notices import replay, shapes
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.ids import MessageIds
from umoc.records import Actor
from umoc.records.audit import AuditEntry
from umoc.records.files import FileOffer, FileShare
from umoc.records.messages import FILE_TYPES, Deletion, Delivered, Edit, NewMessage, ReadReceipt, ReceiptsQuery, Typing
from umoc.storage.messages import KeyTakenError, Message
from umoc.timefmt import iso

__all__ = [
    "KEY_REUSED",
    "delete",
    "edit",
    "mark_delivered",
    "mark_read",
    "prepare_file",
    "read_receipts",
    "send",
    "share_file",
    "typing",
]

log = Logger()

#: The answer to a send whose ``client_msg_id`` the sender gave another message within the window.
KEY_REUSED = "'client_msg_id' was used for another message"

#: Message ids for this process: UUID v4 strings without a system call each (see `umoc.ids`).
_IDS = MessageIds()


async def send(services: Services, actor: Actor, new: NewMessage) -> dict[str, Any]:
    """Store a message and deliver ``new_message`` to every socket of its audience; the payload.

    The audience is both users of a direct chat, or the group's members at
    the moment the message is stored (the sender's own sockets included).
    Raises `UserError` when the message is not well formed, the actor may
    not write to that chat, ``reply_to`` is not a message of that chat, or
    a mentioned user is not a member of it; nothing is stored then.

    With a ``client_msg_id``, the sender's own sockets get it in their
    ``new_message`` (the recipients never see it), and a send whose key the
    sender used within ``messages.idempotency_window`` stores and tells
    nobody: a retry of that message (same chat, type, content, reply and
    mentions) is answered with its payload and ``"duplicate": true``,
    anything else is refused.  The unique index decides which of two
    racing sends (two nodes, two sockets) is the first.
    """
    new = new.checked(services.config.messages)
    new = await _moderated(services, actor, new)
    if services.before_message is not None:
        new = await _hooked(services, actor, new)
    now = services.clock.seconds()
    if new.poll is not None and new.poll.closes_at is not None and new.poll.closes_at <= now:
        raise UserError("Invalid 'poll.closes_at': already past", code="invalid_argument")
    try:
        message, audience = await services.storage.messages.post(
            actor, new, _IDS.new(), now, _keys_since(services, now)
        )
    except KeyTakenError as taken:
        return _retried(new, taken.original)
    services.metrics.messages_stored.inc()
    payload = shapes.new_message(message, now)
    delivery = replay.message(message.id)
    client_msg_id = new.client_msg_id
    thread_notice = _group_thread_updated(message)
    # The audience is a chat's members (or a direct chat's two users): no repeats for the hub to look for.
    if client_msg_id is None:
        services.hub.tell_all(audience, [(notices.NEW_MESSAGE(payload), delivery), *thread_notice], unique=True)
        mine = payload
    else:
        mine = {**payload, "client_msg_id": client_msg_id}
        services.hub.tell_all([actor.uid], [(notices.NEW_MESSAGE(mine), delivery), *thread_notice])
        others = [user_id for user_id in audience if user_id != actor.uid]
        if others:
            services.hub.tell_all(others, [(notices.NEW_MESSAGE(payload), delivery), *thread_notice], unique=True)
    if message.in_thread is not None and not message.is_group:
        _direct_thread_updated(services, message)
    # Push and the ``message.created`` webhook read the message from the feed (the outbox): wake them.
    services.push.wake()
    services.webhooks.wake()
    if services.previews is not None:
        services.previews.after_send(message, audience)  # a substring test unless the text has "http"
    return mine


def _group_thread_updated(reply: Message) -> list[tuple[notices.Notice, None]]:
    """A group reply's ``thread_updated``, told to the members with its ``new_message`` (one pass over them)."""
    if reply.in_thread is None or not reply.is_group:
        return []
    assert reply.thread_id is not None
    shown = shapes.thread_updated((reply.thread_id, reply.recipient_id, True), reply.in_thread)
    return [(notices.THREAD_UPDATED(shown), None)]


def _direct_thread_updated(services: Services, reply: Message) -> None:
    """A direct chat's reply: ``thread_updated`` to each of its two users, with the chat id they know it by."""
    assert reply.in_thread is not None and reply.thread_id is not None
    for user_id, chat_id in ((reply.sender_id, reply.recipient_id), (reply.recipient_id, reply.sender_id)):
        shown = shapes.thread_updated((reply.thread_id, chat_id, False), reply.in_thread)
        services.hub.tell([user_id], notices.THREAD_UPDATED(shown), unique=True)


async def _moderated(services: Services, actor: Actor, new: NewMessage) -> NewMessage:
    """``moderation``: the blocklist on a text (or poll question, or custom type's) content, new accounts' links.

    A file message's content is its metadata and ``encrypted_content`` is opaque: neither is read.
    """
    if new.type in FILE_TYPES:
        return new
    content = check_text(services.config.moderation.blocklist, new.content)
    await check_new_account(services, actor, content)
    return new if content == new.content else dataclasses.replace(new, content=content)


async def _hooked(services: Services, actor: Actor, new: NewMessage) -> NewMessage:
    """``hooks.before_message``: allowed as is, its content replaced (checked again), or refused."""
    assert services.before_message is not None
    message = {
        "type": new.type,
        "content": new.content,
        "encrypted_content": new.encrypted_content,
        "reply_to": new.reply_to,
        "mentions": list(new.mentions),
        "client_msg_id": new.client_msg_id,
    }
    sender = {"user_id": actor.uid, "username": actor.name}
    chat = {"chat_id": new.recipient_id, "is_group": new.is_group}
    verdict = await services.before_message.check(message, sender, chat)
    if verdict.action == "reject":
        raise UserError(f"Message rejected: {verdict.reason}", code="forbidden")
    if verdict.action == "replace" and verdict.content is not None:
        return dataclasses.replace(new, content=verdict.content).checked(services.config.messages)
    return new


def _keys_since(services: Services, now: float) -> float:
    """The oldest send whose ``client_msg_id`` still holds."""
    return now - services.config.messages.idempotency_window


def _retried(new: NewMessage, original: Message) -> dict[str, Any]:
    """The answer to a send whose key ``original`` holds: its payload if ``new`` is a retry of it, else refused."""
    same = (
        original.recipient_id == new.recipient_id
        and original.is_group == new.is_group
        and original.type == new.type
        and original.content == new.content
        and original.encrypted_content == new.encrypted_content
        and (original.reply_to.message_id if original.reply_to is not None else None) == new.reply_to
        and original.mentions == new.mentions
        and original.extra == new.extra
        and _same_poll(original, new)
        and original.thread_id == new.thread_id
        and original.also_in_chat == new.also_in_chat
    )
    if not same:
        raise UserError(KEY_REUSED, code="conflict")
    return _duplicate(original, new.client_msg_id)


def _same_poll(original: Message, new: NewMessage) -> bool:
    if original.poll is None or new.poll is None:
        return original.poll is None and new.poll is None
    found, asked = original.poll, new.poll
    return (found.options, found.multiple, found.closes_at) == (asked.options, asked.multiple, asked.closes_at)


def _duplicate(original: Message, client_msg_id: str | None) -> dict[str, Any]:
    return {**shapes.new_message(original), "client_msg_id": client_msg_id, "duplicate": True}


async def prepare_file(services: Services, actor: Actor, offer: FileOffer) -> dict[str, Any]:
    """Check a file about to be uploaded to a chat; its upload URL and one-time token."""
    await check_new_account(services, actor, None, upload=True)
    return await services.files.prepare(actor.uid, offer)


async def share_file(services: Services, actor: Actor, share: FileShare) -> dict[str, Any]:
    """Post the ``new_message`` for a whole upload, once; the payload.

    The upload is claimed first (one message per file); a refused message
    gives it back (it may be shared again), a posted one marks it shared
    with that message.
    """
    files = services.files
    try:
        upload = await files.claim_for_sharing(actor.uid, share)
    except UserError:
        # Already shared: by this very share, retried with its key? Only then is it answered.
        if share.client_msg_id is None:
            raise
        original = await services.storage.messages.by_client_msg_id(actor.uid, share.client_msg_id)
        if original is None or original.created_at < _keys_since(services, services.clock.seconds()):
            raise
        if not _shares(original, share):
            raise UserError(KEY_REUSED, code="conflict") from None
        return _duplicate(original, share.client_msg_id)
    record = upload.record
    new = NewMessage(
        record.chat_id,
        record.is_group,
        upload.content,
        upload.message_type,
        client_msg_id=share.client_msg_id,
        thread_id=share.thread_id,
        also_in_chat=share.also_in_chat,
    )
    try:
        message = await send(services, actor, new)
    except BaseException:
        await files.unclaim(record.id)
        raise
    # A duplicate here is this file's message, stored by a share whose claim was never marked done.
    await files.shared(record.id, message["message_id"])
    return message


def _shares(original: Message, share: FileShare) -> bool:
    """Whether ``original`` is the message that shared ``share``'s file in ``share``'s chat."""
    if original.recipient_id != share.chat_id or original.is_group != share.is_group or original.type == "text":
        return False
    try:
        metadata = json.loads(original.content)
    except ValueError:
        return False
    return isinstance(metadata, dict) and metadata.get("file_id") == share.file_id


async def edit(services: Services, actor: Actor, change: Edit) -> dict[str, Any]:
    """``message_edited`` to every member (each with their own chat id); the editor's view of it."""
    limits = services.config.messages
    change = change.checked(limits)
    content = check_text(services.config.moderation.blocklist, change.content)
    await check_new_account(services, actor, content)
    if content != change.content:
        change = dataclasses.replace(change, content=content)
    edited = await services.storage.edits.edit(actor.uid, change, services.clock.seconds(), limits.edit_window)
    target = edited.target
    key = replay.edit(target.id, edited.edited_at)
    for users, chat_id in target.views():
        shown = shapes.message_edited(target.id, chat_id, target.is_group, edited.content, edited.edited_at)
        services.hub.tell(users, notices.MESSAGE_EDITED(shown), key=key)
    mine = shapes.message_edited(
        target.id, target.chat_id_for(actor.uid), target.is_group, edited.content, edited.edited_at
    )
    services.webhooks.wake()
    return mine


async def delete(services: Services, actor: Actor, deletion: Deletion) -> dict[str, Any]:
    """Soft-delete a message; ``message_deleted`` to its chat's members, the ``message.deleted`` webhook.

    A user deletes their own message (anybody else's is "Message not
    found"), a group's moderator and above a lower member's; an operator
    (`Actor.is_admin`) anybody's, logged.  ``deleted_by`` is the deleting user (null: an operator).
    """
    now = services.clock.seconds()
    deleted = await services.storage.messages.delete(actor, deletion, now)
    payload = {
        "message_id": deletion.message_id,
        "sender_id": deleted.sender_id,
        "timestamp": iso(now),
        "deleted_by": actor.user_id,
    }
    services.hub.tell(deleted.audience, notices.MESSAGE_DELETED(payload), key=replay.delete(deletion.message_id, now))
    services.webhooks.wake()  # ``message.deleted``, read from the feed
    if actor.is_admin:
        details = {"sender_id": deleted.sender_id}
        await audit(
            services, AuditEntry(actor, "message.delete", "message", deletion.message_id, deleted.chat_id, details)
        )
        log.info(
            "Message {message_id} in chat {chat_id} deleted by {actor}",
            message_id=deletion.message_id,
            chat_id=deleted.chat_id,
            actor=actor.name,
        )
    return payload


async def mark_read(services: Services, actor: Actor, receipt: ReadReceipt) -> dict[str, Any]:
    """Mark messages read; ``messages_read`` to their sender unless a block stands between the two.

    Every socket of the reader, on every node, gets ``chat_read`` for each
    chat the messages are in: the badge a read on one device clears clears
    on all of them.
    """
    receipt = receipt.checked(services.config.messages)
    now = services.clock.seconds()
    read = await services.storage.messages.mark_read(actor.uid, receipt, now)
    answer = {
        "reader_id": actor.uid,
        "reader_username": actor.name,
        "message_ids": read.message_ids,
        "timestamp": iso(now),
    }
    for state in read.chats:
        shown = shapes.chat_read(state)
        services.hub.tell([actor.uid], notices.CHAT_READ(shown), key=replay.chat_read(shown, now))
    # Reads of messages sent before a block still count for the reader, but a
    # block stops everything between the two users, read receipts included.
    if not await services.storage.contacts.blocked_between(actor.uid, receipt.sender_id):
        key = replay.read(actor.uid, read.message_ids, now)
        services.hub.tell([receipt.sender_id], notices.MESSAGES_READ(answer), key=key)
    return answer


async def read_receipts(services: Services, actor: Actor, query: ReceiptsQuery) -> dict[str, Any]:
    """Who got and who read one of the actor's own messages (``read_receipts``).

    Anybody else's message, deleted or unknown, is the same "Message not
    found": the answer reveals nothing about messages that are not theirs.
    """
    return shapes.read_receipts(await services.storage.readstate.receipts(actor.uid, query.message_id))


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
        audience = await services.storage.groups.typing_audience(state.recipient_id, actor.uid, indicator["timestamp"])
        indicator.update(chat_id=state.recipient_id, is_group=True)
    else:
        await require_writable_chat(services.storage, actor.uid, state.recipient_id, False)
        audience = [state.recipient_id]
    services.hub.tell(audience, notices.TYPING_INDICATOR(indicator))
