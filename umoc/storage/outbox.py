"""The change feed as the one durable outbox: each consumer's stored position, its lease, and the rows after it.

A consumer (``webhooks``, ``push``) reads every stream of the feed at once,
only the kinds it delivers, in feed order, from the position it stored in
``feed_consumers`` (migration 017).  It stores a new position only once the
deliveries of every row before it are done, so a node that dies between a
commit and a delivery leaves the position behind that row: the node that
tails the consumer next delivers it (at least once, never lost).

Order, with the positions of `umoc.storage.feed` (the same cursor strings):

SQLite: one writer, so ``changes.id`` grows in commit order: the rows with
an id past the position, by id; the next position is the last id returned,
or, when the page is not full, the largest id there is in the read's
snapshot (every row up to it is committed and was seen).

PostgreSQL: ids do not grow in commit order (a row with id 5 may commit
after one with id 6 was read), so an id cursor alone would skip rows.  The
read opens the same snapshot windows as ``sync`` does (see
`umoc.storage.feed`): the rows whose transaction is not visible in the
lower snapshot and is visible in the upper one, by ``(xid, id)``.  A row is
in exactly one window, the first whose upper snapshot sees its transaction
(snapshots only grow; a transaction still running is in none yet), and
within a window ``(xid, id)`` is a total order that can no longer change, so
paging inside it with the last ``(xid, id)`` skips and repeats nothing.
The position is only ever written after its rows, so a restart resumes in
the window, after the last row done.  The index ``changes_outbox`` holds
the consumers' kinds by ``(xid, id)``, and the read starts at the lower
snapshot's xmin: it touches recent rows only.

One node tails a consumer at a time, by a *lease row* rather than an
advisory lock: ``holder`` and ``lease_until`` in the consumer's row, taken
when it is free or expired, renewed with every position written, given up
at a clean stop.  Why a lease: it needs no connection held for ever outside
the pool (a session advisory lock lives on one connection, and a pool may
close or replace it under us), it works the same on SQLite, and it fences:
the position moves only ``WHERE holder = me``, so a node that was paused
past its lease (a stalled VM, a cut network) and comes back can repeat a
delivery the new holder also makes, but can never move the position over
rows it did not deliver.  A node that dies simply stops renewing: the
others take over when ``lease_until`` passes (``feed.consumer_lease``).
Leases compare the nodes' clocks, so they must agree to well within a lease
(NTP); a clock that is off costs a duplicate delivery, never a lost one.
SQLite has one node (`Dialect.shared_by_nodes` is false): a node starting
takes the lease whoever held it, since that can only be itself before a
crash, so a restart resumes at once instead of after the lease.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from twisted.internet import defer

from umoc.storage.database import Database, Row, Txn, in_clause
from umoc.storage.feed import (
    _PG_ROW,
    _PG_WINDOW,
    _ROW,
    Change,
    _decode,
    _encode,
    _pg_cursor,
    _PgCursor,
    _pruned_txn,
    _render_txn,
    _snapshot,
    _sqlite_cursor,
    position_txn,
)
from umoc.storage.threadrows import followers_txn

__all__ = ["OUTBOX_KINDS", "OutboxBatch", "OutboxRow", "OutboxStore"]

#: The kinds a consumer may read: the predicate of the PostgreSQL index ``changes_outbox_v3`` (keep them equal).
OUTBOX_KINDS = (
    "message",
    "edit",
    "delete",
    "contact",
    "member_added",
    "registered",
    "report",
    "group",
    "member_removed",
    "member_role",
    "member_banned",
    "member_muted",
    "join_request",
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One change as a consumer sees it at delivery time."""

    change_id: int
    kind: str
    #: What the row names, read now; None when that is gone (a message deleted or erased since).
    change: Change | None
    #: The row's own stream (``contact`` changes: whose contact list changed) and that user's name now.
    owner_id: int | None = None
    owner_username: str | None = None
    #: ``message``: the chat's members when the message was written, but its sender.
    audience: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    rows: list[OutboxRow]
    #: The position after these rows: store it once they are delivered.
    position: str
    #: A full page: more rows may be waiting, read again at once.
    full: bool
    #: The position was from before changes pruned since (``feed.retention``): some were never delivered.
    expired: bool = False
    #: Rows were read past without being returned (``push_only``): the position moved all the same.
    skipped: bool = False
    #: The next read pages on in the snapshot this one took (PostgreSQL's window, while pages are full):
    #: changes committed since are not in it, they come in the window after.
    same_snapshot: bool = False


