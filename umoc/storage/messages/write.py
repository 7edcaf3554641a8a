"""Message writes: posting and deleting, each one transaction of the group commit.

Every change keeps the counters the reads use (``chats.last_seq``,
``chats.message_count`` and each member's ``base_count``, ``sent_count``,
``read_count``) right in the same transaction, so the chat list and a
history page cost a fixed number of queries however many chats or messages
there are.

Unread counts are not kept per member per message: a member's unread count is
the chat's live messages less those live at their join, those they sent and
those they read since (migration 007).  A message therefore writes the
message, the sender's own member row and the chat row: O(1) rows whatever
the group size.  The chat row is written last, so the two senders of a
direct chat hold their one shared row only for the commit.

On PostgreSQL a group-commit batch's messages are written by one call of
migration 030's ``post_messages_v3`` (migration 018's ``post_messages`` with
thread replies and ``extra`` since 029's v2, and the node's kept members since
030; `post_batch_txn`), which does what `post_txn`
does for each, so a batch costs one round trip whatever its size and
whatever share of it replies in threads; `post_txn` stays the write of one
message (SQLite, a poll, and a batch the function gives up on).  A change
to what `post_txn` writes needs the same change in a new migration
replacing the function (``post_messages`` stays for older releases).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any

from umoc.errors import Code, RefusedError
from umoc.records import Actor
from umoc.records.groups import MUTED, READ_ONLY, ROLE_REFUSED, may, outranks
from umoc.records.messages import Deletion, NewMessage
from umoc.storage.changes import NewChange, record_many_txn, statements_with_change, with_change
from umoc.storage.database import Row, Txn, values_rows
from umoc.storage.engine.members import GroupMembers
from umoc.storage.membership import kept_members_txn, members_at_txn
from umoc.storage.mentions import check_mentions, mentions_text, outsider_error, unread_mentions_statements
from umoc.storage.messages.read import keyed_message_txn, message_at_txn
from umoc.storage.messages.rows import UNKNOWN_CHAT, Message
from umoc.storage.polls import insert_poll_txn
from umoc.storage.relations import FRIEND, ensure_direct_chat_txn, reachable
from umoc.storage.replies import (
    NOT_IN_CHAT,
    REPLY_PREVIEW,
    ReplyTo,
    sender_and_target_txn,
    sender_target_and_more_txn,
)
from umoc.storage.standing import GroupSettings, check_settings, check_standing
from umoc.storage.threadrows import (
    ROOT_COLUMNS,
    ROOT_JOINS,
    THREAD_NOT_FOUND,
    THREAD_NOT_IN_CHAT,
    BatchedReplies,
    ThreadSummary,
    reply_deleted_txn,
    reply_root_txn,
    reply_statements_txn,
    root_from_row,
)
from umoc.streaks import advance
from umoc.timefmt import utc_day

__all__ = [
    "Deleted",
    "KeyTakenError",
    "LiveMessage",
    "delete_txn",
    "INDEX_EVERY",
    "INDEX_MOST",
    "group_members_txn",
    "index_pending_txn",
    "post_batch_txn",
    "post_each_txn",
    "post_txn",
    "soft_delete_txn",
]

# -- sending --------------------------------------------------------------

_INSERT = (
    "INSERT INTO messages (id, chat_id, sender_id, recipient_id, is_group, type, content,"
    " encrypted_content, created_at, reply_to_seq, mentions"
)
_INSERT_VALUES = ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
#: A message without a key: no index on client_msg_id is touched (the index is partial).
_INSERT_PLAIN = _INSERT + _INSERT_VALUES + ") RETURNING seq"
_KEYED = " ON CONFLICT (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING RETURNING seq"
#: A keyed message: no row (None) when the sender already has one with that key.
_INSERT_KEYED = _INSERT + ", client_msg_id" + _INSERT_VALUES + ", ?)" + _KEYED
#: The same with the app's ``extra`` (migration 021): a message without it is the statement above, unchanged.
_INSERT_PLAIN_EXTRA = _INSERT + ", extra" + _INSERT_VALUES + ", ?) RETURNING seq"
_INSERT_KEYED_EXTRA = _INSERT + ", extra, client_msg_id" + _INSERT_VALUES + ", ?, ?)" + _KEYED
#: A thread reply (migration 024), with or without ``extra``: a plain message's statements are unchanged.
_THREAD = ", thread_root_seq, thread_id, also_in_chat"
_INSERT_PLAIN_THREAD = _INSERT + _THREAD + ", extra" + _INSERT_VALUES + ", ?, ?, ?, ?) RETURNING seq"
_INSERT_KEYED_THREAD = _INSERT + _THREAD + ", extra, client_msg_id" + _INSERT_VALUES + ", ?, ?, ?, ?, ?)" + _KEYED
#: Tries at storing a keyed message whose key keeps being taken from expired rows by others meanwhile
#: (also in migration 018's function).
_KEY_TRIES = 3

TO_SELF = "You cannot send a message to yourself"
NOT_FRIENDS = "You can only send direct messages to your friends"
#: A direct message a block stops when friendship is not required (``contacts.require_friendship: false``).
BLOCKED_REFUSAL = "You cannot send direct messages to this user"
USER_NOT_FOUND = "User not found"
KEY_BUSY = "'client_msg_id' is in use by another message being sent; send again"


class KeyTakenError(Exception):
    """The sender already stored a message with this ``client_msg_id`` within the window: ``original``.

    Raised out of the write (so the batch rolls this item back: whatever the
    permission check wrote, a day's streak, goes too) and answered by the
    command, which decides whether the new message is a retry of it.
    """

    def __init__(self, original: Message) -> None:
        super().__init__(original.id)
        self.original = original


class _KeyInUseError(Exception):
    """The insert met a row with the same ``(sender_id, client_msg_id)``; nothing was inserted."""


@dataclass(frozen=True, slots=True)
class _Sender:
    """What a message shows of its sender and its reply target, read before the insert."""

    display_name: str | None
    avatar_file_id: str | None
    reply_to_seq: int | None
    reply_to: ReplyTo | None
    #: A thread reply's root and its thread (`ROOT_COLUMNS`), read with the sender; checked once the chat is.
    thread_root: Row | None = None


def _direct_permission_txn(txn: Txn, sender_id: int, recipient_id: int, now: float) -> tuple[int, _Sender]:
    """Check both rows say FRIEND (so neither blocked), advance the streak; the chat id and the sender's profile.

    Without ``txn.rules.require_friendship`` (``contacts.require_friendship: false``)
    any two users a block does not separate may write; streaks stay between friends.

    The two senders of a pair take no lock the other waits for: both rows are
    read ``FOR KEY SHARE``, which only a block or removal (``FOR UPDATE``)
    waits on, so a message is never stored after a block committed.  The
    first message of a day per sender writes that sender's own row; only
    then, once a day, the pair is serialised (a transaction-scoped lock on
    the pair) so that two first messages at once still see each other and
    advance the streak.
    """
    # The pair's chat and the sender's profile ride along (subqueries: FOR KEY SHARE locks only the contacts rows).
    rows = txn.execute(
        "SELECT owner_id, status, last_sent_day, (SELECT id FROM chats WHERE user_lo = ? AND user_hi = ?) AS chat_id,"
        " (SELECT display_name FROM users WHERE id = ?) AS display_name,"
        " (SELECT avatar_file_id FROM users WHERE id = ?) AS avatar_file_id"
        " FROM contacts WHERE (owner_id = ? AND contact_id = ?) OR (owner_id = ? AND contact_id = ?)"
        " ORDER BY owner_id" + txn.dialect.for_key_share,
        (
            min(sender_id, recipient_id),
            max(sender_id, recipient_id),
            sender_id,
            sender_id,
            sender_id,
            recipient_id,
            recipient_id,
            sender_id,
        ),
    ).fetchall()
    by_owner = {int(r["owner_id"]): r for r in rows}
    mine, theirs = by_owner.get(sender_id), by_owner.get(recipient_id)
    require_friendship = txn.rules.require_friendship
    mine_status = None if mine is None else mine["status"]
    theirs_status = None if theirs is None else theirs["status"]
    if not reachable(mine_status, theirs_status, require_friendship):
        raise RefusedError(NOT_FRIENDS if require_friendship else BLOCKED_REFUSAL, code="forbidden")
    if theirs is None and not require_friendship:
        # No contact row: a stranger, who must exist (and not be deleted) to be written to.
        if txn.scalar("SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL", (recipient_id,)) is None:
            raise RefusedError(USER_NOT_FOUND, code="not_found")
    day = utc_day(now)
    if mine is not None and mine_status == FRIEND and theirs_status == FRIEND and mine["last_sent_day"] != day:
        _first_of_day_txn(txn, sender_id, recipient_id, day)
    # Either row carries the chat and the profile; strangers (no rows: contacts.require_friendship off) read them.
    row = mine if mine is not None else theirs
    if row is None:
        display_name, avatar_file_id, _ = sender_and_target_txn(txn, sender_id, None)
        return ensure_direct_chat_txn(txn, sender_id, recipient_id, now), _Sender(
            display_name, avatar_file_id, None, None
        )
    profile = _Sender(row["display_name"], row["avatar_file_id"], None, None)
    if row["chat_id"] is not None:
        return int(row["chat_id"]), profile
    return ensure_direct_chat_txn(txn, sender_id, recipient_id, now), profile


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
    """The members (and, under ``lock``, the settings and standings kept in ``txn.locked``).

    Under ``lock`` the members come from the node's `MemberCache` when the
    chat's ``members_version``, read and locked with the chat's row, is the
    one they were kept at: no member row is read then (migration 030).
    """
    row = txn.execute(
        "SELECT id, kind, read_only, slow_mode, members_version FROM chats"
        " WHERE id = ? AND is_group = 1 AND closed_at IS NULL" + (txn.dialect.for_update if lock else ""),
        (group_id,),
    ).fetchone()
    if row is None:
        return None
    if not lock:
        return list(members_at_txn(txn, group_id, int(row["members_version"])))
    txn.locked[("group_settings", group_id)] = GroupSettings(row["kind"], bool(row["read_only"]), int(row["slow_mode"]))
    kept = kept_members_txn(txn, group_id, int(row["members_version"]), standings=True)
    txn.locked[("group_standing", group_id)] = kept.standing
    return list(kept.members)


def _check_standing(txn: Txn, group_id: int, sender_id: int, now: float) -> None:
    """Refuse a group message the sender's role, mute or the group's settings forbid (as migration 020's function).

    The standings and settings come with the members (`_group_members_txn`):
    an ordinary group costs no query here.  Slow mode reads the sender's last
    message time afresh, or from SQLite's batch (`_Later`) when an earlier
    message of it is the sender's latest; a batch whose members came back
    from ``post_messages_v3`` reads the sender's row.
    """
    standing = txn.locked.get(("group_standing", group_id))
    settings = txn.locked.get(("group_settings", group_id))
    if standing is None or settings is None:
        row = txn.execute(
            "SELECT uc.role, uc.muted_until, uc.last_sent_at, c.kind, c.read_only, c.slow_mode"
            " FROM user_chats uc JOIN chats c ON c.id = uc.chat_id WHERE uc.chat_id = ? AND uc.user_id = ?",
            (group_id, sender_id),
        ).fetchone()
        if row is None:
            raise RefusedError(UNKNOWN_CHAT, code="not_found")
        role, muted_until, last_sent_at = row["role"], row["muted_until"], row["last_sent_at"]
        settings = GroupSettings(row["kind"], bool(row["read_only"]), int(row["slow_mode"]))
    else:
        role, muted_until = standing.get(sender_id, ("member", None))
        last_sent_at = None
        if settings.slows(role):
            last_sent_at = txn.scalar(
                "SELECT last_sent_at FROM user_chats WHERE chat_id = ? AND user_id = ?", (group_id, sender_id)
            )
    later: _Later | None = txn.locked.get(_LATER)
    if later is not None and settings.slows(role):
        # SQLite's batch writes the senders' rows at its end: an earlier message of it is the latest sent.
        pending = later.last_sent_at(sender_id, group_id)
        if pending is not None and (last_sent_at is None or pending > last_sent_at):
            last_sent_at = pending
    check_standing(role, muted_until, "send", now)
    check_settings(role, settings, last_sent_at, now)


def _insert_txn(
    txn: Txn, sender: Actor, new: NewMessage, message_id: str, now: float, shown: _Sender | None
) -> tuple[Message, list[int]]:
    """The permission check, the row, the sender's and the chat's counters, the feed row and the mentions.

    A thread reply (``new.thread_id``) also writes its thread's row and
    follows (`reply_statements_txn`); unless it is also in the chat it leaves
    the chat's counters alone, and its feed row rides on the thread's row.
    A plain message reads nothing more.  In SQLite's batch (`post_each_txn`,
    its `_Later` in ``txn.locked``), a plain message's counters and feed row
    (a direct or a group message's) are left to it, written for the whole
    batch at its end.  ``shown`` None: a direct message that replies to
    nothing, whose sender's profile comes with the friend check.
    """
    later: _Later | None = txn.locked.get(_LATER)
    sender_id, recipient_id, is_group, mentions = sender.uid, new.recipient_id, new.is_group, new.mentions
    if is_group:
        members = group_members_txn(txn, recipient_id, lock=True)
        if members is None or sender_id not in members:
            raise RefusedError(UNKNOWN_CHAT, code="not_found")
        _check_standing(txn, recipient_id, sender_id, now)
        chat_id, audience = recipient_id, members
    else:
        if recipient_id == sender_id:
            raise RefusedError(TO_SELF, code="invalid_argument")
        chat_id, profile = _direct_permission_txn(txn, sender_id, recipient_id, now)
        shown = shown or profile
        audience = [sender_id, recipient_id]
    if shown is None:
        raise ValueError("a group message's sender is read before its insert")
    reply_to_seq = shown.reply_to_seq
    if mentions:
        check_mentions(mentions, audience)
    root = None
    if new.thread_id is not None and shown.thread_root is not None:
        root = root_from_row(txn, shown.thread_root)
    elif new.thread_id is not None:
        root = reply_root_txn(txn, new.thread_id)
    if root is not None and root.chat_id != chat_id:
        raise RefusedError(THREAD_NOT_IN_CHAT, code="invalid_argument")
    params: tuple[Any, ...] = (
        message_id,
        chat_id,
        sender_id,
        recipient_id,
        int(is_group),
        new.type,
        new.content,
        new.encrypted_content,
        now,
        reply_to_seq,
        mentions_text(mentions),
    )
    if root is not None:
        insert_plain, insert_keyed = _INSERT_PLAIN_THREAD, _INSERT_KEYED_THREAD
        params = (*params, root.seq, root.id, int(new.also_in_chat), _extra_text(new.extra))
    elif new.extra is not None:
        insert_plain, insert_keyed = _INSERT_PLAIN_EXTRA, _INSERT_KEYED_EXTRA
        params = (*params, _extra_text(new.extra))  # {} stays {}
    else:
        insert_plain, insert_keyed = _INSERT_PLAIN, _INSERT_KEYED
    if new.client_msg_id is None:
        seq = int(txn.scalar(insert_plain, params))
    else:
        # The unique index finds a retry (on PostgreSQL after waiting for a racing
        # transaction that holds the same key to end): no SELECT before the insert.
        stored = txn.scalar(insert_keyed, (*params, new.client_msg_id))
        if stored is None:
            raise _KeyInUseError()
        seq = int(stored)
    in_thread: ThreadSummary | None = None
    if root is None and later is not None:
        later.add(chat_id, sender_id, seq, now)
        txn.execute_each(unread_mentions_statements(seq, chat_id, sender_id, mentions))
    elif root is None:
        change = NewChange("message", now, chat_id=chat_id, message_seq=seq, actor_id=sender_id)
        txn.execute_each(
            (
                *_chat_statements(txn, chat_id, sender_id, seq, now, change),
                # Who this message mentions: in the same round trip (a reply with mentions costs none more).
                *unread_mentions_statements(seq, chat_id, sender_id, mentions),
            )
        )
    else:
        change = NewChange(
            "message", now, chat_id=chat_id, message_seq=seq, actor_id=sender_id, data={"thread": root.seq}
        )
        if new.also_in_chat:
            # The chat's rows before the thread's, in the order a deletion takes them (no deadlock).
            txn.execute_each(_chat_statements(txn, chat_id, sender_id, seq, now, change))
        if later is not None:
            # SQLite's batch: the thread's row and the follows once per batch, the feed row with the batch's.
            in_thread, thread_statements = later.replies.add(root, seq, sender_id, now, mentions)
            if not new.also_in_chat:
                later.changes.append(change)
        else:
            in_thread, thread_statements = reply_statements_txn(txn, root, change, mentions, new.also_in_chat)
        txn.execute_each((*thread_statements, *unread_mentions_statements(seq, chat_id, sender_id, mentions)))
    message = Message(
        message_id,
        seq,
        chat_id,
        sender_id,
        sender.name,
        recipient_id,
        is_group,
        new.type,
        new.content,
        new.encrypted_content,
        now,
        reply_to_seq=reply_to_seq,
        sender_display_name=shown.display_name,
        sender_avatar_file_id=shown.avatar_file_id,
        mentions=mentions,
        reply_to=shown.reply_to,
        extra=new.extra,
        thread_root_seq=root.seq if root is not None else None,
        thread_id=root.id if root is not None else None,
        also_in_chat=root is not None and new.also_in_chat,
        in_thread=in_thread,
    )
    return message, audience


def _extra_text(extra: dict[str, Any] | None) -> str | None:
    """The ``messages.extra`` column: the app's object as compact JSON text ({} stays {}), or NULL."""
    return None if extra is None else json.dumps(extra, separators=(",", ":"), ensure_ascii=False)


def _chat_statements(
    txn: Txn, chat_id: int, sender_id: int, seq: int, now: float, change: NewChange
) -> list[tuple[str, Any]]:
    """A message of the main timeline: the sender's and the chat's counters, the feed row riding on the latter."""
    return [
        # The sender's own row: nobody else's, so no other sender waits on it.
        (
            "UPDATE user_chats SET sent_count = sent_count + 1, last_sent_at = ? WHERE user_id = ? AND chat_id = ?",
            (now, sender_id, chat_id),
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
            change,
        ),
    ]


def post_txn(
    txn: Txn, sender: Actor, new: NewMessage, message_id: str, now: float, keys_since: float = 0.0
) -> tuple[Message, list[int]]:
    """Store ``new`` (a checked `NewMessage`) from ``sender``; ``(message, audience user ids)``.

    The message as payloads show it: with its reply target (a live message of
    the same chat, checked), its mentions (members, checked) and the
    sender's profile.  Raises `RefusedError`; a refusal after the insert
    rolls it back with the rest of the transaction.

    A ``client_msg_id`` the sender gave a message stored at or after
    ``keys_since`` raises `KeyTakenError` with that message; one of an older
    message is taken from it (`_take_expired_key_txn`).
    """
    # A direct message that replies to nothing reads its sender's profile with the friend check.
    target, shown = None, None
    if new.is_group or new.reply_to is not None:
        root_row = None
        if new.thread_id is None:
            display_name, avatar_file_id, target = sender_and_target_txn(txn, sender.uid, new.reply_to)
        else:
            # A thread reply's root (and its thread's counts) ride along: no statement of their own.
            display_name, avatar_file_id, target, root_row = sender_target_and_more_txn(
                txn, sender.uid, new.reply_to, ROOT_COLUMNS, ROOT_JOINS, (new.thread_id,)
            )
        shown = _Sender(
            display_name,
            avatar_file_id,
            target[0] if target is not None else None,
            target[2] if target is not None else None,
            root_row,
        )
    for _ in range(_KEY_TRIES):
        try:
            message, audience = _insert_txn(txn, sender, new, message_id, now, shown)
            break
        except _KeyInUseError:
            _take_expired_key_txn(txn, sender.uid, new.client_msg_id or "", keys_since)
    else:
        raise RefusedError(KEY_BUSY, code="conflict")
    if target is not None and target[1] != message.chat_id:
        raise RefusedError(NOT_IN_CHAT, code="invalid_argument")
    if new.poll is not None:
        message = replace(message, poll=insert_poll_txn(txn, message.seq, new.poll))
    return message, audience


#: SQLite: about how many messages wait for the full-text index before a batch of sends indexes them (migration 027).
#: FTS5 writes a segment of its index per statement that inserts into it, then merges them: one INSERT ... SELECT
#: for this many messages costs less than a tenth of one per message.  A search indexes what waits first.
INDEX_EVERY = 256

#: SQLite: most seqs one transaction indexes (a bulk load's rows, found by a search, go in several: each bounded).
INDEX_MOST = 20_000

_INDEXED_UPTO = "SELECT seq FROM messages_fts_upto"


#: Where `post_each_txn` keeps its `_Later` for the posts it runs: in ``txn.locked``, which a rollback to a
#: savepoint empties (the batch then goes message by message, each writing its own rows).
_LATER = "messages.later"


class _Later:
    """SQLite: a batch's messages' counters and feed rows, written at its end in three statements.

    Per member row, the count and the last message's time; per chat, the
    count and the newest time and seq (what the statements of each message
    would leave, as ``last_seq`` and ``last_activity`` only move forward);
    the feed rows in the order of their messages.  Thread replies leave
    their threads' rows and follows (`BatchedReplies`: up to three more
    statements) and, unless also in the chat, their feed rows here too.
    """

    __slots__ = ("members", "chats", "changes", "replies")

    def __init__(self) -> None:
        self.members: dict[tuple[int, int], list[Any]] = {}
        self.chats: dict[int, list[Any]] = {}
        self.changes: list[NewChange] = []
        self.replies = BatchedReplies()

    def add(self, chat_id: int, sender_id: int, seq: int, now: float) -> None:
        member = self.members.setdefault((sender_id, chat_id), [sender_id, chat_id, 0, now])
        member[2] += 1
        member[3] = now
        chat = self.chats.setdefault(chat_id, [chat_id, 0, now, seq])
        chat[1] += 1
        chat[2], chat[3] = max(chat[2], now), max(chat[3], seq)
        self.changes.append(NewChange("message", now, chat_id=chat_id, message_seq=seq, actor_id=sender_id))

    def last_sent_at(self, sender_id: int, chat_id: int) -> float | None:
        """When the sender's latest message of this batch in that chat was sent (None: none of it yet)."""
        member = self.members.get((sender_id, chat_id))
        return None if member is None else member[3]

    def write_txn(self, txn: Txn) -> None:
        # The sender's own rows, then the chats' (the order each message takes them), the threads', the feed.
        if self.members:
            self._counters_txn(txn)
        self.replies.write_txn(txn)
        if self.changes:
            record_many_txn(txn, self.changes)

    def _counters_txn(self, txn: Txn) -> None:
        members, chats = list(self.members.values()), list(self.chats.values())
        txn.execute(
            "UPDATE user_chats SET sent_count = sent_count + v.column3, last_sent_at = v.column4 FROM (VALUES "
            + values_rows(len(members), 4)
            + ") AS v WHERE user_chats.user_id = v.column1 AND user_chats.chat_id = v.column2",
            list(chain.from_iterable(members)),
        )
        txn.execute(
            "UPDATE chats SET message_count = message_count + v.column2,"
            " last_activity = CASE WHEN last_activity < v.column3 THEN v.column3 ELSE last_activity END,"
            " last_seq = CASE WHEN last_seq < v.column4 THEN v.column4 ELSE last_seq END FROM (VALUES "
            + values_rows(len(chats), 4)
            + ") AS v WHERE chats.id = v.column1",
            list(chain.from_iterable(chats)),
        )


def post_each_txn(txn: Txn, calls: list[tuple[Any, ...]]) -> list[Any]:
    """SQLite: `post_txn` for each of a batch's messages, then what they left for the batch's end.

    A plain message's counters and feed row (a direct or a group message's)
    are written for the whole batch in three statements (`_Later`; slow mode
    counts an earlier message of the batch as sent), and the full-text index
    catches up once `INDEX_EVERY` messages wait.  A refusal raises, so the
    batch goes message by message through `post_txn` (as it always did on
    SQLite), everything written here undone, and leaves the index to the
    next batch or search.
    The index's position is read once per batch, not per message.
    """
    later = txn.locked[_LATER] = _Later()
    try:
        outcomes = [post_txn(txn, *call) for call in calls]
    finally:
        txn.locked.pop(_LATER, None)
    later.write_txn(txn)
    newest = max(message.seq for message, _ in outcomes)
    upto = int(txn.scalar(_INDEXED_UPTO))
    if newest - upto >= INDEX_EVERY:
        index_pending_txn(txn, upto, newest)
    return outcomes


def index_pending_txn(txn: Txn, upto: int | None = None, newest: int | None = None) -> bool:
    """SQLite: index the messages above the index's position (``upto``) up to ``newest``; whether more wait.

    One INSERT ... SELECT, so FTS5 writes one segment for them all; the live
    text messages among them go in as they are now (an edit or deletion since
    needed no change to the index: migration 027's triggers leave messages
    above the position alone).  Without arguments: everything stored so far,
    but at most `INDEX_MOST` seqs in one transaction (rows bulk-loaded around
    the server wait in several).
    """
    if upto is None:
        upto = int(txn.scalar(_INDEXED_UPTO))
    if newest is None:
        newest = int(txn.scalar("SELECT COALESCE(MAX(seq), 0) FROM messages"))
    end = min(newest, upto + INDEX_MOST)
    if end <= upto:
        return False
    txn.execute(
        "INSERT INTO messages_fts (rowid, content, chat_id) SELECT seq, content, chat_id FROM messages"
        " WHERE seq > ? AND seq <= ? AND type = 'text' AND deleted_at IS NULL ORDER BY seq",
        (upto, end),
    )
    txn.execute("UPDATE messages_fts_upto SET seq = ?", (end,))
    return end < newest


#: Migration 030's function: a batch's messages, thread replies and ``extra`` included, in one statement, one
#: row each, in order.  After the messages' arrays: ``txn.rules.require_friendship``
#: (``contacts.require_friendship``), then the groups whose members the node keeps and their versions.
_POST_MESSAGES = (
    "SELECT * FROM post_messages_v3(?::BIGINT[], ?::BIGINT[], ?::BOOLEAN[], ?::TEXT[], ?::TEXT[], ?::TEXT[],"
    " ?::TEXT[], ?::DOUBLE PRECISION[], ?::TEXT[], ?::TEXT[], ?::TEXT[], ?::DOUBLE PRECISION[], ?::TEXT[],"
    " ?::TEXT[], ?::BOOLEAN[], ?::BOOLEAN, ?::BIGINT[], ?::BIGINT[])"
)


def post_batch_txn(txn: Txn, calls: list[tuple[Any, ...]]) -> list[Any]:
    """`post_txn` for each of a batch's messages, in one round trip (PostgreSQL, migration 029).

    ``calls`` are `post_txn`'s arguments after ``txn``.  Each outcome is
    ``(message, audience)`` or the exception refusing that message alone
    (`RefusedError`, `KeyTakenError`), which wrote nothing; the others are
    stored.  The function raises where post_txn's outcome needs a write
    undone (a racing key); the batch then goes message by message.

    A group's members version comes back once per call, with its first
    stored message, and its members too unless the node keeps them at that
    version (`MemberCache`, told to the function with the call); they are
    kept in ``txn.locked`` as `group_members_txn` keeps them: the group's
    row stays locked until the commit.
    """
    columns: list[list[Any]] = [[] for _ in range(15)]
    for sender, new, message_id, now, keys_since in calls:
        values = (
            sender.uid,
            new.recipient_id,
            new.is_group,
            message_id,
            new.type,
            new.content,
            new.encrypted_content,
            now,
            new.reply_to,
            mentions_text(new.mentions),
            new.client_msg_id,
            keys_since,
            _extra_text(new.extra),
            new.thread_id,
            new.also_in_chat,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    # The members kept for the batch's groups, held here for the answer (the cache may drop them meanwhile).
    held: dict[int, GroupMembers] = {}
    if txn.members is not None:
        for _, new, *_ in calls:
            if new.is_group and new.recipient_id not in held:
                kept = txn.members.peek(new.recipient_id)
                if kept is not None:
                    held[new.recipient_id] = kept
    # A batch of direct messages holds none: NULL, not empty arrays, costs the least to send.
    known = (list(held), [k.version for k in held.values()]) if held else (None, None)
    rows = txn.execute(_POST_MESSAGES, [*columns, txn.rules.require_friendship, *known]).fetchall()
    return [_outcome_txn(txn, row, call, held) for row, call in zip(rows, calls, strict=True)]


def _outcome_txn(txn: Txn, row: Row, call: tuple[Any, ...], held: dict[int, GroupMembers]) -> Any:
    """One row of ``post_messages_v3`` as `post_txn` answers: ``(message, audience)``, or its exception.

    ``held``: the kept members `post_batch_txn` told the function of, by group.
    """
    sender, new, message_id, now, _ = call
    outcome = row["o_outcome"]
    if outcome == "key_taken":
        # By its seq: a later message of the batch may have taken the key off it since.
        original = message_at_txn(txn, int(row["o_arg"]))
        return KeyTakenError(original) if original is not None else RefusedError(KEY_BUSY, code="conflict")
    if outcome == "mentions":
        return outsider_error(int(row["o_arg"]))
    if outcome == "slow_mode":
        wait = int(row["o_arg"])
        return RefusedError(f"Slow mode: wait {wait} seconds", code="rate_limited", retry_after=wait)
    if outcome != "stored":
        refusal, code = _REFUSALS.get(outcome, _REFUSALS["not_in_chat"])
        return RefusedError(refusal, code=code)
    if new.is_group:
        key = ("group_members", new.recipient_id)
        if row["o_members_version"] is not None:  # the group's first stored message of the call
            version = int(row["o_members_version"])
            if row["o_members"] is None:  # the version the node holds
                txn.locked[key] = held[new.recipient_id].members
            else:
                members = tuple(int(m) for m in row["o_members"])
                txn.locked[key] = members
                if txn.members is not None:
                    # Without standings: the statement path (`group_members_txn`) reads those itself.
                    txn.members.put(new.recipient_id, GroupMembers(version, members, None))
        audience = list(txn.locked[key])
    else:
        audience = [sender.uid, new.recipient_id]
    target = None
    if new.reply_to is not None:
        target = ReplyTo(
            message_id=new.reply_to,
            deleted=False,
            sender_id=int(row["o_reply_sender_id"]),
            sender_username=row["o_reply_username"],
            type=row["o_reply_type"],
            content=row["o_reply_content"][:REPLY_PREVIEW],
        )
    in_thread, root_seq = None, row["o_thread_root_seq"]
    if root_seq is not None:
        participants = tuple(int(u) for u in row["o_participant_ids"])
        in_thread = ThreadSummary(int(row["o_reply_count"]), now, participants)
    message = Message(
        message_id,
        int(row["o_seq"]),
        int(row["o_chat_id"]),
        sender.uid,
        sender.name,
        new.recipient_id,
        new.is_group,
        new.type,
        new.content,
        new.encrypted_content,
        now,
        reply_to_seq=int(row["o_reply_seq"]) if target is not None else None,
        mentions=new.mentions,
        reply_to=target,
        sender_display_name=row["o_display_name"],
        sender_avatar_file_id=row["o_avatar_file_id"],
        extra=new.extra,
        thread_root_seq=int(root_seq) if root_seq is not None else None,
        thread_id=row["o_thread_id"],
        also_in_chat=root_seq is not None and new.also_in_chat,
        in_thread=in_thread,
    )
    return message, audience


#: The function's refusals by its outcome, with their messages and error codes
#: ("mentions" and "key_taken" are answered with what they name).
_REFUSALS: dict[str, tuple[str, Code]] = {
    "not_in_chat": (NOT_IN_CHAT, "invalid_argument"),
    "to_self": (TO_SELF, "invalid_argument"),
    "not_friends": (NOT_FRIENDS, "forbidden"),
    "blocked": (BLOCKED_REFUSAL, "forbidden"),
    "no_user": (USER_NOT_FOUND, "not_found"),
    "unknown_chat": (UNKNOWN_CHAT, "not_found"),
    "role": (ROLE_REFUSED, "forbidden"),
    "muted": (MUTED, "forbidden"),
    "read_only": (READ_ONLY, "forbidden"),
    "thread_not_found": (THREAD_NOT_FOUND, "not_found"),
    "thread_not_in_chat": (THREAD_NOT_IN_CHAT, "invalid_argument"),
}


def _take_expired_key_txn(txn: Txn, sender_id: int, client_msg_id: str, keys_since: float) -> None:
    """The key's message if it is recent (`KeyTakenError`); else the key is taken off it, free for the next insert.

    Expired keys are not swept: each stays on its row, in the index, until a
    send reuses it, which clears it here, in its own transaction, before it
    inserts.  So the unique index always holds at most one row per key and
    a retry is found by the index alone, however old the key.
    """
    original = keyed_message_txn(txn, sender_id, client_msg_id)
    if original is None:
        return  # gone meanwhile (taken by a racing send from an expired row): insert again
    if original.created_at >= keys_since:
        raise KeyTakenError(original)
    txn.execute(
        "UPDATE messages SET client_msg_id = NULL WHERE seq = ? AND client_msg_id = ?", (original.seq, client_msg_id)
    )


# -- deleting -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deleted:
    """A message soft-deleted: its chat, its sender, and who is told (the members, and the sender)."""

    chat_id: int
    sender_id: int
    audience: list[int]
    message_id: str = ""


def delete_txn(txn: Txn, actor: Actor, deletion: Deletion, now: float) -> Deleted:
    """Soft-delete a live message: the actor's own, anybody's for an operator (`Actor.is_admin`), or, in a
    group, a lower member's (or a former member's) for a moderator and above.

    The feed row's actor is ``actor.user_id`` (None: an operator acting for no user): ``deleted_by``.
    """
    row = txn.execute(
        "SELECT seq, chat_id, sender_id, is_group FROM messages WHERE id = ? AND deleted_at IS NULL"
        + txn.dialect.for_update,
        (deletion.message_id,),
    ).fetchone()
    if row is None:
        raise RefusedError("Message not found", code="not_found")
    seq, chat_id, sender_id = int(row["seq"]), int(row["chat_id"]), int(row["sender_id"])
    if not actor.is_admin and sender_id != actor.user_id:
        if not row["is_group"]:
            # Someone else's message looks exactly like a missing one.
            raise RefusedError("Message not found", code="not_found")
        _require_moderator_txn(txn, chat_id, actor.uid, sender_id)
    return soft_delete_txn(txn, LiveMessage(seq, chat_id, sender_id, deletion.message_id), actor.user_id, now)


def _require_moderator_txn(txn: Txn, chat_id: int, actor_id: int, sender_id: int) -> None:
    """Refuse unless ``actor_id`` is a member whose role deletes others' messages and outranks the sender's."""
    roles = {
        int(r["user_id"]): r["role"]
        for r in txn.execute(
            "SELECT user_id, role FROM user_chats WHERE chat_id = ? AND user_id IN (?, ?)",
            (chat_id, actor_id, sender_id),
        ).fetchall()
    }
    if actor_id not in roles:
        raise RefusedError("Message not found", code="not_found")
    mine = roles[actor_id]
    if not may(mine, "delete_others") or (sender_id in roles and not outranks(mine, roles[sender_id])):
        raise RefusedError(ROLE_REFUSED, code="forbidden")


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """A live message to delete, found (and its deletion allowed) by the caller."""

    seq: int
    chat_id: int
    sender_id: int
    message_id: str


def soft_delete_txn(txn: Txn, message: LiveMessage, actor_id: int | None, now: float) -> Deleted:
    """Soft-delete ``message`` with its feed row (``actor_id``: who deleted it) and the counters it was in."""
    seq, chat_id, sender_id = message.seq, message.chat_id, message.sender_id
    # Rows in the order sending takes them, so the two never deadlock: a group
    # message locks the chat row first, then its sender's member row; a direct
    # message its sender's member row, then (last) the chat row.
    is_group = txn.scalar("SELECT is_group FROM chats WHERE id = ?", (chat_id,))
    # A group's members version, read with its lock: the audience comes from the node's kept members.
    version: int | None = None
    if is_group:
        version = int(txn.scalar("SELECT members_version FROM chats WHERE id = ?" + txn.dialect.for_update, (chat_id,)))
    else:
        txn.execute(
            "SELECT user_id FROM user_chats WHERE chat_id = ? ORDER BY user_id" + txn.dialect.for_update, (chat_id,)
        )
    with_change(
        txn,
        "UPDATE messages SET deleted_at = ? WHERE seq = ?",
        (now, seq),
        NewChange("delete", now, chat_id=chat_id, message_seq=seq, actor_id=actor_id),
    )
    thread = txn.execute("SELECT thread_root_seq, also_in_chat FROM messages WHERE seq = ?", (seq,)).fetchone()
    if thread is not None and thread["thread_root_seq"] is not None:
        reply_deleted_txn(txn, int(thread["thread_root_seq"]))
        if not thread["also_in_chat"]:
            # A reply only in its thread was in none of the chat's counters.
            return Deleted(chat_id, sender_id, _audience_txn(txn, chat_id, sender_id, version), message.message_id)
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
        " AND EXISTS (SELECT 1 FROM message_reads r WHERE r.message_seq = ? AND r.user_id = user_chats.user_id"
        " AND r.marked_unread = 0)",
        (chat_id, sender_id, seq, seq),
    )
    txn.execute(
        "UPDATE chats SET message_count = message_count - 1,"
        " last_seq = CASE WHEN last_seq = ? THEN"
        " (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE chat_id = ? AND deleted_at IS NULL)"
        " ELSE last_seq END WHERE id = ?",
        (seq, chat_id, chat_id),
    )
    return Deleted(chat_id, sender_id, _audience_txn(txn, chat_id, sender_id, version), message.message_id)


def _audience_txn(txn: Txn, chat_id: int, sender_id: int, version: int | None) -> list[int]:
    """Who is told of a deletion: the chat's members, and the sender.

    A group's (``version``: its ``members_version``) come from the node's kept
    members: a ban that deletes a member's messages reads the group once, not
    once per message.
    """
    if version is not None:
        audience = list(members_at_txn(txn, chat_id, version))
    else:
        rows = txn.execute("SELECT user_id FROM user_chats WHERE chat_id = ?", (chat_id,)).fetchall()
        audience = [int(r["user_id"]) for r in rows]
    if sender_id not in audience:
        audience.append(sender_id)
    return audience
