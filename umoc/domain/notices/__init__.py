"""Every event the server sends, declared once: its name, its fields, how it is built.

A `ServerEvent` is a declaration; calling it with a payload gives a
`Notice`, the built event that the hub (``Hub.tell``) or one socket
(``ClientSocket.tell``) sends.  No emit site names an event with a string
literal: each passes a notice built from one of the declarations here, so
this registry is the complete list of what a client can receive, and the
API reference test (``tests/docs/test_reference.py``) iterates it as it
iterates the route table.

How records look on the wire (a message, a chat, a contact) lives in
`umoc.domain.notices.shapes`; this module says which events carry them.
`umoc.domain.notices.replay` says which event each change of the feed was,
and the delivery key that names it (``hub.tell(..., key=...)``), for the
catch-up after a gap in the cluster's bus.

Adding an event: declare it below with its fields (``optional`` for those
some payloads leave out; a field name new to the server also gets its JSON
type in `umoc.domain.notices.types`), give it a heading in ``docs/api.md`` under
"Server-initiated events", and send ``MY_EVENT(payload)`` through the hub
or a socket.  An event that tells of a change the feed records also goes
with its delivery key (``hub.tell(users, MY_EVENT(payload), key=...)``),
and `replay` maps the feed row back to it, so a bus gap replays it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from umoc.domain.notices.types import FIELD_TYPES, INTEGER, NUMBER, STRING, JsonSchema, nullable

__all__ = ["REGISTRY", "Notice", "ServerEvent", "declare"]

#: Every declared server event by name (filled as this module loads).
REGISTRY: dict[str, ServerEvent] = {}

#: A group's settings (issue 29), in chat_info, group_created and group_updated; a group's ``kind``.
_SETTINGS = ("visibility", "join_rule", "kind", "topic", "slow_mode", "read_only", "retention", "avatar_file_id")
_GROUP_KIND: dict[str, JsonSchema] = {"kind": {"type": "string", "enum": ["group", "broadcast"]}}


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One event the server sends: the name clients listen for, and the fields its payload holds."""

    name: str
    #: Fields every payload of this event carries.
    fields: tuple[str, ...]
    #: Fields some payloads carry (a group's chat info, say, or ``retry_after`` on a refusal).
    optional: tuple[str, ...] = ()
    #: One line for the reference: when it is sent.
    summary: str = ""
    #: JSON types of fields whose type here differs from `FIELD_TYPES` (``pong``'s numeric ``timestamp``).
    types: dict[str, JsonSchema] = field(default_factory=dict, compare=False, hash=False)

    def field_type(self, name: str) -> JsonSchema:
        """The JSON Schema of field ``name`` in this event (`KeyError` for a field typed nowhere)."""
        return self.types[name] if name in self.types else FIELD_TYPES[name]

    def __call__(self, payload: dict[str, Any] | None = None) -> Notice:
        """The built event with ``payload`` (None: an event with no argument, such as ``account_deleted``)."""
        return Notice(self, payload)


@dataclass(frozen=True, slots=True)
class Notice:
    """A server event ready to send: what ``Hub.tell`` and ``ClientSocket.tell`` take."""

    event: ServerEvent
    payload: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.event.name

    @property
    def args(self) -> tuple[Any, ...]:
        """The Socket.IO arguments after the event name."""
        return () if self.payload is None else (self.payload,)


def declare(
    name: str,
    fields: tuple[str, ...],
    optional: tuple[str, ...] = (),
    summary: str = "",
    types: dict[str, JsonSchema] | None = None,
) -> ServerEvent:
    """Register a server event; a name declared twice, or a field with no JSON type, is a bug caught at import."""
    if name in REGISTRY:
        raise ValueError(f"server event {name!r} declared twice")
    event = ServerEvent(name, fields, optional, summary, types or {})
    untyped = [each for each in (*fields, *optional) if each not in event.types and each not in FIELD_TYPES]
    if untyped:
        raise ValueError(f"server event {name!r}: no JSON type for {untyped} (add it to umoc.domain.notices.types)")
    REGISTRY[name] = event
    return event


