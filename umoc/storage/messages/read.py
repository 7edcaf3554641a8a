"""Message reads: the chat list, a chat's history, what a user missed, and the annotations payloads show.

Each costs a fixed number of queries whatever the number of chats or
messages (the counters `umoc.storage.messages.write` keeps make that
possible); every one runs through ``Database.read``, named ``messages.*``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from umoc.errors import RefusedError
from umoc.storage.database import Txn
from umoc.storage.mentions import mention_counts_txn
from umoc.storage.messages.rows import (
    LAST_MESSAGE_COLUMNS,
    MESSAGE_COLUMNS,
    UNKNOWN_CHAT,
    ChatEntry,
    History,
    Message,
    message_from_row,
)
from umoc.storage.polls import polls_for_txn
from umoc.storage.previews import previews_for_txn
from umoc.storage.reactions import reactions_for_txn
from umoc.storage.relations import BLOCKED, FRIEND
from umoc.storage.replies import replies_for_txn
from umoc.storage.threadrows import UNREAD_COUNT, summaries_for_txn

__all__ = [
    "READ_COUNT",
    "annotate_txn",
    "chat_list_txn",
    "chat_ref_txn",
    "history_txn",
    "keyed_message_txn",
    "missed_txn",
    "read_count_params",
]


def _chat_list_rows_txn(txn: Txn, user_id: int) -> list[ChatEntry]:
    rows = txn.execute(
        "SELECT c.id, c.is_group, uc.peer_id, pu.username, pu.last_seen, c.name, c.description, c.member_count,"
        " c.avatar_file_id AS group_avatar,"
        " " + UNREAD_COUNT + " AS unread_count,"
        # Primary-key lookups per row, not joins: joined on two columns the
        # planner misjudges the row count badly enough to pick poor plans.
        " (SELECT status FROM contacts WHERE owner_id = uc.user_id AND contact_id = uc.peer_id) AS my_status,"
        " (SELECT status FROM contacts WHERE owner_id = uc.peer_id AND contact_id = uc.user_id) AS peer_status, "
        + LAST_MESSAGE_COLUMNS
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
                last_message=message_from_row(r, "last_") if r["last_id"] is not None else None,
                username=r["username"],
                last_seen=r["last_seen"],
                presence_visible=r["my_status"] == FRIEND and r["peer_status"] == FRIEND,
                name=r["name"],
                description=r["description"],
                member_count=int(r["member_count"]),
                avatar_file_id=r["group_avatar"] if is_group else None,
            )
        )
    return entries


def chat_ref_txn(txn: Txn, user_id: int, chat_id: int, is_group: bool) -> tuple[int, int] | None:
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
#: once the viewer read it (and did not mark it unread since: mark_unread).
READ_COUNT = (
    "CASE WHEN m.sender_id = ?"
    " THEN (SELECT COUNT(*) FROM message_reads r WHERE r.message_seq = m.seq AND NOT EXISTS ("
    "SELECT 1 FROM contacts b WHERE b.status = ? AND b.updated_at <= r.read_at"
    " AND ((b.owner_id = ? AND b.contact_id = r.user_id) OR (b.owner_id = r.user_id AND b.contact_id = ?))))"
    " ELSE (SELECT COUNT(*) FROM message_reads r WHERE r.message_seq = m.seq AND r.user_id = ?"
    " AND r.marked_unread = 0) END AS read_count"
)


def read_count_params(viewer_id: int) -> tuple[object, ...]:
    return (viewer_id, BLOCKED, viewer_id, viewer_id, viewer_id)


def _history_txn(txn: Txn, user_id: int, chat_id: int, is_group: bool, page: int, page_size: int) -> History:
    ref = chat_ref_txn(txn, user_id, chat_id, is_group)
    if ref is None:
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
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
        "SELECT " + MESSAGE_COLUMNS + ", " + READ_COUNT + " FROM messages m JOIN users su ON su.id = m.sender_id"
        # A thread's replies stay out of the main timeline (and of its count) unless also_in_chat.
        " WHERE m.chat_id = ? AND m.deleted_at IS NULL AND (m.thread_root_seq IS NULL OR m.also_in_chat = 1)"
        " ORDER BY m.seq " + order + " LIMIT ? OFFSET ?",
        (*read_count_params(user_id), internal_id, limit, skip),
    ).fetchall()
    if order == "DESC":
        rows.reverse()
    messages = [(message_from_row(r), int(r["read_count"]) > 0) for r in rows]
    return History(chat_id, is_group, messages, page, page_size, total)


def _missed_txn(txn: Txn, user_id: int, since: float, limit: int, after_seq: int = 0) -> list[Message]:
    rows = txn.execute(
        "SELECT " + MESSAGE_COLUMNS + " FROM user_chats uc JOIN messages m ON m.chat_id = uc.chat_id"
        " JOIN users su ON su.id = m.sender_id"
        " WHERE uc.user_id = ? AND m.created_at > ? AND m.seq > ? AND m.deleted_at IS NULL ORDER BY m.seq LIMIT ?",
        (user_id, since, after_seq, limit),
    ).fetchall()
    return [message_from_row(r) for r in rows]


def annotate_txn(txn: Txn, messages: Sequence[Message], viewer_id: int | None = None) -> list[Message]:
    """The messages with their reply targets, reactions, polls (``viewer_id``'s votes in them), link previews
    and thread summaries.

    Two queries whatever their number (one without replies), and one or two
    more only when there are polls among them, one more only when a text has a link,
    one more only when a thread root is among them.
    """
    if not messages:
        return []
    replies = replies_for_txn(txn, [m.reply_to_seq for m in messages if m.reply_to_seq is not None])
    reactions = reactions_for_txn(txn, [m.seq for m in messages])
    # Only a text with a link can have a preview: a page without one costs no query.
    previews = previews_for_txn(txn, [m.seq for m in messages if m.type == "text" and "http" in m.content])
    polls = polls_for_txn(txn, [m.seq for m in messages if m.type == "poll"], viewer_id)
    threads = summaries_for_txn(txn, [m.seq for m in messages if m.is_thread_root])
    return [
        replace(
            m,
            reply_to=replies.get(m.reply_to_seq) if m.reply_to_seq is not None else None,
            reactions=tuple(reactions.get(m.seq, ())),
            preview=previews.get(m.seq),
            poll=polls.get(m.seq),
            thread=threads.get(m.seq),
        )
        for m in messages
    ]


def keyed_message_txn(txn: Txn, sender_id: int, client_msg_id: str) -> Message | None:
    """The sender's message stored with this key (deleted or not), annotated as `new_message` shows it; None."""
    row = txn.execute(
        "SELECT " + MESSAGE_COLUMNS + " FROM messages m JOIN users su ON su.id = m.sender_id"
        " WHERE m.sender_id = ? AND m.client_msg_id = ?",
        (sender_id, client_msg_id),
    ).fetchone()
    return None if row is None else annotate_txn(txn, [message_from_row(row)], sender_id)[0]


def message_at_txn(txn: Txn, seq: int) -> Message | None:
    """The message with this ``seq`` (deleted or not), annotated as `new_message` shows it; None."""
    row = txn.execute(
        "SELECT " + MESSAGE_COLUMNS + " FROM messages m JOIN users su ON su.id = m.sender_id WHERE m.seq = ?", (seq,)
    ).fetchone()
    return None if row is None else annotate_txn(txn, [message_from_row(row)])[0]


def history_txn(txn: Txn, user_id: int, chat_id: int, is_group: bool, page: int, page_size: int) -> History:
    """One page of a chat, with reply targets and reactions."""
    history = _history_txn(txn, user_id, chat_id, is_group, page, page_size)
    annotated = annotate_txn(txn, [m for m, _ in history.messages], user_id)
    return replace(history, messages=[(m, read) for m, (_, read) in zip(annotated, history.messages, strict=True)])


def missed_txn(txn: Txn, user_id: int, since: float, limit: int, after_seq: int = 0) -> list[Message]:
    return annotate_txn(txn, _missed_txn(txn, user_id, since, limit, after_seq), user_id)


def chat_list_txn(txn: Txn, user_id: int) -> list[ChatEntry]:
    """Every chat of the user (unread counts with the followed threads' replies) plus its unread mentions
    and each direct chat's peer profile: three queries."""
    entries = _chat_list_rows_txn(txn, user_id)
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
            avatar_file_id=e.avatar_file_id if e.is_group else peers.get(e.id, (None, None))[1],
        )
        for e in entries
    ]
