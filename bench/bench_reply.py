"""What do a reply and mentions add to send_message?

Runs the real ``send_message`` route (schema validation, then the handler:
permission check, insert, counters, reply target, mentions, commit ->
``new_message`` encoded for the hub) against a real database: SQLite in a temp file, and
PostgreSQL too when UMOC_TEST_POSTGRES is set.  Plain messages and messages
with ``reply_to`` and ``mentions`` are sent in alternating blocks in the same
run, so drift and noise hit both alike; each block's mean is one sample and
the table shows the medians and their ratio::

    /work/venv/bin/python bench/bench_reply.py [--blocks 12] [--per-block 200] [--in-flight 1,16]

Two chats: a direct chat (the reply mentions the friend) and a group of
``--members`` (the reply mentions three members).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.databases import on_each_database  # noqa: E402
from umoc.config import parse_config  # noqa: E402
from umoc.events import messages as message_events  # noqa: E402
from umoc.events.router import EventContext  # noqa: E402
from umoc.storage import Storage  # noqa: E402
from umoc.storage.database import Database  # noqa: E402
from umoc.transport.socketio import Identity  # noqa: E402
from umoc.wiring import build_node  # noqa: E402


@dataclass
class _Socket:
    """Just what `EventContext` reads from a socket."""

    identity: Identity

    @property
    def user_id(self) -> int:
        return self.identity.user_id


async def _block(ctx: EventContext, payloads: list[dict[str, Any]], in_flight: int) -> tuple[float, float]:
    """Send every payload, ``in_flight`` at a time; (wall, this process's CPU) microseconds per message.

    CPU time counts the reactor and SQLite's thread (not PostgreSQL's server):
    on a busy machine it moves far less than wall time.
    """
    started, cpu = time.perf_counter(), time.process_time()
    pending = iter(payloads)

    async def worker() -> None:
        for payload in pending:
            await _SEND.handler(ctx, _SEND.schema.validate(payload))

    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(in_flight)], consumeErrors=True)
    n = len(payloads)
    return (time.perf_counter() - started) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def _compare(
    ctx: EventContext,
    plain: Callable[[int], dict[str, Any]],
    rich: Callable[[int], dict[str, Any]],
    blocks: int,
    per_block: int,
    in_flight: int,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median (wall, CPU) microseconds per message of each kind, blocks alternating (plain first, then rich first)."""
    await _block(ctx, [plain(i) for i in range(per_block // 4)], in_flight)  # warm-up
    await _block(ctx, [rich(i) for i in range(per_block // 4)], in_flight)
    plain_times, rich_times = [], []
    for b in range(blocks):
        order = [(plain, plain_times), (rich, rich_times)]
        for make, times in order if b % 2 == 0 else reversed(order):
            times.append(await _block(ctx, [make(i) for i in range(per_block)], in_flight))

    def medians(times: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)

    return medians(plain_times), medians(rich_times)


async def bench(reactor: Any, name: str, db: Database, args: argparse.Namespace) -> list[str]:
    await db.migrate()
    storage = Storage(db)
    now = time.time()
    users = [(await storage.users.create(f"b{i}", "x", now)).id for i in range(args.members)]
    me, friend = users[0], users[1]
    for other in users[1:]:
        await storage.contacts.request(me, f"b{users.index(other)}", now)
        await storage.contacts.accept(other, me, now)
    group = await storage.groups.create(me, "bench", None, users[1:], now, args.members)
    config = parse_config({"ratelimits": {"enabled": False}})
    services = build_node(config, reactor, storage).services
    ctx = EventContext(services, _Socket(Identity(me, "b0", str(uuid.uuid4()), now + 86400)))  # type: ignore[arg-type]
    rows = []
    for label, recipient, is_group, mentions in (
        ("direct", friend, False, [friend]),
        (f"group of {args.members}", group, True, users[1:4]),
    ):
        first = await _SEND.handler(ctx, _SEND.schema.validate(_payload(recipient, is_group, "a message to reply to")))
        target = first["message_id"]

        def plain(i: int, recipient: int = recipient, is_group: bool = is_group) -> dict[str, Any]:
            return _payload(recipient, is_group, f"message {i}")

        def rich(
            i: int,
            recipient: int = recipient,
            is_group: bool = is_group,
            mentions: list[int] = mentions,
            target: str = target,
        ) -> dict[str, Any]:
            return _payload(recipient, is_group, f"message {i}", reply_to=target, mentions=mentions)

        for in_flight in args.in_flight:
            (base, base_cpu), (extra, extra_cpu) = await _compare(
                ctx, plain, rich, args.blocks, args.per_block, in_flight
            )
            rows.append(
                f"  {name:<10} {label:<12} {in_flight:>3} in flight | wall us/msg: plain {base:6.0f}"
                f"  reply+mentions {extra:6.0f}  ratio {extra / base:5.3f} | CPU us/msg: plain {base_cpu:6.0f}"
                f"  reply+mentions {extra_cpu:6.0f}  ratio {extra_cpu / base_cpu:5.3f}"
            )
            print(rows[-1], flush=True)
    db.close()
    return rows


_SEND = next(route for route in message_events.ROUTES if route.event == "send_message")


def _payload(recipient: int, is_group: bool, content: str, **extra: Any) -> dict[str, Any]:
    """What a client sends."""
    return {"recipient_id": recipient, "content": content, "is_group": is_group, "type": "text", **extra}


async def main(reactor: Any) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=12, help="blocks of each kind (alternating)")
    parser.add_argument("--per-block", type=int, default=200, help="messages per block")
    parser.add_argument("--members", type=int, default=50, help="group size")
    parser.add_argument("--in-flight", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    await on_each_database(lambda name, db: bench(reactor, name, db, args), args.sqlite_only)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
