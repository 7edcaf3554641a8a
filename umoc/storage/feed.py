"""Reading the change feed: ``sync {cursor}`` pages through what a user may see, never skipping or repeating.

What a user reads (rows written by `umoc.storage.changes`):

* the streams of the chats they are in (direct chats; a group from the
  change that made them a member, ``user_chats.joined_change``), and of the
  groups they were in, up to their removal (``left_chats``), nothing after;
  but a reader of a ``broadcast`` (below moderator, or a former member)
  reads none of its membership changes (``member_added``, ...) but those
  about themselves, as live (`umoc.storage.groups.hears_of_change_sql`);
* their own stream (contact changes, receipts to them as a sender, their
  own removal from a group);
* the profile streams of themselves and their friends (both rows FRIEND:
  who is told ``profile_updated`` live; a pending request shows no profile);
* the threads they followed or unfollowed (``thread_follow``): rows in no
  stream, read by ``actor_id`` (index ``changes_follows``, migration 028),
  since releases before 0.3.0 read every row of the user's own stream and
  refuse a kind they do not know.

What a change shows is read from the rows it names when the feed is read,
and the changes of a message deleted (or erased) since are left out but for
the deletion itself, so deleted text never comes back.  They are left out
after the page is chosen (a filter per row inside the per-stream scans cost
more than the rest of the read), so a page may hold fewer than ``limit``
changes while ``has_more`` is true; the cursor still moves past them.

Positions: a cursor is an opaque string, ``base64url("1|...")``.

SQLite (``1|s|<id>``).  Every transaction runs on one connection (one
writer, in commit order; another process waits for the file's write lock),
so ``changes.id`` (AUTOINCREMENT: never reused) grows in commit order: a
read takes rows with ``id`` past the cursor, and the cursor becomes the last
id returned, or the largest id there is when the page is not full.

PostgreSQL (``1|p|<lower>|<upper>|<xid>|<id>``).  Transactions on several
connections commit in any order: a row with id 5 may commit after one with
id 6 was read, so an id cursor would skip it.  Each row keeps instead the
id of the transaction that wrote it (``xid``, the top-level one also under
the batch's savepoints); a snapshot (``pg_current_snapshot()``) says which
transactions had committed when it was taken.  A read opens a *window*:
the rows whose transaction is not visible in ``lower`` (the snapshot that
closed the previous window) and is visible in ``upper`` (taken now).  Each
row is in exactly one window, the first whose upper snapshot sees its
transaction: snapshots only grow, a transaction visible in one stays
visible in every later one, and one not yet committed is in none so far.
Within a window rows go by ``(xid, id)``, a total order on rows that can
no longer change (nothing can join the window: its upper snapshot is kept
in the cursor while paging, with the last ``(xid, id)`` returned).  When a
page does not fill, the window is done and its upper snapshot becomes the
next lower one.  Changes of one transaction keep their order (ids grow
within it), and a transaction that began after another committed has the
larger xid, so it comes after it (a group-commit batch is one transaction:
its callers' rows come out in the order they ran).  Two transactions that
overlapped have no order but this one.  Nothing is locked: writers pay only
the row itself.  A group's membership bounds (``joined_change``,
``left_chats``) compare ids: fixed once written, so every reader draws the
same line; a change racing the membership change may fall on either side.
The indexes lead with the stream and ``xid``, and a read starts at
``pg_snapshot_xmin(lower)`` (every older transaction is visible in it), so
it touches recent rows only.

A cursor is refused when it is not one of ours: malformed, of the other
database, or from the future (past what this database has written).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from umoc.errors import RefusedError, UserError
from umoc.records.feed import MAX_CURSOR_LENGTH
from umoc.records.groups import LISTED_MEMBERS
from umoc.storage.database import Database, Txn, in_clause
from umoc.storage.groups import GroupInfo, hears_of_change_sql, info_txn
from umoc.storage.messages import MESSAGE_COLUMNS, Message, annotate_txn, message_from_row
from umoc.storage.profiles import Profile, profile_txn
from umoc.storage.relations import FRIEND
from umoc.storage.replica import ReadRouter, ReplicaBehindError

__all__ = ["Change", "EXPIRED_CURSOR", "FeedPage", "FeedStore", "MAX_CURSOR_LENGTH"]

_VERSION = "1"
_BAD_CURSOR = "Invalid 'cursor': not a cursor from this server"
#: A cursor from before changes that `FeedStore.prune` deleted: the client may have missed some.
EXPIRED_CURSOR = (
    "Invalid 'cursor': expired (from before the changes this server still keeps); reload, then start again from"
    " connection_successful's cursor"
)
_SNAPSHOT = re.compile(r"^(\d{1,20}):(\d{1,20}):((?:\d{1,20}(?:,\d{1,20})*)?)$")

#: Kinds that name a message: left out once it is deleted (but the deletion itself).
_MESSAGE_KINDS = ("message", "edit", "reaction", "delete", "preview", "pin", "poll")


@dataclass(frozen=True, slots=True)
class Change:
    """One change as a reader sees it: the row's facts and the records it names, read now."""

    kind: str
    created_at: float
    #: The internal chat id (a group's id is what clients call it).
    chat_id: int | None
    actor_id: int | None
    #: The actor's username now (None once the account is gone).
    actor_username: str | None
    data: dict[str, Any] = field(default_factory=dict)
    #: message, edit, reaction, delete, pin, poll: the message as it is now (annotated for ``message``).
    message: Message | None = None
    #: ``group`` with event ``group_created``: the group as it is now.
    group: GroupInfo | None = None
    profile: Profile | None = None


