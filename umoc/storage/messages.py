"""Messages, reads and the chat list, for direct chats and groups alike.

Every change keeps the counters the lists read (``chats.last_seq``,
``chats.message_count`` and each member's ``base_count``, ``sent_count``,
``read_count``) right in the same transaction, so `MessageStore.chat_list`
and `MessageStore.history` cost a fixed number of queries however many chats
or messages there are.

Unread counts are not kept per member per message: a member's unread count is
the chat's live messages less those live at their join, those they sent and
those they read since (migration 007).  A message therefore writes the
message, the sender's own member row and the chat row: O(1) rows whatever
the group size.  The chat row is written last, so the two senders of a
direct chat hold their one shared row only for the commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.storage.changes import NewChange, statements_with_change, with_change
from umoc.storage.database import Database, Row, Txn, in_clause
from umoc.storage.mentions import (
    check_mentions,
    mark_mentions_read_txn,
    mention_counts_txn,
    mentions_text,
    parse_mentions,
    unread_mentions_statements,
)
from umoc.storage.reactions import Reaction, reactions_for_txn
from umoc.storage.relations import BLOCKED, FRIEND, ensure_direct_chat_txn
from umoc.storage.replies import NOT_IN_CHAT, ReplyTo, replies_for_txn, sender_and_target_txn
from umoc.streaks import advance
from umoc.timefmt import utc_day

__all__ = [
    "ChatEntry",
    "History",
    "MESSAGE_COLUMNS",
    "Message",
    "MessageStore",
    "READ_COUNT",
    "UNKNOWN_CHAT",
    "annotate_txn",
    "message_from_row",
    "read_count_params",
]

#: The one answer for a chat that does not exist and a chat the user is not in.
UNKNOWN_CHAT = "Unknown chat"


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
    #: Filled by `_chat_list_annotated_txn`: unread mentions of the user, the peer's profile.
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
)


def _message_columns(prefix: str = "") -> str:
    """The select list `_message` reads, each column aliased ``prefix + field name``.

    A prefix keeps the names apart from other columns of the same query (the
    chat list selects ``c.id`` and ``c.is_group`` too).
    """
    return ", ".join(f"{expr} AS {prefix}{name}" for expr, name in _MESSAGE_FIELDS)


_MESSAGE_COLUMNS = _message_columns()
_LAST_MESSAGE_COLUMNS = _message_columns("last_")
#: The select list of `message_from_row` (``messages m JOIN users su ON su.id = m.sender_id``).
MESSAGE_COLUMNS = _MESSAGE_COLUMNS


def _message(row: Row, prefix: str = "") -> Message:
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
    )


def message_from_row(row: Row) -> Message:
    """A `Message` from a row selected with `MESSAGE_COLUMNS`."""
    return _message(row)


# -- sending --------------------------------------------------------------


def _direct_permission_txn(txn: Txn, sender_id: int, recipient_id: int, now: float) -> int:
    """Check both rows say FRIEND (so neither blocked), advance the streak; return the chat id.

    The two senders of a pair take no lock the other waits for: both rows are
    read ``FOR KEY SHARE``, which only a block or removal (``FOR UPDATE``)
    waits on, so a message is never stored after a block committed.  The
    first message of a day per sender writes that sender's own row; only
    then, once a day, the pair is serialised (a transaction-scoped lock on
    the pair) so that two first messages at once still see each other and
    advance the streak.
    """
    rows = txn.execute(
        "SELECT owner_id, status, last_sent_day FROM contacts"
        " WHERE (owner_id = ? AND contact_id = ?) OR (owner_id = ? AND contact_id = ?)"
        " ORDER BY owner_id" + txn.dialect.for_key_share,
        (sender_id, recipient_id, recipient_id, sender_id),
    ).fetchall()
    by_owner = {int(r["owner_id"]): r for r in rows}
    mine, theirs = by_owner.get(sender_id), by_owner.get(recipient_id)
    if mine is None or theirs is None or mine["status"] != FRIEND or theirs["status"] != FRIEND:
        raise RefusedError("You can only send direct messages to your friends")
    day = utc_day(now)
    if mine["last_sent_day"] != day:
        _first_of_day_txn(txn, sender_id, recipient_id, day)
    return ensure_direct_chat_txn(txn, sender_id, recipient_id, now)


def _first_of_day_txn(txn: Txn, sender_id: int, recipient_id: int, day: int) -> None:
    """Record the sender's day; when the peer already wrote today, both rows' streak advances."""
    if txn.dialect.pair_lock:
        # Int4 keys: ids past 2**31 wrap, and a shared key only serialises two pairs once a day.
        key = sorted(i % 2**31 for i in (sender_id, recipient_id))
        txn.execute(txn.dialect.pair_lock, key)
    # Read again after the pair lock: a peer's first message of the day that committed meanwhile is seen.
    rows = txn.execute(
        "SELECT owner_id, last_sent_day, streak, streak_last_day FROM contacts"
        " WHERE (owner_id = ? AND contact_id = ?) OR (owner_id = ? AND contact_id = ?)",
        (sender_id, recipient_id, recipient_id, sender_id),
    ).fetchall()
    by_owner = {int(r["owner_id"]): r for r in rows}
    mine, theirs = by_owner[sender_id], by_owner[recipient_id]
    if mine["last_sent_day"] == day:
        return
    txn.execute(
        "UPDATE contacts SET last_sent_day = ? WHERE owner_id = ? AND contact_id = ?",
        (day, sender_id, recipient_id),
    )
    if theirs["last_sent_day"] == day:
        streak, last_day = advance(int(mine["streak"]), mine["streak_last_day"], day)
        txn.execute(
            "UPDATE contacts SET streak = ?, streak_last_day = ? WHERE (owner_id = ? AND contact_id = ?)"
            " OR (owner_id = ? AND contact_id = ?)",
            (streak, last_day, sender_id, recipient_id, recipient_id, sender_id),
        )


def group_members_txn(txn: Txn, group_id: int, lock: bool = False) -> list[int] | None:
    """Members of an open group (None if no such open group); ``lock`` serialises with membership changes.

    Under ``lock`` the answer holds until the transaction ends (every membership
    change locks the chat row first; on SQLite the writer holds the file's
    lock), so the other messages to this group in the same group-commit batch
    reuse it: a batch reads a group of 1,000 once, not once per message.
    """
    key = ("group_members", group_id)
    if lock and key in txn.locked:
        known = txn.locked[key]
        return None if known is None else list(known)
    members = _group_members_txn(txn, group_id, lock)
    if lock:
        txn.locked[key] = None if members is None else tuple(members)
    return members


def _group_members_txn(txn: Txn, group_id: int, lock: bool) -> list[int] | None:
    row = txn.execute(
        "SELECT id FROM chats WHERE id = ? AND is_group = 1 AND closed_at IS NULL"
        + (txn.dialect.for_update if lock else ""),
        (group_id,),
    ).fetchone()
    if row is None:
        return None
    rows = txn.execute("SELECT user_id FROM user_chats WHERE chat_id = ?", (group_id,)).fetchall()
    return [int(r["user_id"]) for r in rows]


def _post_txn(
    txn: Txn,
    sender_id: int,
    sender_username: str,
    recipient_id: int,
    is_group: bool,
    message_id: str,
    msg_type: str,
    content: str,
    encrypted_content: str | None,
    now: float,
    reply_to_seq: int | None = None,
    mentions: Sequence[int] = (),
) -> tuple[Message, list[int]]:
    if is_group:
        members = group_members_txn(txn, recipient_id, lock=True)
        if members is None or sender_id not in members:
            raise RefusedError(UNKNOWN_CHAT)
        chat_id, audience = recipient_id, members
    else:
        if recipient_id == sender_id:
            raise RefusedError("You cannot send a message to yourself")
        chat_id = _direct_permission_txn(txn, sender_id, recipient_id, now)
        audience = [sender_id, recipient_id]
    if mentions:
        check_mentions(mentions, audience)
    seq = int(
        txn.scalar(
            "INSERT INTO messages (id, chat_id, sender_id, recipient_id, is_group, type, content,"
            " encrypted_content, created_at, reply_to_seq, mentions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " RETURNING seq",
            (
                message_id,
                chat_id,
                sender_id,
                recipient_id,
                int(is_group),
                msg_type,
                content,
                encrypted_content,
                now,
                reply_to_seq,
                mentions_text(mentions),
            ),
        )
    )
    txn.execute_each(
        (
            # The sender's own row: nobody else's, so no other sender waits on it.
            (
                "UPDATE user_chats SET sent_count = sent_count + 1 WHERE user_id = ? AND chat_id = ?",
                (sender_id, chat_id),
            ),
            # Last: the one row both sides of a direct chat write, held only until the commit.
            # last_seq and last_activity only move forward, whichever of two concurrent senders commits first.
            # The feed's row rides on the same statement (no round trip of its own on PostgreSQL).
            *statements_with_change(
                txn,
                "UPDATE chats SET message_count = message_count + 1,"
                " last_activity = CASE WHEN last_activity < ? THEN ? ELSE last_activity END,"
                " last_seq = CASE WHEN last_seq < ? THEN ? ELSE last_seq END WHERE id = ?",
                (now, now, seq, seq, chat_id),
                NewChange("message", now, chat_id=chat_id, message_seq=seq, actor_id=sender_id),
            ),
            # Who this message mentions: in the same round trip (a reply with mentions costs none more).
            *unread_mentions_statements(seq, chat_id, sender_id, mentions),
        )
    )
    message = Message(
        message_id,
        seq,
        chat_id,
        sender_id,
        sender_username,
        recipient_id,
        is_group,
        msg_type,
        content,
        encrypted_content,
        now,
        reply_to_seq=reply_to_seq,
        mentions=tuple(mentions),
    )
    return message, audience


# -- deleting and reading -------------------------------------------------


def _soft_delete_txn(txn: Txn, message_id: str, now: float, only_sender: int | None) -> tuple[int, int, list[int]]:
    """Soft-delete a live message (only ``only_sender``'s, unless None: a moderator); ``(chat, sender, audience)``."""
    row = txn.execute(
        "SELECT seq, chat_id, sender_id FROM messages WHERE id = ? AND deleted_at IS NULL" + txn.dialect.for_update,
        (message_id,),
    ).fetchone()
    if row is None or (only_sender is not None and int(row["sender_id"]) != only_sender):
        # Someone else's message looks exactly like a missing one.
        raise RefusedError("Message not found")
    seq, chat_id, sender_id = int(row["seq"]), int(row["chat_id"]), int(row["sender_id"])
    # Rows in the order sending takes them, so the two never deadlock: a group
    # message locks the chat row first, then its sender's member row; a direct
    # message its sender's member row, then (last) the chat row.
    is_group = txn.scalar("SELECT is_group FROM chats WHERE id = ?", (chat_id,))
    if is_group:
        txn.execute("SELECT id FROM chats WHERE id = ?" + txn.dialect.for_update, (chat_id,))
    else:
        txn.execute(
            "SELECT user_id FROM user_chats WHERE chat_id = ? ORDER BY user_id" + txn.dialect.for_update, (chat_id,)
        )
    with_change(
        txn,
        "UPDATE messages SET deleted_at = ? WHERE seq = ?",
        (now, seq),
        NewChange("delete", now, chat_id=chat_id, message_seq=seq, actor_id=only_sender),
    )
    # The message leaves exactly one of each member's buckets: live at their
    # join (base), sent by them since, read by them since, or unread.
    txn.execute(
        "UPDATE user_chats SET base_count = base_count - 1 WHERE chat_id = ? AND joined_seq >= ?", (chat_id, seq)
    )
    txn.execute(
        "UPDATE user_chats SET sent_count = sent_count - 1 WHERE chat_id = ? AND user_id = ? AND joined_seq < ?",
        (chat_id, sender_id, seq),
    )
    txn.execute(
        "UPDATE user_chats SET read_count = read_count - 1"
        " WHERE chat_id = ? AND user_id <> ? AND joined_seq < ?"
        " AND EXISTS (SELECT 1 FROM message_reads r WHERE r.message_seq = ? AND r.user_id = user_chats.user_id)",
        (chat_id, sender_id, seq, seq),
    )
    txn.execute(
        "UPDATE chats SET message_count = message_count - 1,"
        " last_seq = CASE WHEN last_seq = ? THEN"
        " (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE chat_id = ? AND deleted_at IS NULL)"
        " ELSE last_seq END WHERE id = ?",
        (seq, chat_id, chat_id),
    )
    rows = txn.execute("SELECT user_id FROM user_chats WHERE chat_id = ?", (chat_id,)).fetchall()
    audience = [int(r["user_id"]) for r in rows]
    if sender_id not in audience:
        audience.append(sender_id)
    return chat_id, sender_id, audience


def _delete_txn(txn: Txn, user_id: int, message_id: str, now: float) -> tuple[int, list[int]]:
    chat_id, _sender_id, audience = _soft_delete_txn(txn, message_id, now, user_id)
    return chat_id, audience


def _record_read_txn(txn: Txn, reader_id: int, sender_id: int, message_ids: list[str], now: float) -> None:
    """The ``read`` change in the sender's own stream, unless a block stands between the two (as live)."""
    change = NewChange("read", now, user_id=sender_id, actor_id=reader_id, data={"message_ids": message_ids})
    txn.execute(
        "INSERT INTO changes (chat_id, user_id, profile_id, kind, message_seq, actor_id, data, created_at)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM contacts WHERE status = ?"
        " AND ((owner_id = ? AND contact_id = ?) OR (owner_id = ? AND contact_id = ?)))",
        (*change.params(), BLOCKED, reader_id, sender_id, sender_id, reader_id),
    )


def _read_txn(txn: Txn, reader_id: int, sender_id: int, message_ids: list[str], now: float) -> list[str]:
    message_ids = list(dict.fromkeys(message_ids))
    rows = txn.execute(
        "SELECT m.seq, m.id, m.chat_id, m.sender_id, m.is_group, m.recipient_id, m.deleted_at, uc.joined_seq"
        " FROM messages m LEFT JOIN user_chats uc ON uc.chat_id = m.chat_id AND uc.user_id = ?"
        " WHERE m.id IN " + in_clause(message_ids),
        [reader_id, *message_ids],
    ).fetchall()
    if len(rows) != len(message_ids):
        raise RefusedError("Message not found")
    for row in rows:
        addressed = row["joined_seq"] is not None and (bool(row["is_group"]) or int(row["recipient_id"]) == reader_id)
        if int(row["sender_id"]) != sender_id or sender_id == reader_id or not addressed:
            # Not from that sender, or not addressed to the reader: the same answer as missing.
            raise RefusedError("Message not found")
    live = [r for r in rows if r["deleted_at"] is None]
    seqs = [int(r["seq"]) for r in live]
    mark_mentions_read_txn(txn, reader_id, seqs)
    _record_read_txn(txn, reader_id, sender_id, message_ids, now)
    if seqs:
        already = {
            int(r["message_seq"])
            for r in txn.execute(
                "SELECT message_seq FROM message_reads WHERE user_id = ? AND message_seq IN " + in_clause(seqs),
                [reader_id, *seqs],
            ).fetchall()
        }
        fresh = [r for r in live if int(r["seq"]) not in already]
        if fresh:
            txn.executemany(
                "INSERT INTO message_reads (message_seq, user_id, read_at) VALUES (?, ?, ?)",
                [(int(r["seq"]), reader_id, now) for r in fresh],
            )
            counted: dict[int, int] = {}
            for r in fresh:
                if int(r["seq"]) > int(r["joined_seq"]):
                    counted[int(r["chat_id"])] = counted.get(int(r["chat_id"]), 0) + 1
            for chat_id, n in sorted(counted.items()):
                txn.execute(
                    "UPDATE user_chats SET read_count = read_count + ? WHERE user_id = ? AND chat_id = ?",
                    (n, reader_id, chat_id),
                )
    return message_ids


# -- listing --------------------------------------------------------------


def _chat_list_txn(txn: Txn, user_id: int) -> list[ChatEntry]:
    rows = txn.execute(
        "SELECT c.id, c.is_group, uc.peer_id, pu.username, pu.last_seen, c.name, c.description, c.member_count,"
        " c.message_count - uc.base_count - uc.sent_count - uc.read_count AS unread_count,"
        # Primary-key lookups per row, not joins: joined on two columns the
        # planner misjudges the row count badly enough to pick poor plans.
        " (SELECT status FROM contacts WHERE owner_id = uc.user_id AND contact_id = uc.peer_id) AS my_status,"
        " (SELECT status FROM contacts WHERE owner_id = uc.peer_id AND contact_id = uc.user_id) AS peer_status, "
        + _LAST_MESSAGE_COLUMNS
        + " FROM user_chats uc JOIN chats c ON c.id = uc.chat_id"
        " LEFT JOIN users pu ON pu.id = uc.peer_id"
        " LEFT JOIN messages m ON m.chat_id = c.id AND m.seq = c.last_seq AND m.deleted_at IS NULL"
        " LEFT JOIN users su ON su.id = m.sender_id"
        " WHERE uc.user_id = ? AND c.closed_at IS NULL"
        " ORDER BY c.last_activity DESC, c.id DESC",
        (user_id,),
    ).fetchall()
    entries = []
    for r in rows:
        is_group = bool(r["is_group"])
        entries.append(
            ChatEntry(
                id=int(r["id"]) if is_group else int(r["peer_id"]),
                is_group=is_group,
                unread_count=int(r["unread_count"]),
                last_message=_message(r, "last_") if r["last_id"] is not None else None,
                username=r["username"],
                last_seen=r["last_seen"],
                presence_visible=r["my_status"] == FRIEND and r["peer_status"] == FRIEND,
                name=r["name"],
                description=r["description"],
                member_count=int(r["member_count"]),
            )
        )
    return entries


def _chat_ref_txn(txn: Txn, user_id: int, chat_id: int, is_group: bool) -> tuple[int, int] | None:
    """(internal chat id, live message count) of a chat ``user_id`` is in, else None."""
    if is_group:
        where, param = "uc.chat_id = ? AND uc.is_group = 1", chat_id
    else:
        where, param = "uc.peer_id = ?", chat_id
    row = txn.execute(
        "SELECT c.id, c.message_count FROM user_chats uc JOIN chats c ON c.id = uc.chat_id"
        " WHERE uc.user_id = ? AND " + where + " AND c.closed_at IS NULL",
        (user_id, param),
    ).fetchone()
    return None if row is None else (int(row["id"]), int(row["message_count"]))


#: ``read_count`` of message ``m`` as a viewer sees it (`read_count_params` binds its placeholders):
#: a sender's message counts as read once someone read it, except that a read
#: made after a block between sender and reader is not shown (a block stops
#: read receipts both ways: see the read_receipt event); another's message
#: once the viewer read it.
READ_COUNT = (
    "CASE WHEN m.sender_id = ?"
    " THEN (SELECT COUNT(*) FROM message_reads r WHERE r.message_seq = m.seq AND NOT EXISTS ("
    "SELECT 1 FROM contacts b WHERE b.status = ? AND b.updated_at <= r.read_at"
    " AND ((b.owner_id = ? AND b.contact_id = r.user_id) OR (b.owner_id = r.user_id AND b.contact_id = ?))))"
    " ELSE (SELECT COUNT(*) FROM message_reads r WHERE r.message_seq = m.seq AND r.user_id = ?) END AS read_count"
)


def read_count_params(viewer_id: int) -> tuple[object, ...]:
    return (viewer_id, BLOCKED, viewer_id, viewer_id, viewer_id)


def _history_txn(txn: Txn, user_id: int, chat_id: int, is_group: bool, page: int, page_size: int) -> History:
    ref = _chat_ref_txn(txn, user_id, chat_id, is_group)
    if ref is None:
        raise RefusedError(UNKNOWN_CHAT)
    internal_id, total = ref
    offset = (page - 1) * page_size
    if offset >= total:
        return History(chat_id, is_group, [], page, page_size, total)
    # Pages past the middle are read from the oldest end, so no page skips
    # more than half the chat's messages.
    if offset > total // 2:
        start = total - offset - page_size
        order, limit, skip = "ASC", page_size + min(start, 0), max(start, 0)
    else:
        order, limit, skip = "DESC", page_size, offset
    rows = txn.execute(
        "SELECT " + _MESSAGE_COLUMNS + ", " + READ_COUNT + " FROM messages m JOIN users su ON su.id = m.sender_id"
        " WHERE m.chat_id = ? AND m.deleted_at IS NULL ORDER BY m.seq " + order + " LIMIT ? OFFSET ?",
        (*read_count_params(user_id), internal_id, limit, skip),
    ).fetchall()
    if order == "DESC":
        rows.reverse()
    messages = [(_message(r), int(r["read_count"]) > 0) for r in rows]
    return History(chat_id, is_group, messages, page, page_size, total)


def _missed_txn(txn: Txn, user_id: int, since: float, limit: int, after_seq: int = 0) -> list[Message]:
    rows = txn.execute(
        "SELECT " + _MESSAGE_COLUMNS + " FROM user_chats uc JOIN messages m ON m.chat_id = uc.chat_id"
        " JOIN users su ON su.id = m.sender_id"
        " WHERE uc.user_id = ? AND m.created_at > ? AND m.seq > ? AND m.deleted_at IS NULL ORDER BY m.seq LIMIT ?",
        (user_id, since, after_seq, limit),
    ).fetchall()
    return [_message(r) for r in rows]


# -- messaging v2: what payloads show beyond the row --------------------------
#
# Wrappers around the transactions above, so that these stay as they are:
# each adds its few queries after the one it wraps, in the same transaction.


def annotate_txn(txn: Txn, messages: Sequence[Message]) -> list[Message]:
    """The messages with their reply targets and reactions: two queries whatever their number (one without replies)."""
    if not messages:
        return []
    replies = replies_for_txn(txn, [m.reply_to_seq for m in messages if m.reply_to_seq is not None])
    reactions = reactions_for_txn(txn, [m.seq for m in messages])
    return [
        replace(
            m,
            reply_to=replies.get(m.reply_to_seq) if m.reply_to_seq is not None else None,
            reactions=tuple(reactions.get(m.seq, ())),
        )
        for m in messages
    ]


def _post_annotated_txn(
    txn: Txn,
    sender_id: int,
    sender_username: str,
    recipient_id: int,
    is_group: bool,
    message_id: str,
    msg_type: str,
    content: str,
    encrypted_content: str | None,
    now: float,
    reply_to: str | None,
    mentions: Sequence[int],
) -> tuple[Message, list[int]]:
    """`_post_txn` plus the reply target (same chat, checked), the mentions (members, checked), the sender's profile."""
    display_name, avatar_file_id, target = sender_and_target_txn(txn, sender_id, reply_to)
    mentioned = sorted(set(mentions))
    message, audience = _post_txn(
        txn,
        sender_id,
        sender_username,
        recipient_id,
        is_group,
        message_id,
        msg_type,
        content,
        encrypted_content,
        now,
        target[0] if target is not None else None,
        mentioned,
    )
    # Refusals after the insert roll it back with the rest of the transaction.
    if target is not None and target[1] != message.chat_id:
        raise RefusedError(NOT_IN_CHAT)
    message = replace(
        message,
        reply_to=target[2] if target is not None else None,
        sender_display_name=display_name,
        sender_avatar_file_id=avatar_file_id,
    )
    return message, audience


def _history_annotated_txn(txn: Txn, user_id: int, chat_id: int, is_group: bool, page: int, page_size: int) -> History:
    history = _history_txn(txn, user_id, chat_id, is_group, page, page_size)
    annotated = annotate_txn(txn, [m for m, _ in history.messages])
    return replace(history, messages=[(m, read) for m, (_, read) in zip(annotated, history.messages, strict=True)])


def _missed_annotated_txn(txn: Txn, user_id: int, since: float, limit: int, after_seq: int = 0) -> list[Message]:
    return annotate_txn(txn, _missed_txn(txn, user_id, since, limit, after_seq))


def _chat_list_annotated_txn(txn: Txn, user_id: int) -> list[ChatEntry]:
    """`_chat_list_txn` plus each chat's unread mentions and each direct chat's peer profile: two queries."""
    entries = _chat_list_txn(txn, user_id)
    counts = mention_counts_txn(txn, user_id)
    peers = {
        int(r["peer_id"]): (r["display_name"], r["avatar_file_id"])
        for r in txn.execute(
            "SELECT uc.peer_id, u.display_name, u.avatar_file_id FROM user_chats uc JOIN users u ON u.id = uc.peer_id"
            " WHERE uc.user_id = ? AND (u.display_name IS NOT NULL OR u.avatar_file_id IS NOT NULL)",
            (user_id,),
        ).fetchall()
    }
    return [
        replace(
            e,
            mention_count=counts.get((e.id, e.is_group), 0),
            display_name=None if e.is_group else peers.get(e.id, (None, None))[0],
            avatar_file_id=None if e.is_group else peers.get(e.id, (None, None))[1],
        )
        for e in entries
    ]


class MessageStore:
    """Messages and per-user chat state."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def post(
        self,
        sender_id: int,
        sender_username: str,
        recipient_id: int,
        is_group: bool,
        message_id: str,
        msg_type: str,
        content: str,
        encrypted_content: str | None,
        now: float,
        reply_to: str | None = None,
        mentions: Sequence[int] = (),
    ) -> defer.Deferred[tuple[Message, list[int]]]:
        """Check the sender may write, store, count: one transaction. ``(message, audience user ids)``.

        ``reply_to`` must be a live message of the same chat and ``mentions``
        members of it. Raises `RefusedError` when the chat is not writable by
        the sender or a reply target or mention is not right.
        """
        key = recipient_id if is_group else min(sender_id, recipient_id) * 31 + max(sender_id, recipient_id)
        return self._db.write(
            key,
            _post_annotated_txn,
            sender_id,
            sender_username,
            recipient_id,
            is_group,
            message_id,
            msg_type,
            content,
            encrypted_content,
            now,
            reply_to,
            mentions,
        )

    def delete(self, user_id: int, message_id: str, now: float) -> defer.Deferred[tuple[int, list[int]]]:
        """Soft-delete the sender's own message; ``(chat id, audience)``. Raises `RefusedError`."""
        return self._db.write(user_id, _delete_txn, user_id, message_id, now)

    def moderate_delete(self, message_id: str, now: float) -> defer.Deferred[tuple[int, int, list[int]]]:
        """Soft-delete anybody's message (an administrator's moderation); ``(chat id, sender id, audience)``."""
        return self._db.write(0, _soft_delete_txn, message_id, now, None)

    def mark_read(
        self, reader_id: int, sender_id: int, message_ids: list[str], now: float
    ) -> defer.Deferred[list[str]]:
        """Mark messages from ``sender_id`` to the reader (or the reader's groups) read. Raises `RefusedError`."""
        return self._db.write(reader_id, _read_txn, reader_id, sender_id, message_ids, now)

    def chat_list(self, user_id: int) -> defer.Deferred[list[ChatEntry]]:
        """Every chat of the user, newest activity first: three queries (chats, mentions, peer profiles)."""
        return self._db.read("messages.chat_list", _chat_list_annotated_txn, user_id)

    def history(self, user_id: int, chat_id: int, is_group: bool, page: int, page_size: int) -> defer.Deferred[History]:
        """One page (1 = newest) of a chat the user is in. Raises `RefusedError` otherwise."""
        return self._db.read("messages.history", _history_annotated_txn, user_id, chat_id, is_group, page, page_size)

    def missed_since(
        self, user_id: int, since_epoch: float, limit: int, after_seq: int = 0
    ) -> defer.Deferred[list[Message]]:
        """Every live message in the user's chats after ``since_epoch``, oldest first.

        ``after_seq`` pages on: the next page starts after the last ``seq`` seen.
        """
        return self._db.read("messages.missed_since", _missed_annotated_txn, user_id, since_epoch, limit, after_seq)

    def has_direct_chat(self, user_id: int, peer_id: int) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            return _chat_ref_txn(txn, user_id, peer_id, False) is not None

        return self._db.read("messages.has_direct_chat", txn_fn)