def _sqlite_rows(txn: Txn, position: str, kinds: tuple[str, ...], limit: int) -> tuple[list[Row], str, bool, bool]:
    after = _sqlite_cursor(_decode(position))
    pruned_through, _ = _pruned_txn(txn)
    rows = txn.execute(
        "SELECT "
        + _ROW
        + " FROM changes c WHERE c.id > ? AND c.kind IN "
        + in_clause(kinds)
        + " ORDER BY c.id LIMIT ?",
        (after, *kinds, limit + 1),
    ).fetchall()
    if len(rows) > limit:
        return rows[:limit], _encode("s", str(int(rows[limit - 1]["id"]))), True, after < pruned_through
    top = max(int(txn.scalar("SELECT COALESCE(MAX(id), 0) FROM changes")), pruned_through, after)
    return rows, _encode("s", str(top)), False, after < pruned_through


def _pg_rows(txn: Txn, position: str, kinds: tuple[str, ...], limit: int) -> tuple[list[Row], str, bool, bool]:
    cursor = _pg_cursor(_decode(position))
    _, pruned_xid = _pruned_txn(txn)
    expired = pruned_xid is not None and pruned_xid >= _snapshot(cursor.lower)[0]
    upper = cursor.upper or txn.scalar("SELECT pg_current_snapshot()::text")
    after = cursor.after or (_snapshot(cursor.lower)[0], 0)
    rows = txn.execute(
        "SELECT "
        + _PG_ROW
        + " FROM changes c WHERE c.kind IN "
        + in_clause(kinds)
        + _PG_WINDOW
        # The window's rows are few; its bounds are what the index is read by.
        + " ORDER BY c.xid, c.id LIMIT ?",
        (*kinds, str(after[0]), after[1], cursor.lower, upper, limit + 1),
    ).fetchall()
    if len(rows) > limit:
        last = rows[limit - 1]
        return rows[:limit], _PgCursor(cursor.lower, upper, (int(last["xid"]), int(last["id"]))).encode(), True, expired
    return rows, _PgCursor(upper, None, None).encode(), False, expired


