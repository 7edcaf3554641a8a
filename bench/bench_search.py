"""How fast is search_messages over 1,000,000 messages?

Seeds ``--messages`` (default 1,000,000) text messages in bulk on SQLite (a
temp file) and on PostgreSQL (a temporary schema, when UMOC_TEST_POSTGRES is
set), in ``--users`` users' direct chats (each user has 8 friends) and
``--groups`` groups of 5 to 60 members; about 60 % of the messages go to
direct chats, 40 % to groups.  Message text is 3 to 14 words drawn from a
20,000-word vocabulary with a Zipf distribution (exponent 1.07), so the most
common word is in most messages and rare words in a few dozen.

Then it times ``SearchStore.messages`` (the storage layer: one transaction)
for a one-word query in the user's chats (a common word, one in 0.5 % of the
messages, a rare one), ``--queries`` times each: from random users, from the
user who may read the most messages and from the users who may read the
fewest; and the real ``search_messages`` handler (schema, terms,
store, payloads with snippets) for one user.  p50 / p99 in milliseconds.
Everything it made is removed at the end (the file, the schema)::

    UMOC_TEST_POSTGRES=postgresql://... /work/venv/bin/python bench/bench_search.py    # ~10 minutes
    /work/venv/bin/python bench/bench_search.py --sqlite-only --messages 100000 --explain
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.databases import new_schema_name, postgres_schema  # noqa: E402
from umoc.config import parse_config  # noqa: E402
from umoc.events import search as search_events  # noqa: E402
from umoc.events.router import EventContext  # noqa: E402
from umoc.storage import Storage  # noqa: E402
from umoc.storage.database import Database, Txn  # noqa: E402
from umoc.storage.messages import index_pending_txn  # noqa: E402
from umoc.transport.socketio import Identity  # noqa: E402
from umoc.wiring import build_node  # noqa: E402

_SEARCH = next(route for route in search_events.ROUTES if route.event == "search_messages")
#: Bound parameters per statement: under SQLite's limit (32766 since 3.32) and PostgreSQL's (65535).
_MAX_PARAMS = 30_000
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["an", "el", "is", "or", "um"]
VOCABULARY = 20_000
ZIPF = 1.07


@dataclass
class _Socket:
    """Just what `EventContext` reads from a socket."""

    identity: Identity

    @property
    def user_id(self) -> int:
        return self.identity.user_id


def _insert_txn(txn: Txn, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Multi-row INSERTs; ``table`` and ``columns`` are constants here, every value a bound parameter."""
    per = max(1, _MAX_PARAMS // len(columns))
    row_sql = "(" + ",".join("?" * len(columns)) + ")"
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        txn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ",".join([row_sql] * len(chunk)),
            [v for row in chunk for v in row],
        )


def vocabulary(rng: random.Random) -> list[str]:
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        words["".join(rng.choices(_SYLLABLES, k=rng.choice((1, 2, 2, 3, 3, 4))))] = None
    return list(words)


@dataclass
class World:
    users: list[int]
    #: chat id -> its members
    members: dict[int, list[int]]
    direct: dict[int, tuple[int, int]]
    words: list[str]
    #: messages each word is in
    counts: dict[str, int]
    #: messages each user may read
    readable: dict[int, int]