@dataclass(frozen=True, slots=True)
class FeedPage:
    changes: list[Change]
    cursor: str
    has_more: bool


# -- cursors ----------------------------------------------------------------


def _encode(*parts: str) -> str:
    return base64.urlsafe_b64encode("|".join((_VERSION, *parts)).encode("ascii")).decode("ascii").rstrip("=")


def _decode(cursor: str) -> list[str]:
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise UserError(_BAD_CURSOR, code="invalid_argument")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise UserError(_BAD_CURSOR, code="invalid_argument") from None
    parts = text.split("|")
    if parts[0] != _VERSION:
        raise UserError(_BAD_CURSOR, code="invalid_argument")
    return parts[1:]


def _number(text: str) -> int:
    if not text.isdigit() or len(text) > 19 or int(text) >= 2**63:
        raise UserError(_BAD_CURSOR, code="invalid_argument")
    return int(text)


def _snapshot(text: str) -> tuple[int, int, list[int]]:
    """A ``pg_snapshot`` text as PostgreSQL writes it: ``xmin:xmax:xip,...``, xmin <= xip < xmax, ascending."""
    match = _SNAPSHOT.match(text)
    if match is None:
        raise UserError(_BAD_CURSOR, code="invalid_argument")
    xmin, xmax = int(match[1]), int(match[2])
    xip = [int(x) for x in match[3].split(",")] if match[3] else []
    if not 1 <= xmin <= xmax < 2**63 or any(not xmin <= x < xmax for x in xip) or xip != sorted(set(xip)):
        raise UserError(_BAD_CURSOR, code="invalid_argument")
    return xmin, xmax, xip


@dataclass(frozen=True, slots=True)
class _PgCursor:
    lower: str
    upper: str | None
    #: The last ``(xid, id)`` returned in the open window.
    after: tuple[int, int] | None

    def encode(self) -> str:
        after = self.after or ("", "")
        return _encode("p", self.lower, self.upper or "", str(after[0]), str(after[1]))


def _sqlite_cursor(parts: list[str]) -> int:
    if len(parts) != 2 or parts[0] != "s":
        raise UserError(_BAD_CURSOR, code="invalid_argument")
    return _number(parts[1])


