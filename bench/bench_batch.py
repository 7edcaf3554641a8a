"""PostgreSQL: a batch of direct messages statement by statement (`post_txn`) or in one call (`post_batch_txn`).

A plain psycopg2 loop on one connection, as ``bench_app.py``'s ``plain``
does, without the server: each transaction writes ``per_commit`` direct
messages between 100 friend pairs and commits, either through `post_txn`
message by message (five statements each) or through migration 018's
``post_messages`` (one statement for the lot).  Indicative only: the
numbers depend on the machine's load, which the output states.

    UMOC_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5432/test python bench/bench_batch.py [--seconds 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import seeding  # noqa: E402
from databases import CountingCursor  # noqa: E402

from umoc.ids import MessageIds  # noqa: E402
from umoc.records import Actor  # noqa: E402
from umoc.records.messages import NewMessage  # noqa: E402
from umoc.storage import database as dbmod  # noqa: E402
from umoc.storage.messages.write import post_batch_txn, post_txn  # noqa: E402

PAIRS = 100


def loop(
    conn: Any, txn: dbmod.Txn, cursor: CountingCursor, ids: list[int], per_commit: int, seconds: float
) -> tuple[float, float]:
    """Messages per second and statements per message (psycopg2's BEGIN and the COMMIT not counted).

    ``per_commit`` messages per transaction: through `post_batch_txn` if positive, `post_txn` if negative.
    """
    together = per_commit > 0
    per_commit = max(1, abs(per_commit))
    new_id = MessageIds().new
    sent = statements = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        calls = []
        for _ in range(per_commit):
            p = sent % PAIRS
            a, b = (ids[2 * p], ids[2 * p + 1]) if sent % 2 == 0 else (ids[2 * p + 1], ids[2 * p])
            calls.append((Actor.user(a, "bench"), NewMessage(b, False, "plain"), new_id(), time.time(), 0.0))
            sent += 1
        before = cursor.statements
        if together:
            for outcome in post_batch_txn(txn, calls):
                assert not isinstance(outcome, BaseException), outcome
        else:
            for call in calls:
                post_txn(txn, *call)
        statements += cursor.statements - before
        conn.commit()
    return sent / (time.perf_counter() - started), statements / sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dsn = os.environ.get("UMOC_TEST_POSTGRES")
    if not dsn:
        sys.exit("UMOC_TEST_POSTGRES is not set")
    import psycopg2

    schema = "umoc_bench_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    conn = psycopg2.connect(dsn, cursor_factory=dbmod._named_row_cursor(), options=f"-c search_path={schema}")
    try:
        cursor = CountingCursor(conn.cursor())
        txn = dbmod.Txn(cursor, dbmod.POSTGRES, (psycopg2.IntegrityError,))
        dbmod._migrate_txn(txn, dbmod._load_migrations(dbmod.POSTGRES))
        now = time.time()
        ids = seeding._users_txn(txn, "bench", 2 * PAIRS, now)
        for p in range(PAIRS):
            seeding._direct_chats_txn(txn, ids[2 * p], [ids[2 * p + 1]], now)
        txn.execute("ANALYZE")
        conn.commit()
        print(f"load average before: {os.getloadavg()}")
        # Negative: post_txn statement by statement; positive: post_batch_txn, one call per commit.
        for label, per_commit in (
            ("post_txn, commit each", -1),
            ("post_txn, 20 per commit", -20),
            ("post_txn, 100 per commit", -100),
            ("post_messages, 1 per call", 1),
            ("post_messages, 20 per call", 20),
            ("post_messages, 100 per call", 100),
        ):
            runs = [loop(conn, txn, cursor, ids, per_commit, args.seconds) for _ in range(args.repeats)]
            rate = statistics.median(r[0] for r in runs)
            each = ", ".join(f"{r[0]:.0f}" for r in runs)
            print(f"{label:30} {rate:8.0f} msgs/s  {runs[0][1]:5.2f} statements/msg  (runs: {each})")
        print(f"load average after: {os.getloadavg()}")
    finally:
        conn.close()
        admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


if __name__ == "__main__":
    main()
