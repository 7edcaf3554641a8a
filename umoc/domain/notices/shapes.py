"""What clients see: every payload built from stored records, with the spec's field names.

Storage returns records; handlers decide who is told what; this module is
the one place that knows how a message, a chat or a group looks on the
wire, so a field renamed or added changes here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from umoc.domain.files import download_url
from umoc.records.previews import LinkPreview
from umoc.storage.contacts import Contact
from umoc.storage.deliveries import Delivered
from umoc.storage.feed import Change
from umoc.storage.groups import GroupInfo, MembersPage, RoleChanged
from umoc.storage.joining import InviteLink, PublicGroup
from umoc.storage.messages import ChatEntry, Message
from umoc.storage.moderation import BanEntry
from umoc.storage.polls import Poll
from umoc.storage.profiles import Profile, Settings
from umoc.storage.reactions import Reaction
from umoc.storage.readstate import Receipts
from umoc.storage.receipts import ReadState
from umoc.storage.replies import ReplyTo
from umoc.storage.search import Hit
from umoc.storage.threadrows import ThreadSummary
from umoc.storage.threads import ThreadEntry, ThreadPage
from umoc.timefmt import iso, iso_or_none

__all__ = [
    "avatar_url",
    "chat_list_entry",
    "contact_entry",
    "direct_chat_info",
    "feed_change",
    "former_contact_chat_info",
    "group_info",
    "group_updated",
    "history_message",
    "message_edited",
    "message_summary",
    "messages_delivered",
    "new_message",
    "presence_fields",
    "profile",
    "reaction_updated",
    "reactions",
    "reply_to",
    "search_result",
    "settings",
]


def avatar_url(file_id: str | None) -> str | None:
    """Where an avatar is downloaded (``GET /api/files/<id>``, to those who may see the profile)."""
    return None if file_id is None else download_url(file_id)


def reply_to(reply: ReplyTo | None) -> dict[str, Any] | None:
    """What a reply shows of the message it answers (``reply_to`` in docs/api.md)."""
    if reply is None:
        return None
    if reply.deleted:
        return {"message_id": reply.message_id, "deleted": True}
    return {
        "message_id": reply.message_id,
        "sender_id": reply.sender_id,
        "sender_username": reply.sender_username,
        "type": reply.type,
        "content": reply.content,
    }


def reactions(found: tuple[Reaction, ...] | list[Reaction]) -> list[dict[str, Any]]:
    return [{"emoji": r.emoji, "count": r.count, "user_ids": list(r.user_ids)} for r in found]


def presence_fields(visible: bool, online: bool, last_seen: float | None) -> tuple[bool, str | None]:
    """(is_online, last_seen) as another user may see them: nothing through a block or to a stranger."""
    if not visible:
        return False, None
    return online, iso_or_none(last_seen)


def poll(found: Poll, now: float | None) -> dict[str, Any]:
    """``new_message.poll``: options with their votes, and the viewer's own (``my_votes``).

    ``closed`` also once ``closes_at`` has passed at ``now`` (None: only when closed by hand).
    """
    return {
        "options": [
            {"id": i, "text": text, "votes": votes}
            for i, (text, votes) in enumerate(zip(found.options, found.counts, strict=True))
        ],
        "multiple": found.multiple,
        "closes_at": iso_or_none(found.closes_at),
        "closed": found.closed(now),
        "my_votes": list(found.my_votes),
    }


def poll_updated(where: tuple[str, int, bool], found: Poll, now: float | None) -> dict[str, Any]:
    """``poll_updated``: the tallies after a vote or a close; ``where`` as for `reaction_updated`."""
    message_id, chat_id, is_group = where
    return {
        "message_id": message_id,
        "chat_id": chat_id,
        "is_group": is_group,
        "options": [{"id": i, "votes": votes} for i, votes in enumerate(found.counts)],
        "voters": found.voters,
        "closed": found.closed(now),
    }


def new_message(message: Message, now: float | None = None) -> dict[str, Any]:
    """The spec's ``new_message`` payload (``encrypted_content``, ``extra``, ``poll`` only when there is one).

    ``now`` decides whether a poll whose ``closes_at`` passed shows closed.
    """
    payload: dict[str, Any] = {
        "message_id": message.id,
        "sender_id": message.sender_id,
        "sender_username": message.sender_username,
        "recipient_id": message.recipient_id,
        "content": message.content,
        "type": message.type,
        "timestamp": iso(message.created_at),
        "is_group": message.is_group,
        "display_name": message.sender_display_name,
        "avatar_url": avatar_url(message.sender_avatar_file_id),
        "reply_to": reply_to(message.reply_to),
        "mentions": list(message.mentions),
        "edited_at": iso_or_none(message.edited_at),
        "reactions": reactions(message.reactions),
    }
    if message.encrypted_content is not None:
        payload["encrypted_content"] = message.encrypted_content
    if message.extra is not None:
        payload["extra"] = message.extra
    if message.poll is not None:
        payload["poll"] = poll(message.poll, now)
    _threaded(payload, message)
    return payload


def _threaded(payload: dict[str, Any], message: Message) -> None:
    """A thread reply's ``thread_id`` and ``also_in_chat``; a root's ``thread`` summary (only when so)."""
    if message.thread_id is not None:
        payload["thread_id"] = message.thread_id
        payload["also_in_chat"] = message.also_in_chat
    if message.thread is not None:
        payload["thread"] = thread(message.thread)


def thread(summary: ThreadSummary) -> dict[str, Any]:
    """A root's ``thread``: ``{reply_count, last_reply_at, participant_ids}``."""
    return {
        "reply_count": summary.reply_count,
        "last_reply_at": iso_or_none(summary.last_reply_at),
        "participant_ids": list(summary.participant_ids),
    }