async def seed(db: Database, args: argparse.Namespace) -> World:
    rng = random.Random(15)
    now = time.time() - 86400 * 30
    started = time.perf_counter()

    def people(txn: Txn) -> list[int]:
        _insert_txn(
            txn, "users", ("username", "password_hash", "created_at"), [(f"s{i}", "!", now) for i in range(args.users)]
        )
        return [int(r["id"]) for r in txn.execute("SELECT id FROM users ORDER BY id").fetchall()]

    users = await db.run("seed", people)
    pairs = [(users[i], users[(i + k) % len(users)]) for i in range(len(users)) for k in range(1, 5)]
    groups = [rng.sample(users, rng.randint(5, 60)) for _ in range(args.groups)]

    def chats(txn: Txn) -> tuple[dict[int, list[int]], dict[int, tuple[int, int]]]:
        _insert_txn(
            txn,
            "chats",
            ("is_group", "user_lo", "user_hi", "created_at", "member_count", "last_activity"),
            [(0, min(a, b), max(a, b), now, 2, now) for a, b in pairs],
        )
        _insert_txn(
            txn,
            "chats",
            ("is_group", "name", "created_by", "created_at", "member_count", "last_activity"),
            [(1, f"group {i}", g[0], now, len(g), now) for i, g in enumerate(groups)],
        )
        rows = txn.execute("SELECT id, is_group, user_lo, user_hi FROM chats ORDER BY id").fetchall()
        members: dict[int, list[int]] = {}
        direct: dict[int, tuple[int, int]] = {}
        group_rows = iter(groups)
        for r in rows:
            if r["is_group"]:
                members[int(r["id"])] = next(group_rows)
            else:
                direct[int(r["id"])] = (int(r["user_lo"]), int(r["user_hi"]))
                members[int(r["id"])] = list(direct[int(r["id"])])
        links = []
        for chat_id, who in members.items():
            for u in who:
                peer = None if chat_id not in direct else (who[1] if u == who[0] else who[0])
                links.append((u, chat_id, peer, 0 if chat_id in direct else 1, now))
        _insert_txn(txn, "user_chats", ("user_id", "chat_id", "peer_id", "is_group", "joined_at"), links)
        return members, direct

    members, direct = await db.run("seed", chats)
    words = vocabulary(rng)
    cum = list(itertools.accumulate(1 / (rank + 1) ** ZIPF for rank in range(len(words))))
    chat_ids = list(members)
    # 60 % of the messages to the direct chats, 40 % to the groups.
    group_weight = 0.4 / 0.6 * len(direct) / max(1, len(members) - len(direct))
    chat_cum = list(itertools.accumulate(1.0 if c in direct else group_weight for c in chat_ids))
    counts: dict[str, int] = {}
    per_chat: dict[int, int] = {}
    batch = 50_000
    for start in range(0, args.messages, batch):
        rows = []
        for i, chat_id in enumerate(rng.choices(chat_ids, cum_weights=chat_cum, k=min(batch, args.messages - start))):
            who = members[chat_id]
            sender = rng.choice(who)
            if chat_id in direct:
                recipient, is_group = (who[1] if sender == who[0] else who[0]), 0
            else:
                recipient, is_group = chat_id, 1
            text = rng.choices(words, cum_weights=cum, k=rng.randint(3, 14))
            for w in set(text):
                counts[w] = counts.get(w, 0) + 1
            per_chat[chat_id] = per_chat.get(chat_id, 0) + 1
            rows.append(
                (
                    str(uuid.uuid4()),
                    chat_id,
                    sender,
                    recipient,
                    is_group,
                    "text",
                    " ".join(text),
                    now + (start + i) * 0.5,
                )
            )
        await db.run(
            "seed",
            _insert_txn,
            "messages",
            ("id", "chat_id", "sender_id", "recipient_id", "is_group", "type", "content", "created_at"),
            rows,
        )
        if db.dialect.batched_search_index:  # SQLite indexes in batches (migration 027): as the server would have
            while await db.run("seed", index_pending_txn):
                pass
        print(f"  {start + len(rows):>9,} messages, {time.perf_counter() - started:5.0f} s", flush=True)
    readable: dict[int, int] = {}
    for chat_id, who in members.items():
        for u in who:
            readable[u] = readable.get(u, 0) + per_chat.get(chat_id, 0)
    return World(users, members, direct, words, counts, readable)


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return f"p50 {statistics.median(samples):6.2f}  p99 {p99:6.2f}  max {samples[-1]:6.2f}"


async def timed(n: int, run: Callable[[int], Any]) -> tuple[list[float], list[int]]:
    times, found = [], []
    for i in range(n):
        started = time.perf_counter()
        result = await run(i)
        times.append((time.perf_counter() - started) * 1000)
        found.append(result)
    return times, found


async def explain(db: Database, user: int, word: str) -> None:
    storage = Storage(db)
    await storage.search.messages(user, [word])
    captured: list[tuple[str, tuple]] = []
    execute = Txn.execute

    def capture(txn: Txn, sql: str, params: Any = ()) -> Txn:
        if "search_vector" in sql or "messages_fts MATCH" in sql:
            captured.append((sql, tuple(params)))
        return execute(txn, sql, params)

    Txn.execute = capture  # type: ignore[method-assign]
    try:
        await storage.search.messages(user, [word])
    finally:
        Txn.execute = execute  # type: ignore[method-assign]
    sql, params = captured[0]
    prefix = "EXPLAIN QUERY PLAN " if db.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    rows = await db.run("explain", lambda txn: txn.execute(prefix + sql, params).fetchall())
    for r in rows:
        print("     ", r[-1] if db.dialect.name == "sqlite" else r[0])


