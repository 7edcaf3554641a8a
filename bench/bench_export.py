"""GET /api/export and delete_account with erase on a long history: time and memory.

A real node (the whole Site, on 127.0.0.1 port 0) over SQLite, and over
PostgreSQL when ``UMOC_TEST_POSTGRES`` is set.  One user has sent
``--messages`` messages (seeded in bulk, half of a two-person history);
the export is downloaded over HTTP by treq in this same process, each
chunk counted and dropped.  The node's resident memory is sampled every
10 ms during the download: its growth over the value before the request
is what the streaming has to keep small.  Then the same user's account is
deleted with ``erase`` (batches of `Accounts.ERASE_BATCH`).

    python bench/bench_export.py --messages 200000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from typing import Any

import treq
from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.databases import on_each_database  # noqa: E402
from bench.seeding import Seeder  # noqa: E402
from umoc.config import parse_config
from umoc.credentials import new_token, token_digest
from umoc.service import UmocService
from umoc.storage import Storage
from umoc.storage.database import Database

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE


async def bench(reactor: Any, name: str, db: Database, messages: int) -> None:
    data_dir = tempfile.mkdtemp(prefix="umoc-bench-")
    config = parse_config({"server": {"listen": "tcp:0:interface=127.0.0.1", "data_dir": data_dir}})
    await db.migrate()
    seeder = Seeder(db)
    now = time.time()
    a, b = await seeder.users(f"x{uuid.uuid4().hex[:6]}", 2, now)
    started = time.perf_counter()
    await seeder.history(a, b, messages * 2, now)
    took = time.perf_counter() - started
    print(f"{name}: seeded {messages * 2} messages ({messages} by the exporter) in {took:.1f}s")
    storage = Storage(db)
    token = new_token()
    await storage.users.create_session(a, "bench-session", token_digest(token), now, now + 3600, 3)
    service = UmocService(config, reactor, storage=storage)
    service.startService()
    await service.ready
    try:
        port = service.port.getHost().port
        before = _rss()
        peak = [before]
        sampler = task.LoopingCall(lambda: peak.__setitem__(0, max(peak[0], _rss())))
        sampler.start(0.01)
        received = [0]
        started = time.perf_counter()
        response = await treq.get(
            f"http://127.0.0.1:{port}/api/export",
            headers={"X-Session-ID": "bench-session", "X-Session-Token": token},
            persistent=False,
            unbuffered=True,
        )
        tail = bytearray()

        def got(chunk: bytes) -> None:
            received[0] += len(chunk)
            tail[:] = (bytes(tail) + chunk)[-200:]

        await treq.collect(response, got)
        took = time.perf_counter() - started
        sampler.stop()
        assert response.code == 200 and bytes(tail).endswith(b"]}"), (response.code, bytes(tail))
        print(
            f"{name}: export of {messages} messages: {received[0] / 1e6:.1f} MB in {took:.1f}s "
            f"({messages / took:,.0f} messages/s); RSS before {before / 1e6:.0f} MB, "
            f"peak during +{(peak[0] - before) / 1e6:.1f} MB"
        )
        accounts = service.node.services.accounts
        started = time.perf_counter()
        deleted = await accounts.delete(a, True, "bench")
        took = time.perf_counter() - started
        erased = await db.run(
            "count", lambda t: t.scalar("SELECT COUNT(*) FROM messages WHERE sender_id = ? AND type = 'erased'", (a,))
        )
        print(
            f"{name}: delete with erase: {erased} messages erased in {took:.1f}s "
            f"({erased / max(took, 1e-9):,.0f}/s, batches of {accounts.ERASE_BATCH}); "
            f"{len(deleted.sessions)} session ended"
        )
    finally:
        await service.stopService()


async def main(reactor: Any) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="messages the exporting user sent")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    await on_each_database(lambda name, db: bench(reactor, name, db, args.messages), args.sqlite_only)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
