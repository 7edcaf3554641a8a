"""What do threads cost: send rate in a group of 1,000 with 20% of messages in threads, and get_chats?

Runs the real ``send_message`` and ``get_chats`` handlers (schema, command,
storage, commit, ``new_message`` / ``thread_updated`` encoded for the hub)
against a real database: SQLite in a temp file, and PostgreSQL too when
UMOC_TEST_POSTGRES is set.  One group of ``--members`` (the owner's friends,
seeded in bulk; the owner also has a direct chat with each, so ``get_chats``
lists ``--members`` chats).  ``--roots`` messages start threads; then blocks
of plain messages and blocks where ``--thread-share`` of the messages are
replies (to random roots, from ``--senders`` rotating members) alternate, so
drift and noise hit both alike; each block's mean is one sample.  Besides
the ratio of the two kinds' median blocks it prints the median (and
quartiles) of each block pair's ratio, a block against its neighbour of the
other kind: on a machine whose speed drifts, that is the steadier figure,
and ``--thread-share 0`` (both kinds the same sends) shows how far it
spreads with no difference at all::

    python bench/bench_threads.py [--members 1000] [--blocks 8] [--per-block 200] [--in-flight 1,16]

``get_chats`` of the owner (every chat listed; the owner follows every
thread, as the sender of its root) is timed before the sends and after all
the blocks.  The two differ by the thousands of messages sent as much as by
the threads: compare the "after" of a run with ``--thread-share 0`` (the
same sends, none in threads) to isolate what threads cost it.
"""

from __future__ import annotations

import argparse
import os
import random
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
from umoc.config import parse_config  # noqa: E402
from umoc.events import chats as chat_events  # noqa: E402
from umoc.events import messages as message_events  # noqa: E402
from umoc.events.router import EventContext  # noqa: E402
from umoc.records.groups import NewGroup  # noqa: E402
from umoc.storage import Storage  # noqa: E402
from umoc.storage.database import Database  # noqa: E402
from umoc.transport.socketio import Identity  # noqa: E402
from umoc.wiring import build_node  # noqa: E402


@dataclass
class _Socket:
    """Just what `EventContext` reads from a socket."""

    identity: Identity
    remote_ip: str = "127.0.0.1"

    @property
    def user_id(self) -> int:
        return self.identity.user_id


_SEND = next(route for route in message_events.ROUTES if route.event == "send_message")


async def _block(sends: list[tuple[EventContext, dict[str, Any]]], in_flight: int) -> tuple[float, float]:
    """Every send, ``in_flight`` at a time; (wall, this process's CPU) microseconds per message."""
    started, cpu = time.perf_counter(), time.process_time()
    pending = iter(sends)

    async def worker() -> None:
        for ctx, payload in pending:
            await _SEND.handler(ctx, _SEND.schema.validate(payload))

    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(in_flight)], consumeErrors=True)
    n = len(sends)
    return (time.perf_counter() - started) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def _timed(fn: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    """Median and p95 milliseconds of ``fn`` over ``runs`` calls (after one to warm up)."""
    await fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), sorted(times)[max(0, int(len(times) * 0.95) - 1)]


@dataclass
class GroupBench:
    """A migrated database with a group of ``size`` (the owner's friends) and a node's services over it."""

    owner: int
    members: list[int]
    group: int
    context: Callable[[int], EventContext]


async def seeded_group(reactor: Any, db: Database, size: int) -> GroupBench:
    """Migrate ``db``, seed a group of ``size`` in bulk (the owner has a direct chat with each), build a node."""
    await db.migrate()
    storage = Storage(db)
    seeder = Seeder(db)
    now = time.time()
    (owner,) = await seeder.users("benchowner", 1, now)
    members = await seeder.users("benchmember", size - 1, now)
    await seeder.direct_chats(owner, members, 0, now)
    group = await storage.groups.create(owner, NewGroup("bench", None, tuple(members)), now, size)
    config = parse_config({"ratelimits": {"enabled": False}, "messages": {"max_group_members": size}})
    services = build_node(config, reactor, storage).services

    def context(user_id: int) -> EventContext:
        """What a handler gets from a socket of ``user_id``'s."""
        identity = Identity(user_id, f"u{user_id}", str(uuid.uuid4()), now + 86400)
        return EventContext(services, _Socket(identity))  # type: ignore[arg-type]

    return GroupBench(owner, members, group, context)