def thread_updated(where: tuple[str, int, bool], summary: ThreadSummary) -> dict[str, Any]:
    """``thread_updated``: ``where`` is ``(thread_id, chat_id as the viewer calls it, is_group)``."""
    thread_id, chat_id, is_group = where
    return {"chat_id": chat_id, "is_group": is_group, "thread_id": thread_id, **thread(summary)}


def thread_history(page: ThreadPage, now: float | None = None) -> dict[str, Any]:
    """``thread_history``: the root and a page of its replies (oldest first), as ``new_message`` shows them."""
    return {
        "thread_id": page.ref.thread_id,
        "root": new_message(page.root, now),
        "messages": [new_message(m, now) for m in page.messages],
        "has_more": page.has_more,
    }


def thread_entry(entry: ThreadEntry, now: float | None = None) -> dict[str, Any]:
    """One of ``threads.threads``."""
    return {
        "thread_id": entry.thread_id,
        "chat_id": entry.chat_id,
        "is_group": entry.is_group,
        "root": new_message(entry.root, now),
        "reply_count": entry.summary.reply_count,
        "last_reply_at": iso_or_none(entry.summary.last_reply_at),
        "unread_count": entry.unread_count,
        "following": entry.following,
    }


def preview_image_url(image_id: str | None) -> str | None:
    """Where UMOC serves its thumbnail of a preview's image; the site's own URL is never shown."""
    return None if image_id is None else f"/api/previews/{image_id}"


def preview(found: LinkPreview) -> dict[str, Any]:
    """The ``preview`` object of ``message_preview`` and of history."""
    return {
        "url": found.url,
        "title": found.title,
        "description": found.description,
        "image_url": preview_image_url(found.image_id),
        "site_name": found.site_name,
    }


def message_preview(message: Message, chat_id: int) -> dict[str, Any]:
    """``message_preview`` for a viewer who calls the chat ``chat_id``."""
    assert message.preview is not None
    return {
        "message_id": message.id,
        "chat_id": chat_id,
        "is_group": message.is_group,
        "preview": preview(message.preview),
    }


def message_summary(message: Message) -> dict[str, Any]:
    """The ``last_message`` object of ``chats``."""
    return {
        "message_id": message.id,
        "sender_id": message.sender_id,
        "sender_username": message.sender_username,
        "content": message.content,
        "type": message.type,
        "timestamp": iso(message.created_at),
        "edited_at": iso_or_none(message.edited_at),
    }