# -- the connection ---------------------------------------------------------

CONNECTION_SUCCESSFUL = declare(
    "connection_successful",
    ("user_id", "username", "session_expires", "cursor"),
    ("external_id",),
    summary="once per socket, after CONNECT was accepted",
    types={"external_id": STRING},  # a token socket's subject (auth.jwt)
)
SESSION_STATUS = declare(
    "session_status", ("valid",), ("expires_at", "message"), summary="answers verify_session; sent when a session ends"
)
ERROR = declare("error", ("message", "code"), ("retry_after",), summary="a refusal or a failure of one event")
PONG = declare(
    "pong",
    ("timestamp", "server_time", "latency"),
    summary="answers ping",
    types={"timestamp": NUMBER, "server_time": NUMBER},  # epoch milliseconds
)
SYNC_NEEDED = declare(
    "sync_needed",
    ("reason", "cursor"),
    summary="after a gap in the cluster's bus: run sync {cursor} for what live events may have missed",
)

# -- answers to reads ---------------------------------------------------------

CONTACTS = declare("contacts", ("contacts",), summary="answers get_contacts")
CHATS = declare("chats", ("list",), summary="answers get_chats")
CHAT_INFO = declare(
    "chat_info",
    ("id", "is_group", "mention_count"),
    (
        "username",
        "display_name",
        "avatar_url",
        "status",
        "is_online",
        "last_seen",
        "streak",
        "continue_streak",
        "name",
        "description",
        "created_at",
        "is_admin",
        "role",
        *_SETTINGS,
        "member_count",
        "members",
        "extra",
    ),
    summary="answers get_chat_info (a direct chat's or a group's fields)",
    types=_GROUP_KIND,
)
CHAT_HISTORY = declare(
    "chat_history",
    ("chat_id", "is_group", "messages", "page", "total_messages", "total_pages"),
    summary="answers get_chat_history",
)
FILE_UPLOAD_READY = declare(
    "file_upload_ready",
    ("file_id", "upload_url", "upload_token", "expires_in"),
    summary="answers upload_file_prepare",
)
SYNC_RESULT = declare(
    "sync_result",
    ("has_more",),
    ("messages", "server_time", "since", "changes", "cursor"),
    summary="answers sync ({since}: messages; {cursor}: changes)",
)
SEARCH_RESULTS = declare("search_results", ("query", "results", "next_cursor"), summary="answers search_messages")
PUSH_REGISTERED = declare("push_registered", ("registration_id", "kind"), summary="answers register_push")
PUSH_UNREGISTERED = declare("push_unregistered", ("registration_id",), summary="answers unregister_push")
PUSH_REGISTRATIONS = declare(
    "push_registrations", ("registrations", "enabled"), summary="answers get_push_registrations"
)
PUSH_SETTINGS = declare("push_settings", ("enabled",), summary="answers set_push_enabled")
CHAT_MUTED = declare(
    "chat_muted",
    ("chat_id", "is_group", "muted", "until"),
    summary="answers mute_chat and unmute_chat, to every socket of the user",
)
CHAT_READ = declare(
    "chat_read",
    ("chat_id", "is_group", "last_read_message_id", "unread_count", "mention_count"),
    summary="your read state of a chat changed (read_receipt, mark_unread), to every socket of yours",
)
READ_RECEIPTS = declare("read_receipts", ("message_id", "read_by", "delivered_to"), summary="answers get_read_receipts")
PINNED_MESSAGES = declare("pinned_messages", ("chat_id", "is_group", "messages"), summary="answers get_pinned")
THREAD_HISTORY = declare(
    "thread_history", ("thread_id", "root", "messages", "has_more"), summary="answers get_thread (oldest reply first)"
)
THREADS = declare("threads", ("threads", "next_cursor"), summary="answers get_threads (latest reply first)")
THREAD_FOLLOWED = declare(
    "thread_followed",
    ("thread_id", "following"),
    summary="answers follow_thread; to every socket of yours when you follow or unfollow a thread",
)
PROFILE = declare(
    "profile",
    ("user_id", "username", "display_name", "status_text", "avatar_url"),
    ("extra", "is_admin"),
    summary="answers get_profile (is_admin: one's own profile only)",
)