async def bench(reactor: Any, name: str, db: Database, args: argparse.Namespace, vacuum: Callable[[], None]) -> None:
    await db.migrate()
    print(f"{name}: seeding", flush=True)
    started = time.perf_counter()
    world = await seed(db, args)
    vacuum()
    print(f"{name}: seeded {args.messages:,} messages in {time.perf_counter() - started:.0f} s", flush=True)
    ranked = sorted(world.counts, key=world.counts.get, reverse=True)
    common = ranked[0]
    middling = min(ranked, key=lambda w: abs(world.counts[w] - args.messages // 200))
    rare = min(ranked, key=lambda w: abs(world.counts[w] - args.rare_count))
    rng = random.Random(7)
    someone = [u for u in world.users if world.readable.get(u)]
    heaviest = max(world.readable, key=world.readable.get)
    lightest = sorted(someone, key=world.readable.get)[: args.queries]
    print(
        f"  users may read {statistics.median(world.readable.values()):,.0f} messages (median), "
        f"the heaviest {world.readable[heaviest]:,}, the {len(lightest)} lightest "
        f"{world.readable[lightest[0]]:,} to {world.readable[lightest[-1]]:,}",
        flush=True,
    )
    storage = Storage(db)
    for label, word in (("common", common), ("middling", middling), ("rare", rare)):
        print(f"  {label} word {word!r}: in {world.counts[word]:,} messages", flush=True)
        if args.explain:
            await explain(db, heaviest, word)
        askers = [rng.choice(someone) for _ in range(args.queries)]

        async def random_user(i: int, word: str = word, askers: list[int] = askers) -> int:
            return len((await storage.search.messages(askers[i % len(askers)], [word])).hits)

        await timed(20, random_user)  # warm-up

        async def heavy(i: int, word: str = word) -> int:
            return len((await storage.search.messages(heaviest, [word])).hits)

        async def light(i: int, word: str = word) -> int:
            return len((await storage.search.messages(lightest[i % len(lightest)], [word])).hits)

        for who, run in (("random users", random_user), ("heaviest user", heavy), ("lightest users", light)):
            times, found = await timed(args.queries, run)
            print(
                f"    storage, {who:<14} {percentiles(times)} ms  (hits/page: mean {statistics.mean(found):.1f})",
                flush=True,
            )
    config = parse_config({"ratelimits": {"enabled": False}})
    services = build_node(config, reactor, storage).services
    ctx = EventContext(services, _Socket(Identity(heaviest, "s", str(uuid.uuid4()), time.time() + 86400)))  # type: ignore[arg-type]
    for label, word in (("common", common), ("middling", middling), ("rare", rare)):

        async def handler(i: int, word: str = word) -> int:
            result = await _SEARCH.handler(ctx, _SEARCH.schema.validate({"query": word}))
            return len(result["results"])

        await timed(20, handler)
        times, found = await timed(args.queries, handler)
        print(f"    handler, heaviest user, {label} word: {percentiles(times)} ms", flush=True)
    db.close()


def _postgres(dsn: str) -> tuple[Database, Callable[[], None], Callable[[], None]]:
    """`postgres_schema`, and what autovacuum would have done by now: statistics, GIN's pending list merged."""
    import psycopg2

    schema = new_schema_name()
    db, drop = postgres_schema(dsn, 5, schema)

    def vacuum() -> None:
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {schema}.messages")
            cur.execute(f"ANALYZE {schema}.user_chats")
        conn.close()

    return db, vacuum, drop


async def main(reactor: Any) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per word and kind of user")
    parser.add_argument("--rare-count", type=int, default=100, help="the rare word is in about this many messages")
    parser.add_argument("--explain", action="store_true", help="print the plans (EXPLAIN ANALYZE on PostgreSQL)")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgres-only", action="store_true")
    args = parser.parse_args()
    if not args.postgres_only:
        folder = tempfile.mkdtemp(prefix="umoc-bench-search-")
        try:
            db = Database.sqlite(os.path.join(folder, "bench.sqlite3"), synchronous="normal")
            await bench(reactor, "SQLite", db, args, lambda: None)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    dsn = os.environ.get("UMOC_TEST_POSTGRES")
    if dsn and not args.sqlite_only:
        db, vacuum, drop = _postgres(dsn)
        try:
            await bench(reactor, "PostgreSQL", db, args, vacuum)
        finally:
            db.close()
            drop()
    elif not args.sqlite_only:
        print("PostgreSQL: skipped (UMOC_TEST_POSTGRES is not set)")


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
