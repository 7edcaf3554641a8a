"""Retention: purging messages older than their chat's policy, and legal holds (migration 025).

A chat's policy is its group's own ``chats.retention`` (seconds) when set,
else the server's ``retention.messages``; 0 keeps for ever.  A purge
*removes* a message's row and everything that names it, in one
transaction per chat and batch: its edits, reactions, read and delivery
receipts, pin, poll and votes, link preview, unread mentions, the feed rows
naming it (``changes``, through migration 025's ``changes_message``), its
search index entry (the FTS5 trigger on SQLite; the generated column goes
with the row on PostgreSQL), and its file's row (the caller removes the
bytes once committed).  The chat's counters follow as a deletion moves them
(`umoc.storage.messages.write.soft_delete_txn`), in one statement per chat.
Messages of a user on legal hold (``legal_holds``) are never purged.

Two walks find what to purge, each in bounded batches:

- groups with a policy of their own (few: the partial index
  ``chats_retention``) by their ``(chat_id, created_at)`` index;
- every other message by ``seq`` from ``retention_state.through_seq``, up to
  the first one not older than the server's retention.  A message the walk
  passes is purged, held, or in a group with its own policy, so the walk
  never looks at it again; lifting a hold or dropping a group's policy sets
  the position back to 0 (`reset_walk_txn`), so what they kept is looked at
  once more.  Messages are written in ``seq`` order within milliseconds of
  their ``created_at``, so the first young message ends the walk.

Every rule is checked again inside the purging transaction (the held
users, the chat's policy, the message's age), so a hold set meanwhile, or
two nodes purging at once, never purge what must stay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from twisted.internet import defer

from umoc.records.audit import AuditEntry
from umoc.storage.accounts import secure
from umoc.storage.audit import write_audit_txn
from umoc.storage.database import Database, Row, Txn, in_clause

__all__ = ["Hold", "Purged", "RetentionStore", "reset_walk_txn"]

#: Message types whose content names an uploaded file (``{"file_id": ...}``).
_FILE_TYPES = ("image", "video", "audio", "file")
#: Tables keyed by a message's seq, emptied of a purged message's rows (poll_votes before polls).
_BY_SEQ = (
    "message_edits",
    "message_reactions",
    "message_reads",
    "message_deliveries",
    "message_pins",
    "poll_votes",
    "polls",
    "message_previews",
    "changes",
)
_NOT_HELD = "sender_id NOT IN (SELECT user_id FROM legal_holds)"


@dataclass(frozen=True, slots=True)
class Purged:
    """One batch purged in one chat: how many messages, and the ids of the files whose bytes to remove."""

    chat_id: int
    messages: int
    files: list[str]


@dataclass(frozen=True, slots=True)
class Hold:
    """A legal hold in force."""

    user_id: int
    username: str
    created_at: float
    created_by: str
    reason: str | None


def reset_walk_txn(txn: Txn) -> None:
    """Let the default walk look at every message again (a hold lifted, a group's own policy dropped)."""
    txn.execute("UPDATE retention_state SET through_seq = 0 WHERE singleton = 1")


def _file_ids(rows: list[Row]) -> list[str]:
    ids = []
    for row in rows:
        if row["type"] not in _FILE_TYPES:
            continue
        try:
            file_id = json.loads(row["content"]).get("file_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(file_id, str):
            ids.append(file_id)
    return ids


def _lock_chat_txn(txn: Txn, chat_id: int) -> bool:
    """Lock the chat as sending does (a group's row first; a direct chat's member rows); False if unknown."""
    is_group = txn.scalar("SELECT is_group FROM chats WHERE id = ?", (chat_id,))
    if is_group is None:
        return False
    if is_group:
        txn.execute("SELECT id FROM chats WHERE id = ?" + txn.dialect.for_update, (chat_id,))
    else:
        txn.execute(
            "SELECT user_id FROM user_chats WHERE chat_id = ? ORDER BY user_id" + txn.dialect.for_update, (chat_id,)
        )
    return True


def _purge_txn(txn: Txn, chat_id: int, seqs: list[int] | None, default: float, now: float, limit: int) -> Purged:
    """Purge ``seqs`` of ``chat_id`` (None: its oldest ``limit``) that its policy says are old and nobody holds."""
    if not _lock_chat_txn(txn, chat_id):
        return Purged(chat_id, 0, [])
    own = int(txn.scalar("SELECT retention FROM chats WHERE id = ?", (chat_id,)))
    keep = own if own > 0 else default
    if keep <= 0:
        return Purged(chat_id, 0, [])
    cutoff = now - keep
    columns = "SELECT seq, id, type, content, mentions, deleted_at FROM messages"
    if seqs is None:
        rows = txn.execute(
            columns + " WHERE chat_id = ? AND created_at < ? AND " + _NOT_HELD + " ORDER BY created_at LIMIT ?",
            (chat_id, cutoff, limit),
        ).fetchall()
    elif seqs:
        rows = txn.execute(
            columns + " WHERE seq IN " + in_clause(seqs) + " AND chat_id = ? AND created_at < ? AND " + _NOT_HELD,
            (*seqs, chat_id, cutoff),
        ).fetchall()
    else:
        rows = []
    if not rows:
        return Purged(chat_id, 0, [])
    gone = [int(r["seq"]) for r in rows]
    live = [int(r["seq"]) for r in rows if r["deleted_at"] is None]
    in_gone = in_clause(gone)
    if live:
        # Each live message leaves one of each member's buckets, as a deletion takes it out (write.py).
        in_live = in_clause(live)
        txn.execute(
            "UPDATE user_chats SET"
            " base_count = base_count - (SELECT COUNT(*) FROM messages m WHERE m.seq IN "
            + in_live
            + " AND m.seq <= user_chats.joined_seq),"
            " sent_count = sent_count - (SELECT COUNT(*) FROM messages m WHERE m.seq IN "
            + in_live
            + " AND m.seq > user_chats.joined_seq AND m.sender_id = user_chats.user_id),"
            " read_count = read_count - (SELECT COUNT(*) FROM message_reads r JOIN messages m ON m.seq = r.message_seq"
            " WHERE r.message_seq IN " + in_live + " AND r.user_id = user_chats.user_id AND r.marked_unread = 0"
            " AND m.seq > user_chats.joined_seq AND m.sender_id <> user_chats.user_id)"
            " WHERE chat_id = ?",
            (*live, *live, *live, chat_id),
        )
    mentioned = sorted(
        {int(u) for r in rows if r["mentions"] for u in str(r["mentions"]).split(",") if u.strip().isdigit()}
    )
    if mentioned:
        txn.execute(
            "DELETE FROM unread_mentions WHERE user_id IN "
            + in_clause(mentioned)
            + " AND chat_id = ? AND message_seq IN "
            + in_gone,
            (*mentioned, chat_id, *gone),
        )
    for table in _BY_SEQ:
        txn.execute(f"DELETE FROM {table} WHERE message_seq IN " + in_gone, gone)  # noqa: S608 - names from _BY_SEQ
    files = _file_ids(rows)
    if files:
        avatars = {
            r["avatar_file_id"]
            for r in txn.execute(
                "SELECT avatar_file_id FROM users WHERE avatar_file_id IN " + in_clause(files), files
            ).fetchall()
        }
        files = [f for f in files if f not in avatars]
    if files:
        txn.execute("DELETE FROM files WHERE id IN " + in_clause(files), files)
    txn.execute("DELETE FROM messages WHERE seq IN " + in_gone, gone)
    txn.execute(
        "UPDATE chats SET message_count = message_count - ?,"
        " last_seq = CASE WHEN last_seq IN "
        + in_gone
        + " THEN (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE chat_id = ? AND deleted_at IS NULL)"
        " ELSE last_seq END WHERE id = ?",
        (len(live), *gone, chat_id, chat_id),
    )
    return Purged(chat_id, len(gone), files)


def _own_policies_txn(txn: Txn) -> list[int]:
    return [int(r["id"]) for r in txn.execute("SELECT id FROM chats WHERE retention > 0 ORDER BY id").fetchall()]


def _walk_txn(txn: Txn, cutoff: float, limit: int) -> tuple[int, int, dict[int, list[int]], bool]:
    """The default walk's next ``limit`` messages: ``(from, to, {chat: seqs to purge}, more to walk)``.

    ``to`` is the last seq passed (older than ``cutoff``); messages of held
    users and of groups with their own policy are passed over, not listed.
    """
    start = txn.scalar("SELECT through_seq FROM retention_state WHERE singleton = 1")
    start = 0 if start is None else int(start)
    rows = txn.execute(
        "SELECT m.seq, m.chat_id, m.created_at, c.retention, h.user_id AS held FROM messages m"
        " JOIN chats c ON c.id = m.chat_id LEFT JOIN legal_holds h ON h.user_id = m.sender_id"
        " WHERE m.seq > ? ORDER BY m.seq LIMIT ?",
        (start, limit),
    ).fetchall()
    reached = start
    found: dict[int, list[int]] = {}
    for row in rows:
        if float(row["created_at"]) >= cutoff:
            return start, reached, found, False
        reached = int(row["seq"])
        if int(row["retention"]) == 0 and row["held"] is None:
            found.setdefault(int(row["chat_id"]), []).append(reached)
    return start, reached, found, len(rows) == limit


def _advance_txn(txn: Txn, start: int, reached: int) -> None:
    """Move the walk's position from ``start`` to ``reached``, unless it was set back meanwhile."""
    if (
        txn.execute(
            "UPDATE retention_state SET through_seq = ? WHERE singleton = 1 AND through_seq = ?", (reached, start)
        ).rowcount
        == 0
        and start == 0
    ):
        txn.execute(
            "INSERT INTO retention_state (singleton, through_seq) VALUES (1, ?) ON CONFLICT (singleton) DO NOTHING",
            (reached,),
        )


def _set_hold_txn(txn: Txn, user_id: int, on: bool, reason: str | None, now: float, audit: AuditEntry) -> bool:
    """Set or lift the hold; True if that changed anything (the audit entry is written either way)."""
    if on:
        changed = (
            txn.execute(
                "INSERT INTO legal_holds (user_id, created_at, created_by, reason) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id) DO NOTHING",
                (user_id, now, audit.actor.name, reason),
            ).rowcount
            == 1
        )
    else:
        changed = txn.execute("DELETE FROM legal_holds WHERE user_id = ?", (user_id,)).rowcount == 1
        if changed:
            reset_walk_txn(txn)
    write_audit_txn(txn, audit, now)
    return changed


def _holds_txn(txn: Txn) -> list[Hold]:
    rows = txn.execute(
        "SELECT h.user_id, u.username, h.created_at, h.created_by, h.reason FROM legal_holds h"
        " LEFT JOIN users u ON u.id = h.user_id ORDER BY h.user_id"
    ).fetchall()
    return [
        Hold(int(r["user_id"]), r["username"] or "", float(r["created_at"]), r["created_by"], r["reason"]) for r in rows
    ]


class RetentionStore:
    """The purge's transactions and the legal holds."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def own_policies(self) -> defer.Deferred[list[int]]:
        """Ids of the groups with a retention of their own."""
        return self._db.read("retention.own_policies", _own_policies_txn)

    def purge_oldest(self, chat_id: int, default: float, now: float, limit: int) -> defer.Deferred[Purged]:
        """Purge up to ``limit`` of the chat's messages older than its policy (oldest first)."""
        return self._db.run("retention.purge", secure(_purge_txn), chat_id, None, default, now, limit)

    def purge(self, chat_id: int, seqs: list[int], default: float, now: float) -> defer.Deferred[Purged]:
        """Purge those of ``seqs`` (all in ``chat_id``) that are still due."""
        return self._db.run("retention.purge", secure(_purge_txn), chat_id, seqs, default, now, len(seqs))

    def walk(self, cutoff: float, limit: int) -> defer.Deferred[tuple[int, int, dict[int, list[int]], bool]]:
        """The default walk's next batch (see `_walk_txn`)."""
        return self._db.read("retention.walk", _walk_txn, cutoff, limit)

    def advance(self, start: int, reached: int) -> defer.Deferred[None]:
        return self._db.run("retention.advance", _advance_txn, start, reached)

    def set_hold(
        self, user_id: int, on: bool, reason: str | None, now: float, audit: AuditEntry
    ) -> defer.Deferred[bool]:
        """Set (``on``) or lift a user's legal hold, with its audit entry; whether it changed."""
        return self._db.run("retention.set_hold", _set_hold_txn, user_id, on, reason, now, audit)

    def holds(self) -> defer.Deferred[list[Hold]]:
        """Every hold in force, by user id."""
        return self._db.read("retention.holds", _holds_txn)

    def is_held(self, user_id: int) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            return txn.scalar("SELECT 1 FROM legal_holds WHERE user_id = ?", (user_id,)) is not None

        return self._db.read("retention.is_held", txn_fn)
