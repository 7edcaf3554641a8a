"""Threads: a thread's replies (``get_thread``), a chat's or a user's threads (``get_threads``), follows.

Replies are written with the message (`umoc.storage.messages.write` and
`umoc.storage.threadrows`); this store reads them and keeps who follows
what.  A thread is named by its root's id (``thread_id``); whoever is in
the root's chat may read it and follow it, anything else is the same
``Thread not found``.  A follower's unread replies are the thread's
``reply_count`` less the count they had read (``thread_follows.read_count``),
set when they reply or open the thread's newest page: no row per reply
per follower.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.records.messages import ThreadQuery, ThreadsQuery
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Row, Txn
from umoc.storage.messages import MESSAGE_COLUMNS, UNKNOWN_CHAT, Message, annotate_txn, message_from_row
from umoc.storage.messages.read import chat_ref_txn
from umoc.storage.receipts import ReadState, read_state_txn, record_read_state_txn
from umoc.storage.threadrows import THREAD_NOT_FOUND, ThreadSummary

__all__ = ["NOT_A_ROOT", "ThreadEntry", "ThreadPage", "ThreadRef", "ThreadStore", "ThreadsPage"]

NOT_A_ROOT = "Invalid 'thread_id': a reply in a thread, not its root (use the reply's thread_id)"


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """A thread as one member sees it: its root, its chat (as they call it), their follow."""

    root_seq: int
    thread_id: str
    internal_chat_id: int
    chat_id: int
    is_group: bool
    following: bool


@dataclass(frozen=True, slots=True)
class ThreadPage:
    ref: ThreadRef
    root: Message
    #: Oldest first.
    messages: list[Message]
    has_more: bool
    #: The asker follows it and had unread replies, now read: their new state of the chat (``chat_read``).
    read: ReadState | None


@dataclass(frozen=True, slots=True)
class ThreadEntry:
    thread_id: str
    chat_id: int
    is_group: bool
    root: Message
    summary: ThreadSummary
    unread_count: int
    following: bool


@dataclass(frozen=True, slots=True)
class ThreadsPage:
    threads: list[ThreadEntry]
    next_cursor: str | None


def _ref_txn(txn: Txn, user_id: int, thread_id: str) -> ThreadRef:
    """The live root ``thread_id`` in an open chat the user is in; `RefusedError` otherwise."""
    row = txn.execute(
        "SELECT m.seq, m.chat_id, m.is_group, m.thread_root_seq, m.deleted_at, uc.peer_id, c.closed_at,"
        " f.following FROM messages m JOIN user_chats uc ON uc.chat_id = m.chat_id AND uc.user_id = ?"
        " JOIN chats c ON c.id = m.chat_id"
        " LEFT JOIN thread_follows f ON f.root_seq = m.seq AND f.user_id = uc.user_id WHERE m.id = ?",
        (user_id, thread_id),
    ).fetchone()
    if row is None or row["deleted_at"] is not None or row["closed_at"] is not None:
        raise RefusedError(THREAD_NOT_FOUND, code="not_found")
    if row["thread_root_seq"] is not None:
        raise RefusedError(NOT_A_ROOT, code="invalid_argument")
    is_group = bool(row["is_group"])
    internal = int(row["chat_id"])
    return ThreadRef(
        int(row["seq"]),
        thread_id,
        internal,
        internal if is_group else int(row["peer_id"]),
        is_group,
        bool(row["following"]),
    )


def _message_txn(txn: Txn, seq: int, viewer_id: int) -> Message:
    row = txn.execute(
        "SELECT " + MESSAGE_COLUMNS + " FROM messages m JOIN users su ON su.id = m.sender_id WHERE m.seq = ?", (seq,)
    ).fetchone()
    assert row is not None  # a root found in this transaction (messages are only ever soft-deleted)
    return annotate_txn(txn, [message_from_row(row)], viewer_id)[0]


def _thread_txn(txn: Txn, user_id: int, query: ThreadQuery, now: float) -> ThreadPage:
    ref = _ref_txn(txn, user_id, query.thread_id)
    before = None
    if query.before is not None:
        before = txn.scalar(
            "SELECT seq FROM messages WHERE id = ? AND thread_root_seq = ?", (query.before, ref.root_seq)
        )
        if before is None:
            raise RefusedError("Invalid 'before': not a reply of this thread", code="invalid_argument")
    rows = txn.execute(
        "SELECT " + MESSAGE_COLUMNS + " FROM messages m JOIN users su ON su.id = m.sender_id"
        " WHERE m.thread_root_seq = ? AND m.seq < ? AND m.deleted_at IS NULL ORDER BY m.seq DESC LIMIT ?",
        (ref.root_seq, before if before is not None else 2**62, query.limit + 1),
    ).fetchall()
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    rows.reverse()
    messages = annotate_txn(txn, [message_from_row(r) for r in rows], user_id)
    read = None
    if query.before is None and ref.following:
        # The newest page reads the thread for a follower.
        read_now = (
            txn.execute(
                "UPDATE thread_follows SET read_count = (SELECT reply_count FROM threads WHERE root_seq = ?)"
                " WHERE root_seq = ? AND user_id = ?"
                " AND read_count < (SELECT reply_count FROM threads WHERE root_seq = ?)",
                (ref.root_seq, ref.root_seq, user_id, ref.root_seq),
            ).rowcount
            > 0
        )
        if read_now:
            # The chat's unread count fell: recorded for the reader's other devices, as a read receipt's.
            read = read_state_txn(txn, user_id, ref.internal_chat_id)
            record_read_state_txn(txn, user_id, read, now)
    return ThreadPage(ref, _message_txn(txn, ref.root_seq, user_id), messages, has_more, read)


def _entry(row: Row, root: Message) -> ThreadEntry:
    is_group = bool(row["t_is_group"])
    following = bool(row["f_following"])
    summary = root.thread or ThreadSummary(int(row["t_reply_count"]), row["t_last_reply_at"], ())
    unread = max(0, int(row["t_reply_count"]) - int(row["f_read_count"] or 0)) if following else 0
    return ThreadEntry(
        root.id,
        int(row["t_chat_id"]) if is_group else int(row["t_peer_id"]),
        is_group,
        root,
        summary,
        unread,
        following,
    )


_THREAD_COLUMNS = (
    ", t.reply_count AS t_reply_count, t.last_reply_at AS t_last_reply_at, t.last_reply_seq AS t_last_reply_seq,"
    " t.chat_id AS t_chat_id, uc.is_group AS t_is_group, uc.peer_id AS t_peer_id,"
    " f.following AS f_following, f.read_count AS f_read_count"
)


def _threads_txn(txn: Txn, user_id: int, query: ThreadsQuery) -> ThreadsPage:
    before = query.before_seq if query.before_seq is not None else 2**62
    if query.chat_id is not None:
        ref = chat_ref_txn(txn, user_id, query.chat_id, query.is_group)
        if ref is None:
            raise RefusedError(UNKNOWN_CHAT, code="not_found")
        rows = txn.execute(
            "SELECT " + MESSAGE_COLUMNS + _THREAD_COLUMNS + " FROM threads t"
            " JOIN messages m ON m.seq = t.root_seq JOIN users su ON su.id = m.sender_id"
            " JOIN user_chats uc ON uc.chat_id = t.chat_id AND uc.user_id = ?"
            " LEFT JOIN thread_follows f ON f.root_seq = t.root_seq AND f.user_id = uc.user_id"
            " WHERE t.chat_id = ? AND t.reply_count > 0 AND t.last_reply_seq < ? AND m.deleted_at IS NULL"
            " ORDER BY t.last_reply_seq DESC LIMIT ?",
            (user_id, ref[0], before, query.limit + 1),
        ).fetchall()
    else:
        rows = txn.execute(
            "SELECT " + MESSAGE_COLUMNS + _THREAD_COLUMNS + " FROM thread_follows f"
            " JOIN threads t ON t.root_seq = f.root_seq"
            " JOIN messages m ON m.seq = t.root_seq JOIN users su ON su.id = m.sender_id"
            " JOIN user_chats uc ON uc.chat_id = t.chat_id AND uc.user_id = f.user_id"
            " JOIN chats c ON c.id = t.chat_id"
            " WHERE f.user_id = ? AND f.following = 1 AND t.reply_count > 0 AND t.last_reply_seq < ?"
            " AND m.deleted_at IS NULL AND c.closed_at IS NULL ORDER BY t.last_reply_seq DESC LIMIT ?",
            (user_id, before, query.limit + 1),
        ).fetchall()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    roots = annotate_txn(txn, [message_from_row(r) for r in rows], user_id)
    entries = [_entry(r, root) for r, root in zip(rows, roots, strict=True)]
    cursor = str(int(rows[-1]["t_last_reply_seq"])) if more and rows else None
    return ThreadsPage(entries, cursor)


def _follow_txn(txn: Txn, user_id: int, thread_id: str, follow: bool, now: float) -> tuple[ThreadRef, bool]:
    """Follow or unfollow; ``(the thread, changed)``.  Following starts with nothing unread."""
    ref = _ref_txn(txn, user_id, thread_id)
    if ref.following == follow:
        return ref, False
    txn.execute(
        "INSERT INTO threads (root_seq, chat_id) VALUES (?, ?) ON CONFLICT (root_seq) DO NOTHING",
        (ref.root_seq, ref.internal_chat_id),
    )
    txn.execute(
        "INSERT INTO thread_follows (root_seq, user_id, chat_id, following, read_count)"
        " VALUES (?, ?, ?, ?, (SELECT reply_count FROM threads WHERE root_seq = ?))"
        " ON CONFLICT (root_seq, user_id) DO UPDATE SET following = excluded.following,"
        " read_count = excluded.read_count",
        (ref.root_seq, user_id, ref.internal_chat_id, int(follow), ref.root_seq),
    )
    # For the follower's other devices (sync, catch-up), in no stream older releases read (0.2.0 raises on a
    # kind it does not know in the user's own stream): `umoc.storage.feed` reads it by actor (migration 028).
    record_txn(
        txn,
        NewChange(
            "thread_follow",
            now,
            actor_id=user_id,
            data={"thread_id": thread_id, "following": follow},
        ),
    )
    return ref, True


class ThreadStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def thread(self, user_id: int, query: ThreadQuery, now: float) -> defer.Deferred[ThreadPage]:
        """A page of a thread of a chat the user is in (the newest page reads it for a follower)."""
        return self._db.write("threads.thread", user_id, _thread_txn, user_id, query, now)

    def threads(self, user_id: int, query: ThreadsQuery) -> defer.Deferred[ThreadsPage]:
        """The threads of a chat the user is in, or those the user follows; latest reply first."""
        return self._db.read("threads.threads", _threads_txn, user_id, query)

    def follow(self, user_id: int, thread_id: str, follow: bool, now: float) -> defer.Deferred[tuple[ThreadRef, bool]]:
        """Follow or unfollow a thread of a chat the user is in. Raises `RefusedError`."""
        return self._db.write("threads.follow", user_id, _follow_txn, user_id, thread_id, follow, now)