def _read_txn(txn: Txn, position: str, kinds: tuple[str, ...], limit: int, push_only: bool = False) -> OutboxBatch:
    read = _sqlite_rows if txn.dialect.commit_ordered_ids else _pg_rows
    rows, next_position, full, expired = read(txn, position, kinds, limit)
    # SQLite's next read takes a fresh snapshot; PostgreSQL's pages on in this window while it is full.
    same_snapshot = full and not txn.dialect.commit_ordered_ids
    if not rows:
        return OutboxBatch([], next_position, full, expired, same_snapshot=same_snapshot)
    owners = sorted({int(r["user_id"]) for r in rows if r["user_id"] is not None})
    chats = sorted({int(r["chat_id"]) for r in rows if r["kind"] == "message" and r["chat_id"] is not None})
    members: dict[int, list[tuple[int, int]]] = {}
    if chats:
        for m in txn.execute(
            "SELECT chat_id, user_id, joined_change FROM user_chats WHERE chat_id IN " + in_clause(chats), chats
        ).fetchall():
            members.setdefault(int(m["chat_id"]), []).append((int(m["user_id"]), int(m["joined_change"])))
    # A thread reply reaches its thread's followers only (migration 024; its row's data names the root).
    roots = {int(r["id"]): _thread_root(r) for r in rows if r["kind"] == "message" and r["chat_id"] is not None}
    followers = followers_txn(txn, sorted({root for root in roots.values() if root is not None}))
    audiences: dict[int, tuple[int, ...]] = {}
    for row in rows:
        if row["kind"] == "message" and row["chat_id"] is not None:
            change_id = int(row["id"])
            sender = int(row["actor_id"]) if row["actor_id"] is not None else None
            root = roots[change_id]
            following = set(followers.get(root, ())) if root is not None else None
            # A group's members from the change that added them: those added later never saw this message.
            audiences[change_id] = tuple(
                u
                for u, joined in members.get(int(row["chat_id"]), [])
                if u != sender and joined <= change_id and (following is None or u in following)
            )
    skipped = False
    if push_only:
        kept = _reaching_devices(txn, rows, owners, audiences)
        skipped, rows = len(kept) < len(rows), kept
        owners = sorted({int(r["user_id"]) for r in rows if r["user_id"] is not None})
        if not rows:
            return OutboxBatch([], next_position, full, expired, skipped, same_snapshot)
    rendered = _render_txn(txn, list(rows))
    # `_render_txn` keeps the rows' order and leaves out those whose records are gone: match them up again.
    by_row: dict[int, Change] = {}
    it = iter(rendered)
    pending = next(it, None)
    for row in rows:
        if pending is not None and _same(row, pending):
            by_row[int(row["id"])] = pending
            pending = next(it, None)
    names: dict[int, str] = {}
    if owners:
        names = {
            int(u["id"]): u["username"]
            for u in txn.execute("SELECT id, username FROM users WHERE id IN " + in_clause(owners), owners).fetchall()
        }
    out = []
    for row in rows:
        change_id, kind = int(row["id"]), row["kind"]
        owner = int(row["user_id"]) if row["user_id"] is not None else None
        out.append(
            OutboxRow(
                change_id,
                kind,
                by_row.get(change_id),
                owner,
                names.get(owner) if owner is not None else None,
                audiences.get(change_id, ()),
            )
        )
    return OutboxBatch(out, next_position, full, expired, skipped, same_snapshot)


def _thread_root(row: Row) -> int | None:
    """The root of a thread reply's message row (its ``data`` says ``{"thread": root_seq}``); None otherwise."""
    if row["data"] is None or '"thread"' not in row["data"]:
        return None
    return int(json.loads(row["data"])["thread"])


def _reaching_devices(txn: Txn, rows: list[Row], owners: list[int], audiences: dict[int, tuple[int, ...]]) -> list[Row]:
    """The rows that concern somebody with a push registration (the push consumer reads only those).

    Most people in a chat server have no registered device, or none on the
    server a test or a bench runs: rendering every message for a push that
    nobody can get cost more than the rest of the outbox (the records, the
    annotations, the deferreds per row).  Whether a push is finally sent is
    still decided at delivery (online, muted, read), as before; a device
    registered after this read misses only the rows read already, as it
    would have missed a push decided then.
    """
    users = sorted({*owners, *(u for audience in audiences.values() for u in audience)})
    registered: set[int] = set()
    for start in range(0, len(users), 500):
        chunk = users[start : start + 500]
        registered.update(
            int(r["user_id"])
            for r in txn.execute(
                "SELECT DISTINCT user_id FROM push_registrations WHERE user_id IN " + in_clause(chunk), chunk
            ).fetchall()
        )
    if not registered:
        return []
    kept = []
    for row in rows:
        if row["kind"] == "message":
            if not registered.isdisjoint(audiences.get(int(row["id"]), ())):
                kept.append(row)
        elif row["user_id"] is not None and int(row["user_id"]) in registered:
            kept.append(row)
    return kept


