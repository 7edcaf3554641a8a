"""What a change of the feed was, live: the notice a socket got for it, and the key that names that delivery.

The catch-up after a gap in the Redis bus (``umoc.domain.catchup``) reads a
user's feed and sends the live events the user's sockets missed, each once.
It must recognise what already reached them, so every live delivery of a
feed change carries a *delivery key* (``Hub.tell(..., key=...)``), sent
along on the bus, that the hub remembers per user; and the catch-up computes
the same key from the feed row.  A key is built from what both sides know
exactly: the change's kind, the ids it names, and the time the command gave
the store (the row's ``created_at``; a double on both databases, so it comes
back bit for bit)::

    new_message          <message_id>                         (as before: a message is stored once)
    message_edited       ["edit", message_id, at]
    message_deleted      ["delete", message_id, at]
    reaction_updated     ["reaction", message_id, user_id, emoji, "added"|"removed", at]
    message_pinned       ["pin", message_id, user_id, pinned, at]
    poll_updated         ["poll", message_id, user_id, "vote"|"close", at]
    messages_read        ["read", reader_id, [message_ids], at]
    messages_delivered   ["delivered", recipient_id, chat_id, is_group, at]
    contact_*            ["contact", other_user_id, event, at]      (the reader's own stream)
    group_created/updated ["group", chat_id, event, at]
    group_member_added   ["member_added", chat_id, user_id, at]
    group_member_removed ["member_removed", chat_id, user_id, at]
    member_role_changed  ["member_role", chat_id, user_id, role, at]
    member_banned        ["member_banned", chat_id, user_id, at]
    member_muted         ["member_muted", chat_id, user_id, at]
    join_requested       ["join_requested", chat_id, user_id, at]  (each moderator's own stream)
    join_rejected        ["join_rejected", chat_id, at]            (the requester's own stream)
    profile_updated      ["profile", user_id, at]
    message_preview      ["preview", message_id]              (a message gets at most one preview)
    thread_followed      ["thread_follow", thread_id, following, at]  (the follower's own stream)

The time makes two changes of the same things apart (an emoji added, removed
and added again).  A key is per receiving user: the hub remembers which
users a key reached, so the same key for two readers (a group message) is
one entry.

`notice` maps a change to the declared server event and the payload its
live emission had: the payload `shapes.feed_change` gives ``sync``, cut to
the fields the event declares (``sync`` adds ``status`` to every contact
event; live, only some carry it).  What it shows of a message, a profile or
a group is as it is now, as for ``sync``.
"""

from __future__ import annotations

import json
from typing import Any

from umoc.domain import notices
from umoc.domain.notices import shapes
from umoc.storage.feed import Change

__all__ = [
    "chat_muted",
    "chat_read",
    "contact",
    "delete",
    "delivered",
    "edit",
    "group",
    "join_rejected",
    "join_requested",
    "key",
    "member",
    "member_role",
    "message",
    "notice",
    "preview",
    "pin",
    "poll",
    "profile",
    "reaction",
    "read",
    "thread_follow",
]


def _key(*parts: Any) -> str:
    """A key: a JSON array (never a bare message id, which is a UUID: the two kinds never meet)."""
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


def message(message_id: str) -> str:
    return message_id


def preview(message_id: str) -> str:
    return _key("preview", message_id)


def edit(message_id: str, at: float) -> str:
    return _key("edit", message_id, at)


def delete(message_id: str, at: float) -> str:
    return _key("delete", message_id, at)


def reaction(message_id: str, user_id: int, emoji: str, added: bool, at: float) -> str:
    return _key("reaction", message_id, user_id, emoji, "added" if added else "removed", at)


def pin(message_id: str, user_id: int, pinned: bool, at: float) -> str:
    return _key("pin", message_id, user_id, bool(pinned), at)


def poll(message_id: str, user_id: int, event: str, at: float) -> str:
    """A vote (``event`` "vote") or a close ("close") of a poll."""
    return _key("poll", message_id, user_id, event, at)


def read(reader_id: int, message_ids: list[str], at: float) -> str:
    return _key("read", reader_id, message_ids, at)


def delivered(recipient_id: int, chat_id: int, is_group: bool, at: float) -> str:
    return _key("delivered", recipient_id, chat_id, bool(is_group), at)