# -- presence -------------------------------------------------------------------

USER_STATUS = declare(
    "user_status", ("user_id", "username", "status"), ("last_seen",), summary="a contact came online or went offline"
)
TYPING_INDICATOR = declare(
    "typing_indicator",
    ("user_id", "username", "is_typing", "timestamp"),
    ("chat_id", "is_group"),
    summary="someone is typing in a chat of yours",
    types={"timestamp": NUMBER},  # epoch seconds
)

# -- messages ---------------------------------------------------------------------

NEW_MESSAGE = declare(
    "new_message",
    (
        "message_id",
        "sender_id",
        "sender_username",
        "recipient_id",
        "is_group",
        "type",
        "content",
        "timestamp",
        "reply_to",
        "mentions",
        "reactions",
        "edited_at",
        "display_name",
        "avatar_url",
    ),
    ("encrypted_content", "extra", "poll", "thread_id", "also_in_chat", "thread"),
    summary="a message was stored in one of your chats",
)
MESSAGE_EDITED = declare(
    "message_edited",
    ("message_id", "chat_id", "is_group", "content", "edited_at"),
    summary="a message of one of your chats was edited",
)
MESSAGE_PREVIEW = declare(
    "message_preview",
    ("message_id", "chat_id", "is_group", "preview"),
    summary="a text message's link preview, fetched by the server after the message was sent",
)
MESSAGE_DELETED = declare(
    "message_deleted",
    ("message_id", "sender_id", "timestamp", "deleted_by"),
    summary="a message of one of your chats was deleted",
)
REACTION_UPDATED = declare(
    "reaction_updated",
    ("message_id", "chat_id", "is_group", "user_id", "emoji", "action", "reactions"),
    summary="a reaction was added or removed",
)
MESSAGE_PINNED = declare(
    "message_pinned",
    ("chat_id", "is_group", "message_id", "pinned", "by"),
    summary="a message of one of your chats was pinned or unpinned",
)
REPORT_CREATED = declare(
    "report_created",
    ("report_id", "chat_id", "category"),
    summary="a member reported a message or the group itself, to the group's moderators",
)
THREAD_UPDATED = declare(
    "thread_updated",
    ("chat_id", "is_group", "thread_id", "reply_count", "last_reply_at", "participant_ids"),
    summary="a thread of one of your chats got a reply",
)
POLL_UPDATED = declare(
    "poll_updated",
    ("message_id", "chat_id", "is_group", "options", "voters", "closed"),
    summary="a vote was cast or a poll closed in one of your chats",
)
MESSAGES_READ = declare(
    "messages_read",
    ("reader_id", "reader_username", "message_ids", "timestamp"),
    summary="your messages were read",
)
MESSAGES_DELIVERED = declare(
    "messages_delivered",
    ("user_id", "chat_id", "is_group", "message_ids", "delivered_at"),
    summary="your messages reached the recipient's client",
)

# -- contacts ------------------------------------------------------------------------

CONTACT_ADDED = declare("contact_added", ("user_id", "username", "status"), summary="answers add_contact")
CONTACT_REQUEST = declare("contact_request", ("user_id", "username"), summary="someone asked to be your contact")
CONTACT_ACCEPTED = declare(
    "contact_accepted", ("user_id", "username", "status"), summary="a contact request was accepted"
)
CONTACT_REJECTED = declare("contact_rejected", ("user_id",), summary="a contact request was rejected")
CONTACT_BLOCKED = declare("contact_blocked", ("user_id",), summary="answers block_contact")
CONTACT_UNBLOCKED = declare("contact_unblocked", ("user_id", "username"), summary="answers unblock_contact")
CONTACT_REMOVED = declare("contact_removed", ("user_id",), summary="a contact was removed (by either side)")

