"""What clients see: every payload built from stored records, with the spec's field names.

Storage returns records; handlers decide who is told what; this module is
the one place that knows how a message, a chat or a group looks on the
wire, so a field renamed or added changes here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from umoc.storage.contacts import Contact
from umoc.storage.groups import GroupInfo
from umoc.storage.messages import ChatEntry, Message
from umoc.timefmt import iso, iso_or_none

__all__ = [
    "chat_list_entry",
    "contact_entry",
    "direct_chat_info",
    "former_contact_chat_info",
    "group_info",
    "history_message",
    "message_summary",
    "new_message",
    "presence_fields",
]


def presence_fields(visible: bool, online: bool, last_seen: float | None) -> tuple[bool, str | None]:
    """(is_online, last_seen) as another user may see them: nothing through a block or to a stranger."""
    if not visible:
        return False, None
    return online, iso_or_none(last_seen)


def new_message(message: Message) -> dict[str, Any]:
    """The spec's ``new_message`` payload (``encrypted_content`` only when there is one)."""
    payload: dict[str, Any] = {
        "message_id": message.id,
        "sender_id": message.sender_id,
        "sender_username": message.sender_username,
        "recipient_id": message.recipient_id,
        "content": message.content,
        "type": message.type,
        "timestamp": iso(message.created_at),
        "is_group": message.is_group,
    }
    if message.encrypted_content is not None:
        payload["encrypted_content"] = message.encrypted_content
    return payload


def message_summary(message: Message) -> dict[str, Any]:
    """The ``last_message`` object of ``chats``."""
    return {
        "message_id": message.id,
        "sender_id": message.sender_id,
        "sender_username": message.sender_username,
        "content": message.content,
        "type": message.type,
        "timestamp": iso(message.created_at),
    }


def history_message(message: Message, is_read: bool) -> dict[str, Any]:
    """One message of ``chat_history``."""
    item: dict[str, Any] = {
        "message_id": message.id,
        "sender_id": message.sender_id,
        "sender_username": message.sender_username,
        "content": message.content,
        "type": message.type,
        "timestamp": iso(message.created_at),
        "is_read": is_read,
    }
    if message.encrypted_content is not None:
        item["encrypted_content"] = message.encrypted_content
    return item


def chat_list_entry(entry: ChatEntry, online: set[int]) -> dict[str, Any]:
    """One chat of ``chats``: a group, or a direct chat with the peer's presence."""
    last = message_summary(entry.last_message) if entry.last_message is not None else None
    if entry.is_group:
        return {
            "id": entry.id,
            "name": entry.name,
            "description": entry.description,
            "member_count": entry.member_count,
            "last_message": last,
            "unread_count": entry.unread_count,
            "is_group": True,
        }
    is_online, last_seen = presence_fields(entry.presence_visible, entry.id in online, entry.last_seen)
    return {
        "id": entry.id,
        "username": entry.username,
        "status": "online" if is_online else "offline",
        "last_seen": last_seen,
        "last_message": last,
        "unread_count": entry.unread_count,
        "is_group": False,
    }


def group_info(info: GroupInfo, viewer_id: int, online: set[int]) -> dict[str, Any]:
    """The ``chat_info`` shape of a group as ``viewer_id`` sees it (also ``group_created``)."""
    members = []
    for m in info.members:
        is_online, last_seen = presence_fields(
            info.presence_visible(viewer_id, m.user_id), m.user_id in online, m.last_seen
        )
        members.append(
            {
                "user_id": m.user_id,
                "username": m.username,
                "is_online": is_online,
                "last_seen": last_seen,
                "is_admin": m.is_admin,
            }
        )
    return {
        "id": info.id,
        "name": info.name,
        "description": info.description,
        "created_at": iso(info.created_at),
        "is_group": True,
        "members": members,
        "member_count": len(members),
        "is_admin": info.is_admin(viewer_id),
    }


def _contact_fields(contact: Contact, online: set[int], today: int) -> dict[str, Any]:
    """What a contact shows of themselves, in ``contacts`` and in a direct chat's ``chat_info``."""
    is_online, last_seen = presence_fields(contact.mutual_friend, contact.user_id in online, contact.last_seen)
    streak, continue_streak = contact.streak_on(today)
    return {
        "username": contact.username,
        "status": contact.status,
        "is_online": is_online,
        "last_seen": last_seen,
        "streak": streak,
        "continue_streak": continue_streak,
    }


def direct_chat_info(contact: Contact, online: set[int], today: int) -> dict[str, Any]:
    """The ``chat_info`` shape of a direct chat with a contact."""
    return {"id": contact.user_id, **_contact_fields(contact, online, today), "is_group": False}


def former_contact_chat_info(user_id: int, username: str) -> dict[str, Any]:
    """A direct chat whose peer blocked us: shown with no status and no presence."""
    return {
        "id": user_id,
        "username": username,
        "is_online": False,
        "last_seen": None,
        "status": None,
        "is_group": False,
        "streak": 0,
        "continue_streak": False,
    }


def contact_entry(contact: Contact, online: set[int], today: int) -> dict[str, Any]:
    """One contact of ``contacts``."""
    return {"user_id": contact.user_id, **_contact_fields(contact, online, today)}