async def bench(reactor: Any, name: str, db: Database, args: argparse.Namespace) -> list[str]:
    started = time.perf_counter()
    seeded = await seeded_group(reactor, db, args.members)
    owner, members, group, context = seeded.owner, seeded.members, seeded.group, seeded.context
    print(f"{name}: seeded a group of {args.members} in {time.perf_counter() - started:.1f} s", flush=True)

    owner_ctx = context(owner)
    senders = [context(u) for u in members[: args.senders]]
    rows: list[str] = []

    async def get_chats() -> Any:
        return await chat_events.get_chats(owner_ctx, {})

    before = await _timed(get_chats, args.runs)
    roots = []
    for i in range(args.roots):
        sent = await _SEND.handler(owner_ctx, _SEND.schema.validate(_payload(group, f"topic {i}")))
        roots.append(sent["message_id"])
    rng = random.Random(30)

    def plain(i: int) -> tuple[EventContext, dict[str, Any]]:
        return senders[i % len(senders)], _payload(group, f"message {i}")

    def mixed(i: int) -> tuple[EventContext, dict[str, Any]]:
        if rng.random() < args.thread_share:
            return senders[i % len(senders)], _payload(group, f"reply {i}", thread_id=rng.choice(roots))
        return plain(i)

    for in_flight in args.in_flight:
        await _block([plain(i) for i in range(args.per_block // 4)], in_flight)  # warm-up
        await _block([mixed(i) for i in range(args.per_block // 4)], in_flight)
        plain_times: list[tuple[float, float]] = []
        mixed_times: list[tuple[float, float]] = []
        for b in range(args.blocks):
            order = [(plain, plain_times), (mixed, mixed_times)]
            for make, times in order if b % 2 == 0 else reversed(order):
                times.append(await _block([make(i) for i in range(args.per_block)], in_flight))
        base, base_cpu = (statistics.median(t[k] for t in plain_times) for k in (0, 1))
        extra, extra_cpu = (statistics.median(t[k] for t in mixed_times) for k in (0, 1))
        # Each block against its neighbour of the other kind: the machine's drift (clock speed, neighbours)
        # moves both alike, so these ratios spread far less than the blocks' own times.
        paired = sorted(p[0] / m[0] for p, m in zip(plain_times, mixed_times, strict=True))
        quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
        rows.append(
            f"  {name:<10} group of {args.members} {in_flight:>3} in flight | msgs/s: plain {1e6 / base:6.0f}"
            f"  {args.thread_share:.0%} in threads {1e6 / extra:6.0f}  threads/plain {base / extra:5.3f}"
            f" (pairs: median {statistics.median(paired):5.3f}, quartiles {quartiles[0]:5.3f}-{quartiles[2]:5.3f})"
            f" | CPU us/msg: plain {base_cpu:6.0f}  threads {extra_cpu:6.0f}"
        )
        print(rows[-1], flush=True)
    after = await _timed(get_chats, args.runs)
    listed = await get_chats()
    unread = next(c["unread_count"] for c in listed if c["is_group"])
    rows.append(
        f"  {name:<10} get_chats ({len(listed)} chats): before the sends median {before[0]:.2f} ms p95"
        f" {before[1]:.2f} ms; after them ({args.thread_share:.0%} in threads, {unread} unread in the group)"
        f" median {after[0]:.2f} ms p95 {after[1]:.2f} ms"
    )
    print(rows[-1], flush=True)
    db.close()
    return rows


def _payload(group: int, content: str, **extra: Any) -> dict[str, Any]:
    """What a client sends."""
    return {"recipient_id": group, "content": content, "is_group": True, "type": "text", **extra}


async def main(reactor: Any) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000, help="group size (and the owner's chats)")
    parser.add_argument("--senders", type=int, default=20, help="members who send, in turn")
    parser.add_argument("--roots", type=int, default=50, help="messages whose threads get the replies")
    parser.add_argument("--thread-share", type=float, default=0.2, help="share of thread replies in a mixed block")
    parser.add_argument("--blocks", type=int, default=8, help="blocks of each kind (alternating)")
    parser.add_argument("--per-block", type=int, default=200, help="messages per block")
    parser.add_argument("--runs", type=int, default=30, help="get_chats calls timed, before and after")
    parser.add_argument("--in-flight", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    await on_each_database(lambda name, db: bench(reactor, name, db, args), args.sqlite_only)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
