"""Message rows as `Message`, `ChatEntry` and `History`: the select lists and the mapping from rows.

Writes (``write``), reads (``read``) and the read receipts (``umoc.storage.receipts``)
select with `MESSAGE_COLUMNS` and map with `message_from_row`, so a new
column of ``messages`` is added here once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from umoc.errors import UNKNOWN_CHAT
from umoc.records.previews import LinkPreview
from umoc.storage.database import Row
from umoc.storage.mentions import parse_mentions
from umoc.storage.polls import Poll
from umoc.storage.reactions import Reaction
from umoc.storage.replies import ReplyTo
from umoc.storage.threadrows import ThreadSummary

__all__ = [
    "ChatEntry",
    "History",
    "LAST_MESSAGE_COLUMNS",
    "MESSAGE_COLUMNS",
    "Message",
    "UNKNOWN_CHAT",
    "message_from_row",
]

#: The one answer for a chat that does not exist and a chat the user is not in.


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    seq: int
    chat_id: int
    sender_id: int
    sender_username: str
    #: The recipient user of a direct message, the group id of a group message.
    recipient_id: int
    is_group: bool
    type: str
    content: str
    encrypted_content: str | None
    created_at: float
    edited_at: float | None = None
    reply_to_seq: int | None = None
    #: Direct messages: when the recipient's client first said it arrived.
    delivered_at: float | None = None
    sender_display_name: str | None = None
    sender_avatar_file_id: str | None = None
    #: Whom the message mentions, ascending.
    mentions: tuple[int, ...] = ()
    #: Filled by `annotate_txn` for payloads that show them.
    reply_to: ReplyTo | None = None
    reactions: tuple[Reaction, ...] = ()
    #: Its link preview (``message_preview``), filled by `annotate_txn`.
    preview: LinkPreview | None = None
    #: The app's custom data (``extra``), None when the message has none.
    extra: dict[str, Any] | None = None
    #: A poll message's poll, filled by `annotate_txn` (with the viewer's own votes when it knew the viewer).
    poll: Poll | None = None
    #: A thread reply: its root's seq and id (``thread_id``), and whether it is shown in the chat too.
    thread_root_seq: int | None = None
    thread_id: str | None = None
    also_in_chat: bool = False
    #: A root with replies (flagged at its first): its ``thread`` summary, filled by `annotate_txn`.
    is_thread_root: bool = False
    thread: ThreadSummary | None = None
    #: A reply just written: its thread's summary with it (for ``thread_updated``); never read back.
    in_thread: ThreadSummary | None = None


@dataclass(frozen=True, slots=True)
class ChatEntry:
    """One row of a user's chat list."""

    #: What clients call the chat: the peer's user id, or the group id.
    id: int
    is_group: bool
    unread_count: int
    last_message: Message | None
    #: Direct chats: the peer, and whether presence may be shown (friends both ways).
    username: str | None
    last_seen: float | None
    presence_visible: bool
    #: Groups.
    name: str | None
    description: str | None
    member_count: int
    #: Filled by `_chat_list_annotated_txn`: unread mentions of the user, the peer's profile (a group's
    #: ``avatar_file_id``: its picture, read with the row).
    mention_count: int = 0
    display_name: str | None = None
    avatar_file_id: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    chat_id: int
    is_group: bool
    #: ``(message, is_read)``, oldest first.
    messages: list[tuple[Message, bool]]
    page: int
    page_size: int
    total_messages: int

    @property
    def total_pages(self) -> int:
        return max(1, math.ceil(self.total_messages / self.page_size))


#: ``(expression, name)`` of each `Message` field, in the order of its fields.
_MESSAGE_FIELDS = (
    ("m.id", "id"),
    ("m.seq", "seq"),
    ("m.chat_id", "chat_id"),
    ("m.sender_id", "sender_id"),
    ("su.username", "sender_username"),
    ("m.recipient_id", "recipient_id"),
    ("m.is_group", "is_group"),
    ("m.type", "type"),
    ("m.content", "content"),
    ("m.encrypted_content", "encrypted_content"),
    ("m.created_at", "created_at"),
    ("m.edited_at", "edited_at"),
    ("m.reply_to_seq", "reply_to_seq"),
    ("m.delivered_at", "delivered_at"),
    ("su.display_name", "sender_display_name"),
    ("su.avatar_file_id", "sender_avatar_file_id"),
    ("m.mentions", "mentions"),
    ("m.extra", "extra"),
    ("m.thread_root_seq", "thread_root_seq"),
    ("m.thread_id", "thread_id"),
    ("m.also_in_chat", "also_in_chat"),
    ("m.is_thread_root", "is_thread_root"),
)


def _message_columns(prefix: str = "") -> str:
    """The select list `message_from_row` reads, each column aliased ``prefix + field name``.

    A prefix keeps the names apart from other columns of the same query (the
    chat list selects ``c.id`` and ``c.is_group`` too).
    """
    return ", ".join(f"{expr} AS {prefix}{name}" for expr, name in _MESSAGE_FIELDS)


#: The select list of `message_from_row` (``messages m JOIN users su ON su.id = m.sender_id``).
MESSAGE_COLUMNS = _message_columns()
#: The same, each aliased ``last_<field>`` (``message_from_row(row, "last_")``).
LAST_MESSAGE_COLUMNS = _message_columns("last_")


def message_from_row(row: Row, prefix: str = "") -> Message:
    """A `Message` from a row selected with `MESSAGE_COLUMNS` (or its ``prefix`` variant)."""
    return Message(
        id=row[prefix + "id"],
        seq=int(row[prefix + "seq"]),
        chat_id=int(row[prefix + "chat_id"]),
        sender_id=int(row[prefix + "sender_id"]),
        sender_username=row[prefix + "sender_username"],
        recipient_id=int(row[prefix + "recipient_id"]),
        is_group=bool(row[prefix + "is_group"]),
        type=row[prefix + "type"],
        content=row[prefix + "content"],
        encrypted_content=row[prefix + "encrypted_content"],
        created_at=float(row[prefix + "created_at"]),
        edited_at=row[prefix + "edited_at"],
        reply_to_seq=row[prefix + "reply_to_seq"],
        delivered_at=row[prefix + "delivered_at"],
        sender_display_name=row[prefix + "sender_display_name"],
        sender_avatar_file_id=row[prefix + "sender_avatar_file_id"],
        mentions=parse_mentions(row[prefix + "mentions"]),
        extra=None if row[prefix + "extra"] is None else json.loads(row[prefix + "extra"]),
        thread_root_seq=row[prefix + "thread_root_seq"],
        thread_id=row[prefix + "thread_id"],
        also_in_chat=bool(row[prefix + "also_in_chat"]),
        is_thread_root=bool(row[prefix + "is_thread_root"]),
    )