def contact(other_id: int, event: str, at: float) -> str:
    """A contact change as its owner (the receiving user) was told it, about ``other_id``."""
    return _key("contact", other_id, event, at)


def group(chat_id: int, event: str, at: float) -> str:
    return _key("group", chat_id, event, at)


def member(kind: str, chat_id: int, user_id: int, at: float) -> str:
    """``kind``: ``member_added``, ``member_removed``, ``member_banned`` or ``member_muted``."""
    return _key(kind, chat_id, user_id, at)


def member_role(chat_id: int, user_id: int, role: str, at: float) -> str:
    """A member's new role (a handover is two changes at one time: the role tells them apart)."""
    return _key("member_role", chat_id, user_id, role, at)


def join_requested(chat_id: int, user_id: int, at: float) -> str:
    return _key("join_requested", chat_id, user_id, at)


def join_rejected(chat_id: int, at: float) -> str:
    return _key("join_rejected", chat_id, at)


def profile(user_id: int, at: float) -> str:
    return _key("profile", user_id, at)


def chat_read(state: dict[str, Any], at: float) -> str:
    """A user's read state of one chat (their own stream: only they are told).

    The state is in the key: a read and a ``mark_unread`` of one chat in
    the same instant are two changes, both told.
    """
    return _key("chat_read", *state.values(), at)


def thread_follow(thread_id: str, following: bool, at: float) -> str:
    return _key("thread_follow", thread_id, following, at)


def chat_muted(state: dict[str, Any], at: float) -> str:
    """A user's chat muted or unmuted, with its ``until`` (their own stream: only they are told)."""
    return _key("chat_muted", *state.values(), at)


def key(change: Change) -> str | None:
    """The delivery key of a change read from the feed; None for one that names nothing any more."""
    kind, at, data, msg = change.kind, change.created_at, change.data, change.message
    if kind in ("message", "edit", "delete", "reaction", "preview", "pin", "poll") and msg is None:
        return None
    if kind == "preview":
        assert msg is not None
        return preview(msg.id)
    if kind == "message":
        assert msg is not None
        return message(msg.id)
    if kind == "edit":
        assert msg is not None
        return edit(msg.id, at)
    if kind == "delete":
        assert msg is not None
        return delete(msg.id, at)
    if kind == "reaction":
        assert msg is not None
        return reaction(msg.id, change.actor_id or 0, data["emoji"], data["action"] == "added", at)
    if kind == "pin":
        assert msg is not None
        return pin(msg.id, change.actor_id or 0, bool(data["pinned"]), at)
    if kind == "poll":
        assert msg is not None
        return poll(msg.id, change.actor_id or 0, data["event"], at)
    if kind == "read":
        return read(change.actor_id or 0, list(data["message_ids"]), at)
    if kind == "delivered":
        return delivered(change.actor_id or 0, data["chat_id"], data["is_group"], at)
    if kind == "contact":
        return contact(change.actor_id or 0, data["event"], at)
    if kind == "group":
        return group(change.chat_id or 0, data.get("event", "group_updated"), at)
    if kind in ("member_added", "member_removed", "member_banned", "member_muted"):
        return member(kind, change.chat_id or 0, change.actor_id or 0, at)
    if kind == "join_requested":
        return join_requested(data["chat_id"], change.actor_id or 0, at)
    if kind == "join_rejected":
        return join_rejected(data["chat_id"], at)
    if kind == "member_role":
        return member_role(change.chat_id or 0, change.actor_id or 0, data["role"], at)
    if kind == "profile":
        return profile(change.actor_id or 0, at)
    if kind == "chat_read":
        return chat_read(dict(data), at)
    if kind == "chat_muted":
        return chat_muted(shapes.chat_muted(data["chat_id"], data["is_group"], data["until"], data["muted"]), at)
    if kind == "thread_follow":
        return thread_follow(data["thread_id"], bool(data["following"]), at)
    return None


def notice(change: Change, viewer_id: int, online: set[int]) -> notices.Notice:
    """The live event ``viewer_id`` got (or should have got) for this change, as it would be built now."""
    rendered = shapes.feed_change(change, viewer_id, online)
    event = notices.REGISTRY[rendered["event"]]
    declared = (*event.fields, *event.optional)
    return event({name: rendered[name] for name in declared if name in rendered})