def history_message(
    message: Message, is_read: bool, viewer_id: int | None = None, now: float | None = None
) -> dict[str, Any]:
    """One message of ``chat_history``; ``delivered_at`` on the viewer's own direct messages."""
    item: dict[str, Any] = {
        "message_id": message.id,
        "sender_id": message.sender_id,
        "sender_username": message.sender_username,
        "content": message.content,
        "type": message.type,
        "timestamp": iso(message.created_at),
        "is_read": is_read,
        "display_name": message.sender_display_name,
        "avatar_url": avatar_url(message.sender_avatar_file_id),
        "reply_to": reply_to(message.reply_to),
        "mentions": list(message.mentions),
        "edited_at": iso_or_none(message.edited_at),
        "reactions": reactions(message.reactions),
    }
    if not message.is_group and message.sender_id == viewer_id:
        item["delivered_at"] = iso_or_none(message.delivered_at)
    if message.encrypted_content is not None:
        item["encrypted_content"] = message.encrypted_content
    if message.preview is not None:
        item["preview"] = preview(message.preview)
    if message.extra is not None:
        item["extra"] = message.extra
    if message.poll is not None:
        item["poll"] = poll(message.poll, now)
    _threaded(item, message)
    return item


def search_result(hit: Hit, viewer_id: int, snippet: str) -> dict[str, Any]:
    """One entry of ``search_results``: the ``chat_history`` message plus its chat and the snippet (HTML)."""
    return {
        **history_message(hit.message, hit.is_read, viewer_id),
        "chat_id": hit.chat_id,
        "is_group": hit.message.is_group,
        "snippet": snippet,
    }


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
            "mention_count": entry.mention_count,
            "is_group": True,
            "display_name": None,
            "avatar_url": avatar_url(entry.avatar_file_id),
        }
    is_online, last_seen = presence_fields(entry.presence_visible, entry.id in online, entry.last_seen)
    return {
        "id": entry.id,
        "username": entry.username,
        "status": "online" if is_online else "offline",
        "last_seen": last_seen,
        "last_message": last,
        "unread_count": entry.unread_count,
        "mention_count": entry.mention_count,
        "is_group": False,
        "display_name": entry.display_name,
        "avatar_url": avatar_url(entry.avatar_file_id),
    }


def group_info(info: GroupInfo, viewer_id: int, online: set[int], mention_count: int = 0) -> dict[str, Any]:
    """The ``chat_info`` shape of a group as ``viewer_id`` sees it (also ``group_created``).

    A group has no profile of its own: ``display_name`` is null; ``avatar_url`` is its picture's (or null).
    """
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
                "role": m.role,
                "display_name": m.display_name,
                "avatar_url": avatar_url(m.avatar_file_id),
            }
        )
    return {
        "id": info.id,
        "name": info.name,
        "description": info.description,
        "created_at": iso(info.created_at),
        "is_group": True,
        "members": members,
        "member_count": info.member_count or len(members),
        "is_admin": info.is_admin(viewer_id),
        "role": info.role(viewer_id) or "member",
        **info.settings,
        "mention_count": mention_count,
        "display_name": None,
        "avatar_url": avatar_url(info.settings.get("avatar_file_id")),
        **({"extra": info.extra} if info.extra is not None else {}),
    }


def member_role_changed(chat_id: int, change: RoleChanged) -> dict[str, Any]:
    """``member_role_changed``: ``by`` is null for an automatic promotion (the owner left)."""
    return {"chat_id": chat_id, "user_id": change.user_id, "role": change.role, "by": change.by}


def member_banned(
    chat_id: int, user_id: int, until: float | None, reason: str | None, by: int | None
) -> dict[str, Any]:
    """``member_banned``: ``until`` null for a ban until lifted."""
    return {"chat_id": chat_id, "user_id": user_id, "until": iso_or_none(until), "reason": reason, "by": by}


def member_muted(chat_id: int, user_id: int, until: float | None) -> dict[str, Any]:
    """``member_muted``: ``until`` null until unmuted; an unmute says the moment it was lifted."""
    return {"chat_id": chat_id, "user_id": user_id, "until": iso_or_none(until)}