def _same(row: Row, change: Change) -> bool:
    """Whether ``change`` is what `_render_txn` made of ``row`` (it keeps kind, time, chat, actor, message)."""
    actor = int(row["actor_id"]) if row["actor_id"] is not None else None
    chat = int(row["chat_id"]) if row["chat_id"] is not None else None
    seq = int(row["message_seq"]) if row["message_seq"] is not None else None
    return (
        change.kind == row["kind"]
        and (seq is None or (change.message is not None and change.message.seq == seq))
        and change.created_at == float(row["created_at"])
        and change.chat_id == chat
        and change.actor_id == actor
    )


def _claim_txn(txn: Txn, name: str, holder: str, now: float, lease: float) -> str | None:
    """Take or renew the lease: the stored position when this node holds it now, None when another does.

    A consumer seen for the first time starts at the feed's latest position:
    what happened before it existed is not delivered.
    """
    txn.begin()
    if txn.execute("SELECT 1 FROM feed_consumers WHERE name = ?", (name,)).fetchone() is None:
        txn.execute(
            "INSERT INTO feed_consumers (name, position, holder, lease_until, updated_at) VALUES (?, ?, NULL, 0, ?)"
            " ON CONFLICT (name) DO NOTHING",
            (name, position_txn(txn), now),
        )
    if txn.dialect.shared_by_nodes:
        txn.execute(
            "UPDATE feed_consumers SET holder = ?, lease_until = ?, updated_at = ?"
            " WHERE name = ? AND (holder = ? OR holder IS NULL OR lease_until < ?)",
            (holder, now + lease, now, name, holder, now),
        )
    else:
        # One node: a holder still named here is this node before a crash or restart.
        txn.execute(
            "UPDATE feed_consumers SET holder = ?, lease_until = ?, updated_at = ? WHERE name = ?",
            (holder, now + lease, now, name),
        )
    if txn.rowcount != 1:
        return None
    return str(txn.scalar("SELECT position FROM feed_consumers WHERE name = ?", (name,)))


class OutboxStore:
    """`claim` the lease, `read` the rows after a position, `advance` the position (fenced by the lease)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def claim(self, name: str, holder: str, now: float, lease: float) -> defer.Deferred[str | None]:
        return self._db.run("outbox.claim", _claim_txn, name, holder, now, lease)

    def read(
        self, position: str, kinds: tuple[str, ...], limit: int, push_only: bool = False
    ) -> defer.Deferred[OutboxBatch]:
        """Up to ``limit`` rows of ``kinds`` after ``position``, in feed order, rendered from the live rows.

        ``push_only``: only the rows that concern a user with a push
        registration (`_reaching_devices`); the position still moves past
        all of them.
        """
        if not kinds or not set(kinds) <= set(OUTBOX_KINDS):
            raise ValueError(f"a consumer reads some of {OUTBOX_KINDS}, not {kinds}")
        return self._db.read("outbox.read", _read_txn, position, kinds, limit, push_only)

    def advance(self, name: str, holder: str, position: str, now: float, lease: float) -> defer.Deferred[bool]:
        """Store ``position`` and renew the lease; False (nothing stored) when ``holder`` lost the lease."""

        def txn_fn(txn: Txn) -> bool:
            txn.execute(
                "UPDATE feed_consumers SET position = ?, lease_until = ?, updated_at = ? WHERE name = ? AND holder = ?",
                (position, now + lease, now, name, holder),
            )
            return txn.rowcount == 1

        return self._db.run("outbox.advance", txn_fn)

    def release(self, name: str, holder: str) -> defer.Deferred[None]:
        """Give the lease up (a clean stop): another node takes over at once, not when it expires."""

        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "UPDATE feed_consumers SET holder = NULL, lease_until = 0 WHERE name = ? AND holder = ?", (name, holder)
            )

        return self._db.run("outbox.release", txn_fn)

    def position(self, name: str) -> defer.Deferred[str | None]:
        """The stored position (for tests and the operator)."""
        return self._db.read(
            "outbox.position", lambda txn: txn.scalar("SELECT position FROM feed_consumers WHERE name = ?", (name,))
        )
