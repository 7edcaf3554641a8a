"""How long does ``sync {cursor}`` take to replay 10,000 changes, and what does the feed add to send_message?

Reading: a user with ``--chats`` direct chats gets ``--changes`` messages
(sent through the real storage path, many in flight so they share commits),
then reads them all through the real ``sync`` route (schema, handler,
rendering, payloads; no sockets) from the cursor taken before, in pages of
100 and of 500.  Each read is timed ``--rounds`` times; the table shows the
median total and per page.

Writing: the real ``send_message`` route in alternating blocks with the
feed's row and without it (the baseline swaps the storage's `statements_with_change`/`with_change`
for the bare statement: exactly the feed's write left out, nothing else), 1
and 16 in flight, medians of the blocks, wall and this process's CPU time::

    /work/venv/bin/python bench/bench_sync.py [--changes 10000] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from typing import Any, Callable

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bench_reply import _SEND, _payload, _Socket  # noqa: E402
from bench.databases import on_each_database  # noqa: E402
from umoc.config import parse_config  # noqa: E402
from umoc.events import sync as sync_events  # noqa: E402
from umoc.events.router import EventContext  # noqa: E402
from umoc.records import Actor  # noqa: E402
from umoc.records.messages import NewMessage  # noqa: E402
from umoc.storage import Storage  # noqa: E402
from umoc.storage import messages as message_storage  # noqa: E402
from umoc.storage.database import Database, Txn  # noqa: E402
from umoc.transport.socketio import Identity  # noqa: E402
from umoc.wiring import build_node  # noqa: E402

_SYNC = next(route for route in sync_events.ROUTES if route.event == "sync")
_WITH_CHANGE = (message_storage.statements_with_change, message_storage.with_change)


def _statements_without_change(txn: Txn, sql: str, params: Any, change: Any) -> list[tuple[str, Any]]:
    """The baseline: the statement the feed's row rides on, without the row."""
    return [(sql, params)]


def _without_change(txn: Txn, sql: str, params: Any, change: Any) -> Txn:
    return txn.execute(sql, params)


_WITHOUT_CHANGE = (_statements_without_change, _without_change)


async def _gather(work: list[Callable[[], Any]], in_flight: int) -> None:
    pending = iter(work)

    async def worker() -> None:
        for make in pending:
            await make()

    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(in_flight)], consumeErrors=True)


async def _read_all(ctx: EventContext, cursor: str, limit: int) -> tuple[float, int, int]:
    """(seconds, changes, pages) to read everything after ``cursor``."""
    started, count, pages = time.perf_counter(), 0, 0
    while True:
        result = await _SYNC.handler(ctx, _SYNC.schema.validate({"cursor": cursor, "limit": limit}))
        count, pages, cursor = count + len(result["changes"]), pages + 1, result["cursor"]
        if not result["has_more"]:
            return time.perf_counter() - started, count, pages


async def _send_block(ctx: EventContext, recipient: int, n: int, in_flight: int) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()

    def one(i: int) -> Callable[[], Any]:
        return lambda: _SEND.handler(ctx, _SEND.schema.validate(_payload(recipient, False, f"message {i}")))

    await _gather([one(i) for i in range(n)], in_flight)
    return (time.perf_counter() - started) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def bench(reactor: Any, name: str, db: Database, args: argparse.Namespace) -> None:
    await db.migrate()
    storage = Storage(db)
    now = time.time()
    reader = (await storage.users.create("reader", "x", now)).id
    friends = [(await storage.users.create(f"f{i}", "x", now)).id for i in range(args.chats)]
    for friend in friends:
        await storage.contacts.request(friend, "reader", now)
        await storage.contacts.accept(reader, friend, now)
    services = build_node(parse_config({"ratelimits": {"enabled": False}}), reactor, storage).services
    start = await storage.feed.position()

    def post(i: int) -> Callable[[], Any]:
        sender = friends[i % len(friends)]
        return lambda: storage.messages.post(
            Actor.user(sender, f"f{i % len(friends)}"), NewMessage(reader, False, f"change {i}"), str(uuid.uuid4()), now
        )

    seeded = time.perf_counter()
    await _gather([post(i) for i in range(args.changes)], 32)
    print(
        f"  {name}: {args.changes} messages in {args.chats} chats seeded in {time.perf_counter() - seeded:.1f}s",
        flush=True,
    )
    # Statistics as autovacuum would have them by now (the planner picks ordered index scans then).
    await db.run("bench.analyze", lambda txn: txn.execute("ANALYZE"))
    ctx = EventContext(services, _Socket(Identity(reader, "reader", "s", now + 86400)))  # type: ignore[arg-type]
    for limit in (100, 500):
        samples = []
        for _ in range(args.rounds):
            seconds, count, pages = await _read_all(ctx, start, limit)
            assert count == args.changes, count
            samples.append(seconds)
        total = statistics.median(samples)
        print(
            f"  {name:<10} sync of {count} changes, pages of {limit:>3}: {total * 1000:7.0f} ms"
            f" ({pages} pages, {total / pages * 1000:5.1f} ms a page, {total / count * 1e6:5.1f} us a change)",
            flush=True,
        )

    # send_message with and without the feed's row, alternating blocks.
    me = EventContext(services, _Socket(Identity(friends[0], "f0", "s", now + 86400)))  # type: ignore[arg-type]
    for in_flight in (1, 16):
        times: dict[str, list[tuple[float, float]]] = {"feed": [], "none": []}
        for b in range(args.blocks + 1):
            order = [("feed", _WITH_CHANGE), ("none", _WITHOUT_CHANGE)]
            for label, (statements, single) in order if b % 2 == 0 else reversed(order):
                message_storage.statements_with_change = statements  # type: ignore[assignment]
                message_storage.with_change = single  # type: ignore[assignment]
                try:
                    sample = await _send_block(me, reader, args.per_block, in_flight)
                finally:
                    message_storage.statements_with_change, message_storage.with_change = _WITH_CHANGE
                if b:  # the first round warms up
                    times[label].append(sample)
        wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
        cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
        print(
            f"  {name:<10} send_message {in_flight:>2} in flight | wall us/msg: without {wall['none']:6.0f}"
            f"  with feed {wall['feed']:6.0f}  ratio {wall['feed'] / wall['none']:5.3f} | CPU us/msg: without"
            f" {cpu['none']:6.0f}  with feed {cpu['feed']:6.0f}  ratio {cpu['feed'] / cpu['none']:5.3f}",
            flush=True,
        )
    db.close()


async def main(reactor: Any) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--chats", type=int, default=20, help="direct chats the changes are spread over")
    parser.add_argument("--rounds", type=int, default=3, help="reads of everything, per page size")
    parser.add_argument("--blocks", type=int, default=10, help="send_message blocks of each kind")
    parser.add_argument("--per-block", type=int, default=200)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    await on_each_database(lambda name, db: bench(reactor, name, db, args), args.sqlite_only)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