def _pg_cursor(parts: list[str]) -> _PgCursor:
    if len(parts) != 5 or parts[0] != "p":
        raise UserError(_BAD_CURSOR, code="invalid_argument")
    _, lower, upper, xid, change_id = parts
    lo = _snapshot(lower)
    if not upper:
        if xid or change_id:
            raise UserError(_BAD_CURSOR, code="invalid_argument")
        return _PgCursor(lower, None, None)
    up = _snapshot(upper)
    if up[1] < lo[1] or up[0] < lo[0]:  # snapshots only move forward
        raise UserError(_BAD_CURSOR, code="invalid_argument")
    after = (_number(xid), _number(change_id)) if xid or change_id else None
    return _PgCursor(lower, upper, after)


# -- reading ----------------------------------------------------------------

#: The users whose profile changes a user reads: friends, both rows FRIEND (issue 22, G13: not a pending request).
_PROFILE_READERS = (
    "SELECT k.contact_id FROM contacts k JOIN contacts r ON r.owner_id = k.contact_id AND r.contact_id = k.owner_id"
    " WHERE k.owner_id = ? AND k.status = ? AND r.status = ?"
)
_ROW = "c.id, c.chat_id, c.user_id, c.profile_id, c.kind, c.message_seq, c.actor_id, c.data, c.created_at"

#: The user's thread follows: in no stream (older releases read the user's own one); the index's predicate, as is.
_FOLLOWS = "c.kind = 'thread_follow' AND c.user_id IS NULL AND c.actor_id = ?"

#: A broadcast's reader reads no membership change but their own (told live to its staff and the member only).
_SQLITE_HEARS = hears_of_change_sql("x", "uc.user_id", "uc.role", "ch")
_SQLITE_HEARD = hears_of_change_sql("x", "lc.user_id", None, "ch")

# Each stream is read from its own index and cut at the page size before the
# streams are merged: a page costs O(streams x page), not O(changes pending).
_SQLITE_READ = (
    "SELECT * FROM ("
    " SELECT " + _ROW + " FROM user_chats uc JOIN chats ch ON ch.id = uc.chat_id"
    " JOIN changes c ON c.id IN (SELECT x.id FROM changes x"
    " WHERE x.chat_id = uc.chat_id AND x.id > ? AND x.id >= uc.joined_change"
    " AND (x.user_id IS NULL OR x.user_id <> uc.user_id) AND " + _SQLITE_HEARS + " ORDER BY x.id LIMIT ?)"
    " WHERE uc.user_id = ?"
    # Memberships that ended: until the reader is past the removal (on SQLite ids are in commit order).
    " UNION ALL SELECT " + _ROW + " FROM left_chats lc JOIN chats ch ON ch.id = lc.chat_id"
    " JOIN changes c ON c.id IN (SELECT x.id FROM changes x"
    " WHERE x.chat_id = lc.chat_id AND x.id > ? AND x.id >= lc.joined_change AND x.id < lc.left_change"
    " AND " + _SQLITE_HEARD + " ORDER BY x.id LIMIT ?) WHERE lc.user_id = ? AND lc.left_change > ?"
    " UNION ALL SELECT * FROM (SELECT " + _ROW + " FROM changes c WHERE c.user_id = ? AND c.id > ?"
    " ORDER BY c.id LIMIT ?)"
    " UNION ALL SELECT * FROM (SELECT " + _ROW + " FROM changes c WHERE " + _FOLLOWS + " AND c.id > ?"
    " ORDER BY c.id LIMIT ?)"
    " UNION ALL SELECT " + _ROW + " FROM (SELECT ? AS reader UNION " + _PROFILE_READERS + ") p"
    " JOIN changes c ON c.id IN (SELECT x.id FROM changes x WHERE x.profile_id = p.reader AND x.id > ?"
    " ORDER BY x.id LIMIT ?)"
    ") ORDER BY id LIMIT ?"
)