def members_page(chat_id: int, page: MembersPage, online: set[int], next_cursor: str | None) -> dict[str, Any]:
    """``members``: each member's profile, role and presence (hidden, false, across a block with the viewer)."""
    return {
        "chat_id": chat_id,
        "members": [
            {
                "user_id": m.user_id,
                "username": m.username,
                "display_name": m.display_name,
                "avatar_url": avatar_url(m.avatar_file_id),
                "role": m.role,
                "online": m.user_id in online and not any(m.user_id in pair for pair in page.blocks),
            }
            for m in page.members
        ],
        "next_cursor": next_cursor,
    }


def group_updated(updated: dict[str, Any]) -> dict[str, Any]:
    """``group_updated`` from what the store wrote: with ``avatar_url`` where the row says ``avatar_file_id``."""
    if "avatar_file_id" not in updated:
        return updated
    return {**updated, "avatar_url": avatar_url(updated["avatar_file_id"])}


def public_group(group: PublicGroup) -> dict[str, Any]:
    """One group of ``public_groups``."""
    return {
        "chat_id": group.chat_id,
        "name": group.name,
        "topic": group.topic,
        "avatar_url": avatar_url(group.avatar_file_id),
        "member_count": group.member_count,
        "kind": group.kind,
        "join_rule": group.join_rule,
    }


def invite_link(link: InviteLink) -> dict[str, Any]:
    """``invite_link`` (with its ``code``) and each of ``invite_links`` (without it: ``code`` null, ``link_id``,
    ``code_prefix``, ``created_by`` and ``created_at`` to tell them apart)."""
    shown: dict[str, Any] = {
        "code": link.code,
        "chat_id": link.chat_id,
        "uses": link.uses,
        "max_uses": link.max_uses,
        "expires_at": None if link.expires_at is None else int(link.expires_at),
    }
    if link.code is None:
        shown.update(
            link_id=link.link_id,
            code_prefix=link.code_prefix,
            created_by=link.created_by,
            created_at=iso(link.created_at),
        )
    return shown


def ban_entry(ban: BanEntry) -> dict[str, Any]:
    """One ban of ``bans``."""
    return {
        "user_id": ban.user_id,
        "username": ban.username,
        "until": iso_or_none(ban.until),
        "reason": ban.reason,
        "by": ban.by,
        "created_at": iso(ban.created_at),
    }


def _contact_fields(contact: Contact, online: set[int], today: int) -> dict[str, Any]:
    """What a contact shows of themselves, in ``contacts`` and in a direct chat's ``chat_info``.

    Only a friend (both ways) shows a profile, as `get_profile` decides: not a
    user one has blocked, nor either side of a pending request (issue 22, G13).
    """
    shows_profile = contact.mutual_friend
    is_online, last_seen = presence_fields(contact.mutual_friend, contact.user_id in online, contact.last_seen)
    streak, continue_streak = contact.streak_on(today)
    return {
        "username": contact.username,
        "status": contact.status,
        "is_online": is_online,
        "last_seen": last_seen,
        "streak": streak,
        "continue_streak": continue_streak,
        "display_name": contact.display_name if shows_profile else None,
        "avatar_url": avatar_url(contact.avatar_file_id) if shows_profile else None,
    }


def direct_chat_info(contact: Contact, online: set[int], today: int, mention_count: int = 0) -> dict[str, Any]:
    """The ``chat_info`` shape of a direct chat with a contact."""
    return {
        "id": contact.user_id,
        **_contact_fields(contact, online, today),
        "is_group": False,
        "mention_count": mention_count,
    }


def former_contact_chat_info(user_id: int, username: str, mention_count: int = 0) -> dict[str, Any]:
    """A direct chat with someone no longer a contact: no status, no presence, no profile."""
    return {
        "id": user_id,
        "username": username,
        "is_online": False,
        "last_seen": None,
        "status": None,
        "is_group": False,
        "streak": 0,
        "continue_streak": False,
        "display_name": None,
        "avatar_url": None,
        "mention_count": mention_count,
    }