# -- account and profile ----------------------------------------------------------------

ACCOUNT_DELETED = declare("account_deleted", (), summary="your account was deleted; the session ends")
PROFILE_UPDATED = declare(
    "profile_updated",
    ("user_id", "username", "display_name", "status_text", "avatar_url"),
    ("extra",),
    summary="a contact's (or your own) profile changed",
)
SETTINGS_UPDATED = declare("settings_updated", ("send_delivery_receipts",), summary="answers update_settings")

# -- groups ---------------------------------------------------------------------------------

GROUP_CREATED = declare(
    "group_created",
    (
        "id",
        "is_group",
        "name",
        "description",
        "display_name",
        "avatar_url",
        "created_at",
        "is_admin",
        "role",
        *_SETTINGS,
        "member_count",
        "members",
        "mention_count",
    ),
    ("extra",),
    summary="a group you are a member of was created",
    types=_GROUP_KIND,
)
GROUP_UPDATED = declare(
    "group_updated",
    ("chat_id", "name", "description"),
    (*_SETTINGS, "avatar_url", "extra"),
    summary="a group's name, description or settings changed",
    types=_GROUP_KIND,
)
GROUP_MEMBER_ADDED = declare(
    "group_member_added", ("chat_id", "user_id", "username"), summary="someone joined a group of yours"
)
GROUP_MEMBER_REMOVED = declare(
    "group_member_removed", ("chat_id", "user_id"), summary="someone left or was removed from a group of yours"
)
MEMBER_ROLE_CHANGED = declare(
    "member_role_changed",
    ("chat_id", "user_id", "role", "by"),
    summary="a member's role changed in a group of yours (set_member_role, or a new owner when the owner left)",
)

MEMBER_BANNED = declare(
    "member_banned",
    ("chat_id", "user_id", "until", "reason", "by"),
    summary="a member of a group of yours was banned (also to the banned user, before group_member_removed)",
    types={"reason": nullable(STRING)},
)
MEMBER_MUTED = declare(
    "member_muted",
    ("chat_id", "user_id", "until"),
    summary="a member of a group of yours was muted, or unmuted (until: the moment it was lifted)",
)
BANS = declare("bans", ("chat_id", "bans"), summary="answers get_bans")
MEMBERS = declare("members", ("chat_id", "members", "next_cursor"), summary="answers get_members")
PUBLIC_GROUPS = declare("public_groups", ("groups", "next_cursor"), summary="answers list_public_groups")
GROUP_JOINED = declare(
    "group_joined",
    GROUP_CREATED.fields,
    summary="you joined a group (join_group, join_by_invite, or your request approved): its chat_info",
    types=_GROUP_KIND,
)
JOIN_REQUESTED = declare(
    "join_requested",
    ("chat_id", "user_id", "username"),
    summary="someone asked to join a group you moderate",
)
JOIN_REJECTED = declare("join_rejected", ("chat_id",), summary="your request to join a group was rejected")
_LINK_TYPES: dict[str, JsonSchema] = {"code": STRING, "expires_at": nullable(INTEGER)}
INVITE_LINK = declare(
    "invite_link",
    ("code", "chat_id", "uses", "max_uses", "expires_at"),
    summary="answers create_invite_link",
    types=_LINK_TYPES,
)
INVITE_LINKS = declare("invite_links", ("chat_id", "links"), summary="answers get_invite_links")


def session_ended(message: str) -> Notice:
    """What every socket of an ended session is told before it is closed (the hub's builder)."""
    return SESSION_STATUS({"valid": False, "message": message})