def _pruned_txn(txn: Txn) -> tuple[int, int | None]:
    """``(through_id, through_xid)`` of what `FeedStore.prune` deleted; ``(0, None)`` when nothing was."""
    row = txn.execute("SELECT through_id, through_xid FROM feed_pruned WHERE singleton = 1").fetchone()
    if row is None:
        return 0, None
    return int(row["through_id"]), None if row["through_xid"] is None else int(row["through_xid"])


def _sqlite_read_txn(txn: Txn, user_id: int, after: int, limit: int) -> tuple[list[Any], str, bool]:
    pruned_through, _ = _pruned_txn(txn)
    top = max(int(txn.scalar("SELECT COALESCE(MAX(id), 0) FROM changes")), pruned_through)
    if after > top:
        raise UserError(_BAD_CURSOR, code="invalid_argument")
    if after < pruned_through:  # changes past the cursor are gone
        raise UserError(EXPIRED_CURSOR, code="cursor_expired")
    n = limit + 1
    rows = txn.execute(
        _SQLITE_READ,
        (
            after,
            n,
            user_id,
            after,
            n,
            user_id,
            after,
            user_id,
            after,
            n,
            user_id,
            after,
            n,
            user_id,
            user_id,
            FRIEND,
            FRIEND,
            after,
            n,
            n,
        ),
    ).fetchall()
    if len(rows) > limit:
        return rows[:limit], _encode("s", str(int(rows[limit - 1]["id"]))), True
    return rows, _encode("s", str(top)), False


#: Rows of one stream in the window past a position, in (xid, id) order.
_PG_WINDOW = (
    " AND (c.xid, c.id) > (?::xid8, ?)"
    " AND NOT pg_visible_in_snapshot(c.xid, ?::pg_snapshot) AND pg_visible_in_snapshot(c.xid, ?::pg_snapshot)"
)
_PG_ROW = _ROW + ", c.xid::text AS xid"
_PG_READ = (
    "SELECT * FROM ("
    "(SELECT c.* FROM user_chats uc JOIN chats ch ON ch.id = uc.chat_id CROSS JOIN LATERAL (SELECT "
    + _PG_ROW
    + " FROM changes c WHERE c.chat_id = uc.chat_id"
    + _PG_WINDOW
    + " AND c.id >= uc.joined_change AND (c.user_id IS NULL OR c.user_id <> uc.user_id)"
    " AND " + hears_of_change_sql("c", "uc.user_id", "uc.role", "ch") + " ORDER BY c.xid, c.id LIMIT ?) c"
    " WHERE uc.user_id = ?)"
    # Memberships that ended, until the reader is past the removal (all its changes are then behind).
    " UNION ALL (SELECT c.* FROM left_chats lc JOIN chats ch ON ch.id = lc.chat_id"
    " JOIN changes r ON r.id = lc.left_change CROSS JOIN LATERAL (SELECT "
    + _PG_ROW
    + " FROM changes c WHERE c.chat_id = lc.chat_id"
    + _PG_WINDOW
    + " AND c.id >= lc.joined_change AND c.id < lc.left_change AND "
    + hears_of_change_sql("c", "lc.user_id", None, "ch")
    + " ORDER BY c.xid, c.id LIMIT ?) c WHERE lc.user_id = ? AND NOT pg_visible_in_snapshot(r.xid, ?::pg_snapshot))"
    " UNION ALL (SELECT "
    + _PG_ROW
    + " FROM changes c WHERE c.user_id = ?"
    + _PG_WINDOW
    + " ORDER BY c.xid, c.id LIMIT ?)"
    " UNION ALL (SELECT "
    + _PG_ROW
    + " FROM changes c WHERE "
    + _FOLLOWS
    + _PG_WINDOW
    + " ORDER BY c.xid, c.id LIMIT ?)"
    " UNION ALL (SELECT c.* FROM (SELECT ?::bigint AS reader UNION " + _PROFILE_READERS + ") p"
    " CROSS JOIN LATERAL (SELECT "
    + _PG_ROW
    + " FROM changes c WHERE c.profile_id = p.reader"
    + _PG_WINDOW
    + " ORDER BY c.xid, c.id LIMIT ?) c)"
    ") c ORDER BY c.xid::xid8, c.id LIMIT ?"
)


