"""Bulk loading for benchmarks and load tests: many chats or messages in a few statements.

Rows go in through multi-row ``INSERT ... VALUES`` with bound parameters,
then the counters the lists read (``chats.last_seq``, ``message_count``,
``base_count``, ``sent_count``, ``read_count``) are recomputed, so the result is indistinguishable from
the same data sent one message at a time.  Not used by the server itself.
"""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from twisted.internet import defer

from umoc.storage.database import Database, Txn
from umoc.storage.messages import index_pending_txn
from umoc.storage.relations import FRIEND

__all__ = ["Seeder"]

#: Bound parameters per statement: under SQLite's historical limit of 999.
_MAX_PARAMS = 900


def _bulk_insert_txn(txn: Txn, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``table`` and ``columns`` are code constants; every value is a bound parameter."""
    per_statement = max(1, _MAX_PARAMS // len(columns))
    row_sql = "(" + ",".join("?" * len(columns)) + ")"
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        txn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ",".join([row_sql] * len(chunk)),
            [value for row in chunk for value in row],
        )


def _users_txn(txn: Txn, prefix: str, count: int, now: float) -> list[int]:
    names = [f"{prefix}{i}" for i in range(count)]
    _bulk_insert_txn(txn, "users", ("username", "password_hash", "created_at"), [(n, "!", now) for n in names])
    rows = txn.execute("SELECT id FROM users WHERE username LIKE ? ORDER BY id", (prefix + "%",)).fetchall()
    return [int(r["id"]) for r in rows]


def _recount_txn(txn: Txn, chat_ids: list[int]) -> None:
    for start in range(0, len(chat_ids), _MAX_PARAMS):
        chunk = chat_ids[start : start + _MAX_PARAMS]
        marks = ",".join("?" * len(chunk))
        txn.execute(
            "UPDATE chats SET"
            " last_seq = (SELECT COALESCE(MAX(seq), 0) FROM messages m WHERE m.chat_id = chats.id),"
            " message_count = (SELECT COUNT(*) FROM messages m WHERE m.chat_id = chats.id AND m.deleted_at IS NULL)"
            f" WHERE id IN ({marks})",
            chunk,
        )
        txn.execute(
            "UPDATE user_chats SET"
            " base_count = (SELECT COUNT(*) FROM messages m WHERE m.chat_id = user_chats.chat_id"
            " AND m.deleted_at IS NULL AND m.seq <= user_chats.joined_seq),"
            " sent_count = (SELECT COUNT(*) FROM messages m WHERE m.chat_id = user_chats.chat_id"
            " AND m.deleted_at IS NULL AND m.seq > user_chats.joined_seq AND m.sender_id = user_chats.user_id),"
            " read_count = (SELECT COUNT(*) FROM messages m JOIN message_reads r"
            " ON r.message_seq = m.seq AND r.user_id = user_chats.user_id WHERE m.chat_id = user_chats.chat_id"
            " AND m.deleted_at IS NULL AND m.seq > user_chats.joined_seq AND m.sender_id <> user_chats.user_id)"
            f" WHERE chat_id IN ({marks})",
            chunk,
        )


def _direct_chats_txn(txn: Txn, user_id: int, peers: list[int], now: float) -> list[int]:
    _bulk_insert_txn(
        txn,
        "contacts",
        ("owner_id", "contact_id", "status", "requester_id", "created_at", "updated_at"),
        [
            row
            for p in peers
            for row in ((user_id, p, FRIEND, user_id, now, now), (p, user_id, FRIEND, user_id, now, now))
        ],
    )
    _bulk_insert_txn(
        txn,
        "chats",
        ("is_group", "user_lo", "user_hi", "created_at", "member_count", "last_activity"),
        [(0, min(user_id, p), max(user_id, p), now, 2, now + i) for i, p in enumerate(peers)],
    )
    rows = txn.execute(
        "SELECT id, CASE WHEN user_lo = ? THEN user_hi ELSE user_lo END AS peer_id FROM chats"
        " WHERE is_group = 0 AND (user_lo = ? OR user_hi = ?)",
        (user_id, user_id, user_id),
    ).fetchall()
    chat_of = {int(r["peer_id"]): int(r["id"]) for r in rows}
    _bulk_insert_txn(
        txn,
        "user_chats",
        ("user_id", "chat_id", "peer_id", "is_group", "joined_at"),
        [row for p in peers for row in ((user_id, chat_of[p], p, 0, now), (p, chat_of[p], user_id, 0, now))],
    )
    return [chat_of[p] for p in peers]


def _messages_txn(txn: Txn, chat_id: int, a: int, b: int, count: int, start: float) -> None:
    _bulk_insert_txn(
        txn,
        "messages",
        ("id", "chat_id", "sender_id", "recipient_id", "is_group", "type", "content", "created_at"),
        [
            (str(uuid.uuid4()), chat_id, s, r, 0, "text", f"message {i}", start + i)
            for i in range(count)
            for s, r in ((a, b) if i % 2 == 0 else (b, a),)
        ],
    )
    if txn.dialect.batched_search_index:  # SQLite indexes in batches (migration 027): as the server would have
        while index_pending_txn(txn):
            pass


class Seeder:
    """Bulk data for benchmarks, through the same tables the stores use."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def users(self, prefix: str, count: int, now: float) -> defer.Deferred[list[int]]:
        """``count`` users named ``prefix0``...; their ids in order."""
        return self._db.run("seed", _users_txn, prefix, count, now)

    def direct_chats(self, user_id: int, peers: list[int], messages_each: int, now: float) -> defer.Deferred[None]:
        """Friendships and direct chats between ``user_id`` and each peer, with a few messages in each."""

        def txn_fn(txn: Txn) -> None:
            chats = _direct_chats_txn(txn, user_id, peers, now)
            for chat_id, peer in zip(chats, peers, strict=True):
                _messages_txn(txn, chat_id, peer, user_id, messages_each, now)
            _recount_txn(txn, chats)
            # Fresh statistics, as autovacuum / a DBA would have for real data.
            txn.execute("ANALYZE")

        return self._db.run("seed", txn_fn)

    def history(self, a: int, b: int, count: int, now: float) -> defer.Deferred[None]:
        """``count`` messages alternating between ``a`` and ``b`` in their (new) direct chat."""

        def txn_fn(txn: Txn) -> None:
            (chat_id,) = _direct_chats_txn(txn, a, [b], now)
            _messages_txn(txn, chat_id, a, b, count, now)
            _recount_txn(txn, [chat_id])
            txn.execute("ANALYZE")

        return self._db.run("seed", txn_fn)