def contact_entry(contact: Contact, online: set[int], today: int) -> dict[str, Any]:
    """One contact of ``contacts``."""
    return {"user_id": contact.user_id, **_contact_fields(contact, online, today)}


def message_edited(message_id: str, chat_id: int, is_group: bool, content: str, edited_at: float) -> dict[str, Any]:
    """``message_edited``, with ``chat_id`` as its recipient calls the chat."""
    return {
        "message_id": message_id,
        "chat_id": chat_id,
        "is_group": is_group,
        "content": content,
        "edited_at": iso(edited_at),
    }


def reaction_updated(
    where: tuple[str, int, bool], user_id: int, emoji: str, added: bool, found: list[Reaction]
) -> dict[str, Any]:
    """``reaction_updated``: one user's change and the message's reactions after it.

    ``where`` is ``(message_id, chat_id, is_group)``, the chat id as the viewer calls the chat.
    """
    message_id, chat_id, is_group = where
    return {
        "message_id": message_id,
        "chat_id": chat_id,
        "is_group": is_group,
        "user_id": user_id,
        "emoji": emoji,
        "action": "added" if added else "removed",
        "reactions": reactions(found),
    }


def message_pinned(where: tuple[str, int, bool], pinned: bool, by: int) -> dict[str, Any]:
    """``message_pinned``: a message pinned or unpinned by ``by``.

    ``where`` is ``(message_id, chat_id, is_group)``, the chat id as the viewer calls the chat.
    """
    message_id, chat_id, is_group = where
    return {"chat_id": chat_id, "is_group": is_group, "message_id": message_id, "pinned": pinned, "by": by}


def messages_delivered(delivered: Delivered, recipient_id: int, when: float) -> dict[str, Any]:
    """``messages_delivered`` to a sender: which of their messages reached ``recipient_id``."""
    return {
        "chat_id": delivered.chat_id,
        "is_group": delivered.is_group,
        "user_id": recipient_id,
        "message_ids": delivered.message_ids,
        "delivered_at": iso(when),
    }


def chat_read(state: ReadState) -> dict[str, Any]:
    """``chat_read``: the user's read state of one chat, as every device of theirs shows it."""
    return state.fields()


def chat_muted(chat_id: int, is_group: bool, until: float | None, muted: bool = True) -> dict[str, Any]:
    """``chat_muted``: pushes for the chat off (until ``until``, or until unmuted), or back on."""
    return {"chat_id": chat_id, "is_group": is_group, "muted": muted, "until": iso_or_none(until) if muted else None}


def read_receipts(found: Receipts) -> dict[str, Any]:
    """``read_receipts``: who read and who got one of the asker's messages, earliest first."""
    return {
        "message_id": found.message_id,
        "read_by": [{"user_id": user_id, "read_at": iso(when)} for user_id, when in found.read_by],
        "delivered_to": [{"user_id": user_id, "delivered_at": iso(when)} for user_id, when in found.delivered_to],
    }


def profile(found: Profile) -> dict[str, Any]:
    """``profile`` and ``profile_updated`` (``extra`` only when the user set one)."""
    shown: dict[str, Any] = {
        "user_id": found.user_id,
        "username": found.username,
        "display_name": found.display_name,
        "status_text": found.status_text,
        "avatar_url": avatar_url(found.avatar_file_id),
    }
    if found.extra is not None:
        shown["extra"] = found.extra
    return shown


def settings(found: Settings) -> dict[str, Any]:
    """``settings_updated``: the user's settings now."""
    return {"send_delivery_receipts": found.send_delivery_receipts}


def _chat_id_for(message: Message, viewer_id: int) -> int:
    """The chat as ``viewer_id`` calls it: the group, or the other user of a direct chat."""
    if message.is_group or message.sender_id == viewer_id:
        return message.recipient_id
    return message.sender_id


