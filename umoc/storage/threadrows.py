"""Thread counters written with a reply, and the summaries roots show: what the message store needs of threads.

A reply is an ordinary message (one row, written by `umoc.storage.messages.write`)
that also writes its thread's one ``threads`` row and the follow rows of
the users it makes followers (its sender, the root's sender at the first
reply, those it mentions): O(1) rows per reply whatever the group size.
Only a send with ``thread_id`` comes here; a plain send runs none of this.
The store of thread reads and follows is `umoc.storage.threads`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import orjson

from umoc.errors import RefusedError
from umoc.storage.changes import NewChange, statements_with_change
from umoc.storage.database import Row, Txn, in_clause, values_rows

__all__ = [
    "BatchedReplies",
    "MAX_PARTICIPANTS",
    "ROOT_COLUMNS",
    "ROOT_JOINS",
    "UNREAD_COUNT",
    "THREAD_NOT_FOUND",
    "THREAD_NOT_IN_CHAT",
    "followers_txn",
    "ThreadRoot",
    "ThreadSummary",
    "reply_deleted_txn",
    "reply_root_txn",
    "reply_statements_txn",
    "root_from_row",
    "summaries_for_txn",
]

#: Participants a thread summary names (the latest repliers first).
MAX_PARTICIPANTS = 10
THREAD_NOT_FOUND = "Thread not found"
THREAD_NOT_IN_CHAT = "Invalid 'thread_id': not a message of this chat"

#: A member's unread count of a chat, the one definition every place that reports it uses
#: (``get_chats``, ``chat_read``, the push badge): the main timeline's (migration 007) plus the
#: unread replies of the threads they follow in it (an index range per chat, migration 024).
#: Needs the chat as ``c`` (``chats``) and the member's row as ``uc`` (``user_chats``).
UNREAD_COUNT = (
    "(c.message_count - uc.base_count - uc.sent_count - uc.read_count"
    " + (SELECT COALESCE(SUM(t.reply_count - f.read_count), 0) FROM thread_follows f"
    " JOIN threads t ON t.root_seq = f.root_seq WHERE f.user_id = uc.user_id AND f.chat_id = uc.chat_id"
    " AND f.following = 1 AND t.reply_count > f.read_count))"
)


class ThreadSummary(NamedTuple):
    """``thread`` of a root: its live replies, the last one's time, up to ten repliers (the latest first).

    A named tuple, as `ThreadRoot`: one is made with every reply, and a
    frozen dataclass sets each field through ``object.__setattr__``.
    """

    reply_count: int
    last_reply_at: float | None
    participant_ids: tuple[int, ...]


class ThreadRoot(NamedTuple):
    """The root a reply goes under (a reply to a reply goes to its root)."""

    seq: int
    id: str
    chat_id: int
    sender_id: int
    #: Its thread's ``reply_count`` and ``participant_ids`` when the root was read (None: no row yet), read
    #: with it: what SQLite's batch (`BatchedReplies`) counts on from, the write lock held since.
    counted: tuple[int, str] | None = None


def _participants(text: str | None) -> tuple[int, ...]:
    """``threads.participant_ids``, a JSON list of ints (as either writer writes it), read."""
    return tuple(orjson.loads(text)) if text else ()


def _with_latest(participants: tuple[int, ...], sender_id: int) -> tuple[int, ...]:
    """The participants after ``sender_id`` replies: the sender first, then the others, at most `MAX_PARTICIPANTS`."""
    if sender_id in participants:
        others = list(participants)
        others.remove(sender_id)
        return (sender_id, *others[: MAX_PARTICIPANTS - 1])
    return (sender_id, *participants[: MAX_PARTICIPANTS - 1])


def _participants_text(participants: Sequence[int]) -> str:
    """``threads.participant_ids`` to write: the JSON list ``[3, 1]``, as migration 029's function writes it.

    Both writers store the same text for the same thread.  orjson's compact
    list with a space put after each comma (there is none inside an int):
    ``json.dumps`` built an encoder per call, a third of a thread reply's
    extra cost in SQLite's writer (callgrind), and ``", ".join(map(str, ...))``
    cost 20,000 instructions a reply.
    """
    return orjson.dumps(participants).decode().replace(",", ", ")


#: The root's columns `root_from_row` reads, and its thread's (``threads t``): ``r_*`` and ``t_*``; always the
#: last columns of the statement that reads them (`root_from_row` takes them by position).
ROOT_COLUMNS = (
    "r.seq AS r_seq, r.id AS r_id, r.chat_id AS r_chat_id, r.sender_id AS r_sender_id,"
    " r.thread_root_seq AS r_thread_root_seq, r.deleted_at AS r_deleted_at,"
    " t.reply_count AS t_reply_count, t.participant_ids AS t_participant_ids"
)
_ROOT_WIDTH = ROOT_COLUMNS.count(" AS ")
#: The root (and its thread) alone, by the condition that follows.
_ROOT_SELECT = "SELECT " + ROOT_COLUMNS + " FROM messages r LEFT JOIN threads t ON t.root_seq = r.seq WHERE "
#: The joins they need, the message named ``?`` as ``r``.
ROOT_JOINS = " LEFT JOIN messages r ON r.id = ? LEFT JOIN threads t ON t.root_seq = r.seq"


def reply_root_txn(txn: Txn, thread_id: str) -> ThreadRoot:
    """The live root ``thread_id`` names (or the root of the reply it names), and its thread's counts as now.

    Whether the sender may write in its chat is the send's own check; that
    the root is in the chat written to is checked once that chat is known.
    `RefusedError` when there is no such live root.
    """
    row = txn.execute(
        _ROOT_SELECT + "r.id = ?",
        (thread_id,),
    ).fetchone()
    return root_from_row(txn, row)


def root_from_row(txn: Txn, row: Row | None) -> ThreadRoot:
    """The root from a row ending in `ROOT_COLUMNS` (read with something else); `RefusedError` if none is live.

    The columns are taken by position, from the row's end: reading a wide
    ``sqlite3.Row`` by name compares the name with each column's in turn,
    which cost a thread reply more than its statements' own columns did.
    A reply to a reply is one more statement, for its root.
    """
    root = _root_values(row)
    if root is not None and root[4] is not None:  # r_thread_root_seq: the message named is a reply
        root = _root_values(
            txn.execute(
                _ROOT_SELECT + "r.seq = ?",
                (int(root[4]),),
            ).fetchone()
        )
    if root is None or root[0] is None or root[5] is not None:  # no such message, or deleted
        raise RefusedError(THREAD_NOT_FOUND, code="not_found")
    seq, message_id, chat_id, sender_id, _, _, reply_count, participants = root
    counted = None if reply_count is None else (int(reply_count), participants)
    return ThreadRoot(int(seq), message_id, int(chat_id), int(sender_id), counted)


def _root_values(row: Row | None) -> tuple[Any, ...] | None:
    """`ROOT_COLUMNS`' values, the last of ``row``'s, in their order."""
    return None if row is None else tuple(row)[-_ROOT_WIDTH:]


def reply_statements_txn(
    txn: Txn, root: ThreadRoot, change: NewChange, mentions: Sequence[int], in_chat: bool
) -> tuple[ThreadSummary, list[tuple[str, Sequence[Any]]]]:
    """The thread's summary with this reply, and the statements that write it (for ``execute_each``).

    ``change`` is the reply's feed row (its message, sender and time): it
    rides on the thread's update unless the reply is also in the chat
    (``in_chat``), whose counters' update carries it then.  The thread's row
    is made if need be and locked, so concurrent replies count one after
    the other.
    """
    reply_seq, sender_id, now = change.message_seq, change.actor_id, change.created_at
    assert reply_seq is not None and sender_id is not None
    # Made if need be and read in one statement: the no-op update locks an existing row (as FOR UPDATE would)
    # and makes RETURNING answer either way (DO NOTHING returns nothing on a conflict).
    row = txn.execute(
        "INSERT INTO threads (root_seq, chat_id) VALUES (?, ?) ON CONFLICT (root_seq) DO UPDATE"
        " SET chat_id = threads.chat_id RETURNING reply_count, participant_ids",
        (root.seq, root.chat_id),
    ).fetchone()
    assert row is not None  # inserted or updated: RETURNING answers both
    count = int(row["reply_count"]) + 1
    participants = _with_latest(_participants(row["participant_ids"]), sender_id)
    summary = ThreadSummary(count, now, participants)
    update = (
        "UPDATE threads SET reply_count = reply_count + 1, last_reply_at = ?, participant_ids = ?,"
        " last_reply_seq = CASE WHEN last_reply_seq < ? THEN ? ELSE last_reply_seq END WHERE root_seq = ?",
        (now, _participants_text(participants), reply_seq, reply_seq, root.seq),
    )
    statements: list[tuple[str, Sequence[Any]]] = []
    if in_chat:
        statements.append(update)
    else:
        statements.extend(statements_with_change(txn, update[0], update[1], change))
    # Replying follows, and reads the thread up to this reply.
    statements.append(
        (
            "INSERT INTO thread_follows (root_seq, user_id, chat_id, following, read_count) VALUES (?, ?, ?, 1, ?)"
            " ON CONFLICT (root_seq, user_id) DO UPDATE SET following = 1, read_count = excluded.read_count",
            (root.seq, sender_id, root.chat_id, count),
        )
    )
    # The root's sender (at the first reply) and who is mentioned follow: a new follower has this
    # reply unread (not the replies before it); a follower's read position is kept.
    followers = [u for u in dict.fromkeys(mentions) if u != sender_id]
    if count == 1:
        if root.sender_id != sender_id and root.sender_id not in followers:
            followers.append(root.sender_id)
        statements.append(("UPDATE messages SET is_thread_root = 1 WHERE seq = ?", (root.seq,)))
    for user_id in followers:
        statements.append(
            (
                "INSERT INTO thread_follows (root_seq, user_id, chat_id, following, read_count)"
                " VALUES (?, ?, ?, 1, ?) ON CONFLICT (root_seq, user_id) DO UPDATE SET following = 1",
                (root.seq, user_id, root.chat_id, count - 1),
            )
        )
    return summary, statements


class BatchedReplies:
    """SQLite: a group-commit batch's thread replies, whose thread rows and follows are written at its end.

    What `reply_statements_txn`'s statements would leave, in at most three
    statements for the whole batch however many replies it has: each
    thread's row once (its count, last reply and participants, from what
    its first reply of the batch read with its root: `ThreadRoot.counted`),
    and each follow once.  Only `umoc.storage.messages.write.post_each_txn`
    uses it: nothing else writes a thread between its reads and this write
    (one writer, inside one transaction), and a refusal undoes the batch,
    which then goes message by message through `reply_statements_txn`.
    """

    __slots__ = ("threads", "follows")

    def __init__(self) -> None:
        #: root_seq -> [root_seq, chat_id, reply_count, last_reply_at, last_reply_seq, participants]
        self.threads: dict[int, list[Any]] = {}
        #: (root_seq, user_id) -> [root_seq, user_id, chat_id, read_count, whether the reply read it]
        self.follows: dict[tuple[int, int], list[Any]] = {}

    def add(
        self, root: ThreadRoot, reply_seq: int, sender_id: int, now: float, mentions: Sequence[int]
    ) -> tuple[ThreadSummary, list[tuple[str, Sequence[Any]]]]:
        """A reply: its thread's summary with it, and what must be written now (a root's flag, at its first reply)."""
        thread = self.threads.get(root.seq)
        if thread is None:
            count, text = root.counted if root.counted is not None else (0, None)
            thread = self.threads[root.seq] = [root.seq, root.chat_id, count, now, reply_seq, _participants(text)]
        count = thread[2] + 1
        participants = _with_latest(thread[5], sender_id)
        thread[2], thread[3], thread[5] = count, now, participants
        if reply_seq > thread[4]:
            thread[4] = reply_seq
        # Replying follows, and reads the thread up to this reply (whatever this batch did to the follow before).
        self.follows[(root.seq, sender_id)] = [root.seq, sender_id, root.chat_id, count, True]
        followers = [u for u in dict.fromkeys(mentions) if u != sender_id]
        statements: list[tuple[str, Sequence[Any]]] = []
        if count == 1:
            if root.sender_id != sender_id and root.sender_id not in followers:
                followers.append(root.sender_id)
            statements.append(("UPDATE messages SET is_thread_root = 1 WHERE seq = ?", (root.seq,)))
        for user_id in followers:
            # A new follower has this reply unread; a follow this batch already wrote stays as it is.
            self.follows.setdefault((root.seq, user_id), [root.seq, user_id, root.chat_id, count - 1, False])
        return ThreadSummary(count, now, participants), statements

    def write_txn(self, txn: Txn) -> None:
        """The threads' rows, then the follows (which reference them): one statement each, none for no replies."""
        if not self.threads:
            return
        threads: list[Any] = []
        for thread in self.threads.values():
            threads.extend(thread[:5])
            threads.append(_participants_text(thread[5]))
        txn.execute(_THREADS_UPSERT[0] + values_rows(len(self.threads), 6) + _THREADS_UPSERT[1], threads)
        read: list[Any] = []
        unread: list[Any] = []
        for follow in self.follows.values():
            (read if follow[4] else unread).extend(follow[:4])
        for follows, update in ((read, "following = 1, read_count = excluded.read_count"), (unread, "following = 1")):
            if follows:
                rows = values_rows(len(follows) // 4, 4, "1")
                txn.execute(_FOLLOWS_UPSERT[0] + rows + _FOLLOWS_UPSERT[1] + update, follows)


#: A batch's threads written in one statement: its head and tail, around the VALUES rows.
_THREADS_UPSERT = (
    "INSERT INTO threads (root_seq, chat_id, reply_count, last_reply_at, last_reply_seq, participant_ids) VALUES ",
    " ON CONFLICT (root_seq) DO UPDATE SET reply_count = excluded.reply_count, last_reply_at = excluded.last_reply_at,"
    " participant_ids = excluded.participant_ids, last_reply_seq = CASE"
    " WHEN threads.last_reply_seq < excluded.last_reply_seq THEN excluded.last_reply_seq"
    " ELSE threads.last_reply_seq END",
)
#: A batch's follows (the update after it differs for those the reply read and those it made followers).
_FOLLOWS_UPSERT = (
    "INSERT INTO thread_follows (root_seq, user_id, chat_id, read_count, following) VALUES ",
    " ON CONFLICT (root_seq, user_id) DO UPDATE SET ",
)


def reply_deleted_txn(txn: Txn, root_seq: int) -> None:
    """A live reply of the thread was deleted: one reply fewer (read positions past the count are clamped on read)."""
    txn.execute("UPDATE threads SET reply_count = reply_count - 1 WHERE root_seq = ? AND reply_count > 0", (root_seq,))


def summaries_for_txn(txn: Txn, root_seqs: list[int]) -> dict[int, ThreadSummary]:
    """The summaries of these roots (those with a live reply): one query, none for no roots."""
    if not root_seqs:
        return {}
    rows = txn.execute(
        "SELECT root_seq, reply_count, last_reply_at, participant_ids FROM threads"
        " WHERE reply_count > 0 AND root_seq IN " + in_clause(root_seqs),
        root_seqs,
    ).fetchall()
    return {
        int(r["root_seq"]): ThreadSummary(
            int(r["reply_count"]), r["last_reply_at"], _participants(r["participant_ids"])
        )
        for r in rows
    }


def followers_txn(txn: Txn, root_seqs: list[int]) -> dict[int, list[int]]:
    """Who follows each of these threads (push reaches them, not every member): one query, none for no threads."""
    if not root_seqs:
        return {}
    found: dict[int, list[int]] = {}
    for r in txn.execute(
        "SELECT root_seq, user_id FROM thread_follows WHERE following = 1 AND root_seq IN " + in_clause(root_seqs),
        root_seqs,
    ).fetchall():
        found.setdefault(int(r["root_seq"]), []).append(int(r["user_id"]))
    return found