def _covers(outer: tuple[int, int, list[int]], inner: tuple[int, int, list[int]]) -> bool:
    """Whether every transaction visible in snapshot ``inner`` is visible in ``outer`` (false when unsure)."""
    xmin, xmax, xip = inner
    running = set(xip)
    return xmax <= outer[1] and all(x in running for x in outer[2] if x < xmax)


def _pruned_past(lower: tuple[int, int, list[int]], running_now: set[int], pruned_xid: int) -> bool:
    """Whether `FeedStore.prune` may have deleted a change past the cursor whose lower snapshot is ``lower``.

    Pruning deletes committed changes only, through the transaction
    ``pruned_xid``.  A pruned transaction is behind the cursor when it is
    visible in ``lower``: older than its xmin, or older than its xmax and not
    one of those running then.  The newest pruned one must be visible; an
    older one is unknown only if it was running at ``lower`` and has ended
    since (one in ``running_now``, still running, cannot have been pruned).  Comparing
    with the xmin alone refused every cursor, fresh ones too, while any
    transaction anywhere on the server stayed open since before the pruned
    changes (a session left idle in transaction), so no client could sync.
    Once such a transaction ends, a cursor taken while it ran is refused
    once (whether it was pruned is no longer known): its client reloads.
    """
    xmin, xmax, running_then = lower
    if pruned_xid < xmin:
        return False
    if pruned_xid >= xmax or pruned_xid in running_then:
        return True
    return any(x < pruned_xid and x not in running_now for x in running_then)


def _pg_read_txn(
    txn: Txn, user_id: int, cursor: _PgCursor, limit: int, covered: str | None = None
) -> tuple[list[Any], str, bool]:
    """One page; ``covered`` (on a replica, `ReadRouter`) is a primary snapshot the replica has replayed.

    On a replica the window closes at ``covered``, never at the replica's own
    ``pg_current_snapshot()``: a standby's snapshot lists no transaction in
    progress, so it would call visible a transaction it has not replayed, and
    the cursor would move past rows it never saw.
    """
    if covered is None:
        now = txn.scalar("SELECT pg_current_snapshot()::text")
        if _snapshot(cursor.upper or cursor.lower)[1] > _snapshot(now)[1]:
            raise UserError(_BAD_CURSOR, code="invalid_argument")  # a snapshot this database has not reached
    else:
        now = covered
        if not _covers(_snapshot(covered), _snapshot(cursor.upper or cursor.lower)):
            raise ReplicaBehindError()  # the replica is behind this cursor: the primary answers
    _, pruned_xid = _pruned_txn(txn)
    # On a replica nothing is known to be running: the prune it replayed may be newer than ``covered``.
    running_now = set(_snapshot(now)[2]) if covered is None else set()
    if pruned_xid is not None and _pruned_past(_snapshot(cursor.lower), running_now, pruned_xid):
        raise UserError(EXPIRED_CURSOR, code="cursor_expired")
    upper = cursor.upper or now
    # Every transaction older than the lower snapshot's xmin is visible in it: start there.
    after = cursor.after or (_snapshot(cursor.lower)[0], 0)
    window = (str(after[0]), after[1], cursor.lower, upper)
    rows = txn.execute(
        _PG_READ,
        (
            *window,
            limit + 1,
            user_id,
            *window,
            limit + 1,
            user_id,
            cursor.lower,
            user_id,
            *window,
            limit + 1,
            user_id,
            *window,
            limit + 1,
            user_id,
            user_id,
            FRIEND,
            FRIEND,
            *window,
            limit + 1,
            limit + 1,
        ),
    ).fetchall()
    if len(rows) > limit:
        last = rows[limit - 1]
        return rows[:limit], _PgCursor(cursor.lower, upper, (int(last["xid"]), int(last["id"]))).encode(), True
    return rows, _PgCursor(upper, None, None).encode(), False


