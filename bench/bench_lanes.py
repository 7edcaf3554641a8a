"""PostgreSQL: the group commit alone, closed loop: messages/s, batches/s, batch size, lanes in flight (issue 25).

No sockets, no router: ``Storage.messages.post`` through the node's own
`Database.postgres` (pool 1..5, so four write lanes) with ``--in-flight``
sends outstanding at every moment, direct messages between ``--pairs``
friend pairs of neighbouring user ids (as ``bench_app.py``'s), each answer
starting the next send.  What it shows is the storage side of
``bench_app.py``'s direct run: how many batches the lanes run at once, how
big they get and what the process spends per message (its CPU time over
the messages, the database's threads and the reactor together; the
PostgreSQL backends are not counted).  Timing figures depend on the
machine's load, which is printed; compare trees run one after the other.

    UMOC_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5432/test python bench/bench_lanes.py [--in-flight 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import seeding  # noqa: E402
from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from umoc.records import Actor  # noqa: E402
from umoc.records.messages import NewMessage  # noqa: E402
from umoc.storage import Storage  # noqa: E402
from umoc.storage.database import Database, Txn  # noqa: E402


async def run(db: Database, pairs: int, in_flight: int, seconds: float) -> str:
    await db.migrate()
    now = time.time()

    def seed_txn(txn: Txn) -> list[int]:
        ids = seeding._users_txn(txn, "lane", 2 * pairs, now)
        for p in range(pairs):
            seeding._direct_chats_txn(txn, ids[2 * p], [ids[2 * p + 1]], now)
        txn.execute("ANALYZE")
        return ids

    ids = await db.run("bench.seed", seed_txn)
    storage = Storage(db)
    writer = db.writer
    answered, stopping, running = [0], [False], [0, 0]

    def send(i: int) -> None:
        if stopping[0]:
            return
        p = i % pairs
        a, b = (ids[2 * p], ids[2 * p + 1]) if (i // pairs) % 2 == 0 else (ids[2 * p + 1], ids[2 * p])
        d = storage.messages.post(Actor.user(a, "lane"), NewMessage(b, False, "plain words"), uuid.uuid4().hex, now)
        running[0] += sum(writer._busy)  # `BatchWriter.running`, also on trees before it
        running[1] += 1

        def next_one(result: Any) -> None:
            if isinstance(result, Failure):
                print(result.getErrorMessage())
            answered[0] += 1
            send(i + in_flight)

        d.addBoth(next_one)

    for i in range(in_flight):
        send(i)
    await task.deferLater(reactor, 1.0, lambda: None)  # warm-up
    n0, b0, i0, r0 = answered[0], writer.batches, writer.items, list(running)
    c0, t0 = time.process_time(), time.perf_counter()
    await task.deferLater(reactor, seconds, lambda: None)
    n1, b1, i1, r1 = answered[0], writer.batches, writer.items, list(running)
    c1, t1 = time.process_time(), time.perf_counter()
    stopping[0] = True
    await task.deferLater(reactor, 1.0, lambda: None)  # the last batches drain
    wall = t1 - t0
    batch = (i1 - i0) / max(1, b1 - b0)
    return (
        f"{(n1 - n0) / wall:7.0f} msgs/s  {(b1 - b0) / wall:5.0f} batches/s  mean batch {batch:5.1f}"
        f"  lanes running at a send {(r1[0] - r0[0]) / max(1, r1[1] - r0[1]):4.2f}"
        f"  process CPU {1e6 * (c1 - c0) / max(1, n1 - n0):5.0f} us/msg  load {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=100)
    args = parser.parse_args()
    dsn = os.environ.get("UMOC_TEST_POSTGRES")
    if not dsn:
        sys.exit("UMOC_TEST_POSTGRES is not set")
    import psycopg2

    schema = "umoc_bench_lanes_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    db = Database.postgres(dsn, 1, 5, schema=schema)

    async def body() -> None:
        try:
            print(await run(db, args.pairs, args.in_flight, args.seconds))
        finally:
            db.close()
            admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
            admin.close()

    task.react(lambda _: defer.ensureDeferred(body()))


if __name__ == "__main__":
    main()
