"""SQLite: the group-commit transaction of direct messages in a plain loop, statements counted (issue 25).

    python bench/bench_post_sqlite.py                    # batches of 1, 20, 100; 5 repeats, medians
    python bench/bench_post_sqlite.py --repeats 3 --messages 3000

No server, reactor or threads: one ``sqlite3`` connection opened as the
server opens its writer (WAL, ``synchronous=FULL``), a database seeded with
200 users in 100 friend pairs, and each batch written as the group commit
writes it (`umoc.storage.batching._batch_txn`: ``BEGIN IMMEDIATE``, the
batch's savepoint, each ``messages.post`` item, or the batch's posts in one
call of their ``together`` where the dialect has one), then ``COMMIT``.

Statements are counted with ``sqlite3``'s trace callback: each statement
the driver runs (``BEGIN``, ``SAVEPOINT`` and ``COMMIT`` included) and,
apart, each trigger program SQLite runs inside a statement
(``-- TRIGGER``).  Printed per message, with the median msgs/s over the
repeats and the load average, since the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from umoc.ids import MessageIds  # noqa: E402
from umoc.records import Actor  # noqa: E402
from umoc.records.messages import NewMessage  # noqa: E402
from umoc.storage import database as dbmod  # noqa: E402
from umoc.storage.batching import _batch_txn, _Item  # noqa: E402

try:
    from umoc.storage.messages import post_together
except ImportError:  # before issue 25's SQLite batch: each post by itself

    def post_together(dialect: Any, new: Any) -> Any:
        return None


from umoc.storage.messages.write import post_txn  # noqa: E402

sys.path.insert(0, HERE)
import seeding  # noqa: E402

PAIRS = 100
TEXT = "hello there, this is a short chat message"


class Counter:
    """The trace callback: statements the driver ran and trigger programs inside them."""

    def __init__(self) -> None:
        self.statements = 0
        self.triggers = 0
        #: CPU seconds of this process (the statements, SQLite and Python; not the fsync's wait).
        self.cpu = 0.0

    def __call__(self, sql: str) -> None:
        if sql.startswith("--"):
            self.triggers += 1
        else:
            self.statements += 1


def open_seeded(path: str) -> tuple[sqlite3.Connection, dbmod.Txn, list[int]]:
    conn = sqlite3.connect(path, check_same_thread=False)
    dbmod._sqlite_open("full", conn)
    txn = dbmod.Txn(conn.cursor(), dbmod.SQLITE, (sqlite3.IntegrityError,))
    now = time.time()
    txn.begin()
    dbmod._migrate_txn(txn, dbmod._load_migrations(dbmod.SQLITE))
    ids = seeding._users_txn(txn, "bench", 2 * PAIRS, now)
    for p in range(PAIRS):
        seeding._direct_chats_txn(txn, ids[2 * p], [ids[2 * p + 1]], now)
    txn.execute("ANALYZE")
    conn.commit()
    return conn, txn, ids


def run(
    conn: sqlite3.Connection, txn: dbmod.Txn, ids: list[int], per_batch: int, messages: int
) -> tuple[float, Counter]:
    """``messages`` direct messages in batches of ``per_batch``: (msgs/s, the counter)."""
    names = {uid: f"bench{i}" for i, uid in enumerate(ids)}
    new_id = MessageIds().new
    together = post_together(dbmod.SQLITE, NewMessage(ids[1], False, TEXT))
    counter = Counter()
    conn.set_trace_callback(counter)
    sent = 0
    cpu = time.process_time()
    started = time.perf_counter()
    while sent < messages:
        items = []
        for _ in range(per_batch):
            p = sent % PAIRS
            a, b = (ids[2 * p], ids[2 * p + 1]) if (sent // PAIRS) % 2 == 0 else (ids[2 * p + 1], ids[2 * p])
            args: tuple[Any, ...] = (Actor.user(a, names[a]), NewMessage(b, False, TEXT), new_id(), time.time(), 0.0)
            items.append(_Item("messages.post", post_txn, args, 0.0, together))
            sent += 1
        outcomes = _batch_txn(txn, items, (), ())
        conn.commit()
        counter.statements += 1  # COMMIT, sent by the driver without a trace
        failed = [o for o in outcomes if not isinstance(o, tuple)]
        if failed:
            raise SystemExit(f"refused: {failed[0]}")
    elapsed = time.perf_counter() - started
    counter.cpu = time.process_time() - cpu
    conn.set_trace_callback(None)
    return sent / elapsed, counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000, help="per run and batch size")
    parser.add_argument("--batches", default="1,20,100")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="umoc-post-") as folder:
        conn, txn, ids = open_seeded(os.path.join(folder, "bench.db"))
        # A warm-up: every sender's first message of the day (the streak) is behind us.
        run(conn, txn, ids, 100, 2 * PAIRS)
        sizes = [int(s) for s in args.batches.split(",")]
        rates: dict[int, list[float]] = {n: [] for n in sizes}
        cpus: dict[int, list[float]] = {n: [] for n in sizes}
        counts: dict[int, Counter] = {}
        for _ in range(args.repeats):
            for n in sizes:  # interleaved, so every size sees the same noise
                rate, counts[n] = run(conn, txn, ids, n, args.messages)
                rates[n].append(rate)
                cpus[n].append(counts[n].cpu / args.messages * 1e6)
        conn.close()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.repeats} repeats of {args.messages}")
    print("batch  statements/msg  fts5 inner/msg  CPU us/msg median  msgs/s median  (min-max)")
    for n in sizes:
        c = counts[n]
        r = rates[n]
        print(
            f"{n:5d}  {c.statements / args.messages:14.2f}  {c.triggers / args.messages:14.2f}"
            f"  {statistics.median(cpus[n]):17.0f}  {statistics.median(r):13,.0f}  ({min(r):,.0f}-{max(r):,.0f})"
        )


if __name__ == "__main__":
    main()