def feed_change(change: Change, viewer_id: int, online: set[int]) -> dict[str, Any]:
    """One change of ``sync_result.changes``: ``kind``, ``event`` (the live event's name) and that event's fields.

    Content is the message, profile or group as it is now (the feed keeps no
    copy of it); the rest is what the live event said when it happened.
    """
    kind, message, data, when = change.kind, change.message, change.data, change.created_at
    fields: dict[str, Any]
    if kind == "message" and message is not None:
        event, fields = "new_message", new_message(message)
    elif kind == "edit" and message is not None:
        event = "message_edited"
        fields = message_edited(
            message.id,
            _chat_id_for(message, viewer_id),
            message.is_group,
            message.content,
            message.edited_at if message.edited_at is not None else when,
        )
    elif kind == "preview" and message is not None and message.preview is not None:
        event, fields = "message_preview", message_preview(message, _chat_id_for(message, viewer_id))
    elif kind == "delete" and message is not None:
        event = "message_deleted"
        fields = {
            "message_id": message.id,
            "sender_id": message.sender_id,
            "timestamp": iso(when),
            "deleted_by": change.actor_id,
        }
    elif kind == "reaction" and message is not None:
        event = "reaction_updated"
        fields = reaction_updated(
            (message.id, _chat_id_for(message, viewer_id), message.is_group),
            change.actor_id or 0,
            data["emoji"],
            data["action"] == "added",
            list(message.reactions),
        )
    elif kind == "pin" and message is not None:
        event = "message_pinned"
        fields = message_pinned(
            (message.id, _chat_id_for(message, viewer_id), message.is_group), bool(data["pinned"]), change.actor_id or 0
        )
    elif kind == "poll" and message is not None and message.poll is not None:
        event = "poll_updated"
        fields = poll_updated((message.id, _chat_id_for(message, viewer_id), message.is_group), message.poll, when)
    elif kind == "read":
        event = "messages_read"
        fields = {
            "reader_id": change.actor_id,
            "reader_username": change.actor_username,
            "message_ids": data["message_ids"],
            "timestamp": iso(when),
        }
    elif kind == "delivered":
        event = "messages_delivered"
        fields = {
            "chat_id": data["chat_id"],
            "is_group": data["is_group"],
            "user_id": change.actor_id,
            "message_ids": data["message_ids"],
            "delivered_at": iso(when),
        }
    elif kind == "contact":
        event = data["event"]
        fields = {"user_id": change.actor_id, "username": change.actor_username, "status": data["status"]}
    elif kind == "group" and change.group is not None:
        event, fields = "group_created", group_info(change.group, viewer_id, online)
    elif kind == "group":
        event = "group_updated"
        # Rows from before the settings (migration 020) say only the name and description.
        fields = group_updated({"chat_id": change.chat_id, **{k: v for k, v in data.items() if k != "event"}})
    elif kind == "member_added":
        event = "group_member_added"
        fields = {"chat_id": change.chat_id, "user_id": change.actor_id, "username": change.actor_username}
    elif kind == "member_removed":
        event, fields = "group_member_removed", {"chat_id": change.chat_id, "user_id": change.actor_id}
    elif kind == "member_role":
        event = "member_role_changed"
        fields = member_role_changed(change.chat_id or 0, RoleChanged(change.actor_id or 0, data["role"], data["by"]))
    elif kind == "member_banned":
        event = "member_banned"
        fields = member_banned(change.chat_id or 0, change.actor_id or 0, data["until"], data["reason"], data["by"])
    elif kind == "member_muted":
        event, fields = "member_muted", member_muted(change.chat_id or 0, change.actor_id or 0, data["until"])
    elif kind == "join_requested":
        event = "join_requested"
        fields = {"chat_id": data["chat_id"], "user_id": change.actor_id, "username": change.actor_username}
    elif kind == "join_rejected":
        event, fields = "join_rejected", {"chat_id": data["chat_id"]}
    elif kind == "chat_read":
        event, fields = "chat_read", dict(data)
    elif kind == "chat_muted":
        event, fields = "chat_muted", chat_muted(data["chat_id"], data["is_group"], data["until"], data["muted"])
    elif kind == "thread_follow":
        event, fields = "thread_followed", {"thread_id": data["thread_id"], "following": data["following"]}
    elif kind == "profile" and change.profile is not None:
        event, fields = "profile_updated", profile(change.profile)
    else:
        raise ValueError(f"a {kind} change without what it names")
    return {"kind": kind, "event": event, **fields}