def _render_txn(txn: Txn, rows: list[Any], viewer_id: int | None = None) -> list[Change]:
    """The changes with the records they name, read now: a few queries per page, not per change."""
    seqs = sorted({int(r["message_seq"]) for r in rows if r["message_seq"] is not None})
    messages: dict[int, tuple[Message, bool]] = {}
    if seqs:
        found = txn.execute(
            "SELECT " + MESSAGE_COLUMNS + ", m.deleted_at FROM messages m JOIN users su ON su.id = m.sender_id"
            " WHERE m.seq IN " + in_clause(seqs),
            seqs,
        ).fetchall()
        live = annotate_txn(txn, [message_from_row(r) for r in found if r["deleted_at"] is None], viewer_id)
        messages = {m.seq: (m, False) for m in live}
        messages.update({int(r["seq"]): (message_from_row(r), True) for r in found if r["deleted_at"] is not None})
    actors = sorted({int(r["actor_id"]) for r in rows if r["actor_id"] is not None})
    usernames: dict[int, str] = {}
    if actors:
        usernames = {
            int(u["id"]): u["username"]
            for u in txn.execute("SELECT id, username FROM users WHERE id IN " + in_clause(actors), actors).fetchall()
        }
    groups: dict[int, GroupInfo | None] = {}
    profiles: dict[int, Profile | None] = {}
    changes = []
    for r in rows:
        kind, data = r["kind"], json.loads(r["data"]) if r["data"] else {}
        actor = int(r["actor_id"]) if r["actor_id"] is not None else None
        change = Change(
            kind,
            float(r["created_at"]),
            int(r["chat_id"]) if r["chat_id"] is not None else None,
            actor,
            usernames.get(actor) if actor is not None else None,
            data,
        )
        if kind in _MESSAGE_KINDS:
            message, deleted = messages.get(int(r["message_seq"]), (None, True))
            if message is None or (deleted and kind != "delete"):
                continue  # deleted (or erased) since the page was chosen
            change = replace(change, message=message)
        elif kind == "group" and data.get("event") == "group_created":
            chat_id = int(r["chat_id"])
            if chat_id not in groups:
                try:
                    groups[chat_id] = info_txn(txn, chat_id, None, LISTED_MEMBERS)
                except RefusedError:
                    groups[chat_id] = None
            if groups[chat_id] is None:
                continue
            change = replace(change, group=groups[chat_id])
        elif kind == "profile":
            user = int(r["profile_id"])
            if user not in profiles:
                profiles[user] = profile_txn(txn, user)
            if profiles[user] is None:
                continue
            change = replace(change, profile=profiles[user])
        changes.append(change)
    return changes


def position_txn(txn: Txn) -> str:
    if not txn.dialect.commit_ordered_ids:
        return _PgCursor(txn.scalar("SELECT pg_current_snapshot()::text"), None, None).encode()
    # Past what was pruned too: with every change pruned, MAX(id) alone would be a position before them.
    top = max(int(txn.scalar("SELECT COALESCE(MAX(id), 0) FROM changes")), _pruned_txn(txn)[0])
    return _encode("s", str(top))


