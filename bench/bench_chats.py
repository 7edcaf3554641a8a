"""How fast are get_chats (1,000 chats) and get_chat_history (a 100,000-message chat)?

Runs the real event handlers against a real database (SQLite in a temp
file; PostgreSQL too when UMOC_TEST_POSTGRES is set), seeded in bulk, and
prints latency percentiles and the number of SQL statements per call::

    /work/venv/bin/python bench/bench_chats.py [--chats 1000] [--messages 100000] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seeding import Seeder  # noqa: E402

from bench.databases import on_each_database  # noqa: E402
from umoc.config import Config  # noqa: E402
from umoc.events import chats as chat_events  # noqa: E402
from umoc.events.router import EventContext  # noqa: E402
from umoc.storage import Storage  # noqa: E402
from umoc.storage.database import Database, Txn  # noqa: E402
from umoc.transport.socketio import Identity  # noqa: E402
from umoc.wiring import build_node  # noqa: E402


@dataclass
class _Socket:
    """Just what `EventContext` reads from a socket."""

    identity: Identity

    @property
    def user_id(self) -> int:
        return self.identity.user_id


class _QueryCounter:
    """Counts statements run through `Txn` (the database still runs them)."""

    def __init__(self) -> None:
        self.count = 0
        self._execute = Txn.execute

        def counting(txn: Txn, sql: str, params: Any = ()) -> Txn:
            self.count += 1
            return self._execute(txn, sql, params)

        Txn.execute = counting  # type: ignore[method-assign]


async def _timed(fn: Callable[[], Awaitable[Any]], runs: int, counter: _QueryCounter) -> tuple[list[float], int, Any]:
    result = await fn()  # warm caches
    times = []
    counter.count = 0
    for _ in range(runs):
        started = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - started) * 1000)
    return times, counter.count // runs, result


def _line(label: str, times: list[float], queries: int) -> str:
    p95 = sorted(times)[max(0, int(len(times) * 0.95) - 1)]
    return f"  {label:<44} median {statistics.median(times):8.2f} ms   p95 {p95:8.2f} ms   {queries} queries/call"


async def bench(
    reactor: Any, name: str, db: Database, chats: int, messages: int, runs: int, counter: _QueryCounter
) -> None:
    await db.migrate()
    storage = Storage(db)
    seeder = Seeder(db)
    now = time.time() - 86400
    started = time.perf_counter()
    (me,) = await seeder.users("benchme", 1, now)
    peers = await seeder.users("benchpeer", chats, now)
    await seeder.direct_chats(me, peers, 3, now)
    (talker,) = await seeder.users("benchtalker", 1, now)
    await seeder.history(me, talker, messages, now)
    seeded = time.perf_counter() - started
    print(f"{name}: seeded {chats} chats and a {messages}-message chat in {seeded:.1f} s")

    services = build_node(Config(), reactor, storage).services
    ctx = EventContext(services, _Socket(Identity(me, "benchme0", str(uuid.uuid4()), now + 86400)))  # type: ignore[arg-type]

    times, queries, result = await _timed(lambda: chat_events.get_chats(ctx, {}), runs, counter)
    assert len(result) == chats + 1, len(result)
    print(_line(f"get_chats ({len(result)} chats)", times, queries))

    total_pages = -(-messages // 20)
    for page in sorted({1, min(100, total_pages), max(1, total_pages // 2), total_pages}):
        payload = {"chat_id": talker, "is_group": False, "page": page, "page_size": 20}
        times, queries, result = await _timed(lambda p=payload: chat_events.get_chat_history(ctx, p), runs, counter)
        assert result["total_messages"] == messages and result["messages"], result["total_messages"]
        print(_line(f"get_chat_history page {page}/{total_pages} (20/page)", times, queries))
    payload = {"chat_id": talker, "is_group": False, "page": 1, "page_size": 100}
    times, queries, _ = await _timed(lambda: chat_events.get_chat_history(ctx, payload), runs, counter)
    print(_line("get_chat_history page 1 (100/page)", times, queries))
    db.close()


async def main(reactor: Any) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    counter = _QueryCounter()
    await on_each_database(
        lambda name, db: bench(reactor, name, db, args.chats, args.messages, args.runs, counter), max_connections=2
    )


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
