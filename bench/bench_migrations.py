"""How long each migration that touches every message takes, on a database of ``--messages`` messages.

The numbers behind the operator guide's "Heavy migrations" table.  A
database is migrated to 009, seeded with 200 users in 100 direct chats and
``--messages`` text messages (half delivered, a quarter read); after 011,
one feed row per message is added (what a server writes as it goes); each
later migration is then applied alone, in its own transaction as a node's
start-up would, and timed.  Indicative only: the machine's load changes
them, which is why the output states it.

    UMOC_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5432/test python bench/bench_migrations.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from twisted.internet import defer, task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from databases import on_each_database  # noqa: E402

from umoc.storage.database import Database, Txn  # noqa: E402
from umoc.storage.engine.migrations import _load_migrations, _migrate_txn  # noqa: E402

T0 = 1_700_000_000.0
#: Seeded before this version (the schema the seed's columns belong to), feed rows after FEED.
SEED_AT, FEED = 9, 11


def _numbers(count: int) -> str:
    """A recursive CTE of 1..count both databases accept in front of INSERT ... SELECT."""
    return f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {int(count)}) "


def _seed_txn(txn: Txn, messages: int) -> None:
    txn.execute(
        _numbers(200) + "INSERT INTO users (username, password_hash, created_at) SELECT 'u' || i, 'x', ? FROM n",
        (T0,),
    )
    txn.execute(
        _numbers(100) + "INSERT INTO chats (is_group, user_lo, user_hi, created_at, last_activity)"
        " SELECT 0, 2 * i - 1, 2 * i, ?, ? FROM n",
        (T0, T0),
    )
    txn.execute(
        _numbers(200) + "INSERT INTO user_chats (user_id, chat_id, peer_id, is_group, joined_at)"
        " SELECT i, (i + 1) / 2, CASE WHEN i % 2 = 1 THEN i + 1 ELSE i - 1 END, 0, ? FROM n",
        (T0,),
    )
    txn.execute(
        _numbers(messages) + "INSERT INTO messages"
        " (id, chat_id, sender_id, recipient_id, is_group, type, content, created_at, delivered_at)"
        " SELECT 'm' || i, 1 + i % 100, 2 * (1 + i % 100) - i % 2, 2 * (1 + i % 100) - 1 + i % 2, 0, 'text',"
        " 'message ' || i || ' about the quarterly report, lunch plans and the release', ? + i,"
        " CASE WHEN i % 2 = 0 THEN ? + i + 1 ELSE NULL END FROM n",
        (T0, T0),
    )
    txn.execute(
        "INSERT INTO message_reads (message_seq, user_id, read_at)"
        " SELECT seq, recipient_id, created_at + 2 FROM messages WHERE seq % 4 = 0"
    )


def _feed_txn(txn: Txn) -> None:
    txn.execute(
        "INSERT INTO changes (chat_id, kind, message_seq, actor_id, created_at)"
        " SELECT chat_id, 'message', seq, sender_id, created_at FROM messages ORDER BY seq"
    )


async def measure(name: str, db: Database, messages: int) -> None:
    migrations = _load_migrations(db.dialect)
    try:
        await db.run("bench.migrate", _migrate_txn, [m for m in migrations if m.version <= SEED_AT])
        started = time.perf_counter()
        await db.run("bench.seed", _seed_txn, messages)
        print(f"{name}: seeded {messages} messages in {time.perf_counter() - started:.1f} s")
        for migration in migrations:
            if migration.version <= SEED_AT:
                continue
            started = time.perf_counter()
            await db.run("bench.migrate", _migrate_txn, [m for m in migrations if m.version <= migration.version])
            print(f"{name}: migration {migration.version:03d} {time.perf_counter() - started:7.2f} s")
            if migration.version == FEED:
                await db.run("bench.feed", _feed_txn)
    finally:
        db.close()


async def main(reactor: object, messages: int) -> None:
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    await on_each_database(lambda name, db: measure(name, db, messages))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, args.messages)))