def _prune_txn(txn: Txn, cutoff: float, batch: int) -> int:
    """One batch of `FeedStore.prune`: the oldest ids first, up to the first change not older than ``cutoff``."""
    rows = txn.execute("SELECT id, created_at FROM changes ORDER BY id LIMIT ?", (batch,)).fetchall()
    old = 0
    for row in rows:
        if row["created_at"] >= cutoff:
            break
        old += 1
    if not old:
        return 0
    through = int(rows[old - 1]["id"])
    xid = None
    if not txn.dialect.commit_ordered_ids:
        xid = int(txn.scalar("SELECT MAX(xid::text::bigint) FROM changes WHERE id <= ?", (through,)))
    txn.execute("DELETE FROM changes WHERE id <= ?", (through,))
    # A membership whose removal is gone has nothing left to read.
    txn.execute("DELETE FROM left_chats WHERE left_change <= ?", (through,))
    txn.execute(
        "INSERT INTO feed_pruned (singleton, through_id, through_xid) VALUES (1, ?, ?) ON CONFLICT (singleton) DO"
        " UPDATE SET through_id = CASE WHEN feed_pruned.through_id > excluded.through_id"
        " THEN feed_pruned.through_id ELSE excluded.through_id END,"
        " through_xid = CASE WHEN feed_pruned.through_xid > excluded.through_xid"
        " THEN feed_pruned.through_xid ELSE excluded.through_xid END",
        (through, xid),
    )
    return old


class FeedStore:
    """The user's position in the feed, and pages of it."""

    def __init__(self, db: Database, reads: ReadRouter | None = None) -> None:
        self._db = db
        self._reads = reads if reads is not None else ReadRouter(db)
        #: Callers waiting on the position query in flight (None when none is).
        self._waiting: list[defer.Deferred[str]] | None = None

    def position(self) -> defer.Deferred[str]:
        """A cursor at the latest change committed: reading from it skips nothing after this call.

        Every connect asks for one (``connection_successful.cursor``), so the
        callers that arrive while a position query is in flight share its
        answer: a burst of connects costs one query, not one each.  A shared
        answer may come from a query that started a moment before the call,
        so a client syncing from it may be told again of a change committed
        in that moment (which it also got live): never of fewer.
        """
        waiter: defer.Deferred[str] = defer.Deferred()
        if self._waiting is not None:
            self._waiting.append(waiter)
            return waiter
        waiting = self._waiting = [waiter]

        def answer(result: Any) -> None:
            self._waiting = None
            for each in waiting:
                if isinstance(result, Failure):
                    each.errback(result)
                else:
                    each.callback(result)

        self._db.read("feed.position", position_txn).addBoth(answer)
        return waiter

    async def prune(self, cutoff: float, batch: int = 5000) -> int:
        """Delete the changes made before ``cutoff`` (epoch seconds), oldest first, in batches; how many went.

        Cursors from before what is deleted are refused from then on
        (`EXPIRED_CURSOR`), so a client never silently misses a change.
        """
        total = 0
        while True:
            deleted = await self._db.run("feed.prune", _prune_txn, cutoff, batch)
            total += deleted
            if deleted < batch:
                return total

    def read(self, user_id: int, cursor: str, limit: int) -> defer.Deferred[FeedPage]:
        """Up to ``limit`` changes ``user_id`` may see after ``cursor``, oldest first; `UserError` on a bad cursor."""
        try:
            parts = _decode(cursor)
            if self._db.dialect.commit_ordered_ids:
                position: Any = _sqlite_cursor(parts)
                read: Any = _sqlite_read_txn
            else:
                position, read = _pg_cursor(parts), _pg_read_txn
        except UserError:
            return defer.fail()

        def txn_fn(txn: Txn, covered: str | None) -> FeedPage:
            if covered is None:
                rows, next_cursor, has_more = read(txn, user_id, position, limit)
            else:
                rows, next_cursor, has_more = _pg_read_txn(txn, user_id, position, limit, covered)
            return FeedPage(_render_txn(txn, rows, user_id), next_cursor, has_more)

        return self._reads.read_covered("feed.read", user_id, txn_fn)
