"""The whole ``send_message`` path of one node in instructions, under callgrind (issue 25).

    python bench/bench_hotpath.py                    # every workload under callgrind: instructions per message
    python bench/bench_hotpath.py --only app_send16_sqlite
    python bench/bench_hotpath.py --once WORKLOAD N  # one run, no valgrind (what the driver runs under it)
    python bench/bench_hotpath.py --profile WORKLOAD N   # cProfile of N messages after the warm-up, by own time

`bench_wire.py` counts the transport; this counts everything a node does
for one persisted 1:1 message, as `bench_app.py` drives it but without the
neighbours' noise: a real node (``build_node``: `UmocSocketApp`, the
router, the domain command, storage with its group-commit writer, the hub)
on a fresh database, its users friends in pairs, each user with one
WebSocket connected through the node's real HTTP site on an in-memory
transport (as in ``bench_wire``: Autobahn's protocol, Engine.IO, Socket.IO,
a real session checked by ``authenticate``).  Each round, every socket
writes one masked ``42N["send_message",{...}]`` frame to its friend in the
same reactor turn; the round ends when the router is idle and every ack
and every ``new_message`` (to the sender's and the friend's socket) has
reached the transports, checked.

What is counted is the whole process: the reactor thread (frames, router,
command, notices, hub, encoding, acks) and the database thread (the batch
transaction, the driver, SQLite itself); for PostgreSQL the server's own
work is in its own processes and is not counted, which is what we want:
the node's CPU per message.  Rounds run on the real reactor, so the few
reactor turns that wait for the database thread vary by a little from run
to run (a few thousand instructions a round); the batches do not: the
first send of a round starts a batch alone, the rest of the round queue
behind it and make the next one.

Workloads (unit: one message, stored, acked, delivered to both sockets):

``app_send_sqlite`` / ``app_send_postgres``
    One pair, one message in flight (the two friends take turns): every
    batch holds one message, so per-batch costs (thread hand-off, commit)
    are all in the unit.
``app_send16_sqlite`` / ``app_send16_postgres``
    Eight pairs, all sixteen sockets sending each round: batches of one and
    fifteen, as under load.

PostgreSQL runs when ``UMOC_TEST_POSTGRES`` is set, in a throwaway schema.
Each workload runs once with ``N`` messages after its warm-up and once
with none; the difference over ``N`` is the cost of one message.
``PYTHONHASHSEED`` is fixed.  Push and webhook consumers are not started
(no sockets-less recipients, no webhooks: their wake-up is a no-op).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

WORKLOADS = {
    # name: (messages measured, warm-up messages, pairs, database)
    "app_send_sqlite": (200, 40, 1, "sqlite"),
    "app_send16_sqlite": (640, 160, 8, "sqlite"),
    "app_send_postgres": (200, 40, 1, "postgres"),
    "app_send16_postgres": (640, 160, 8, "postgres"),
}

TEXT = "Hello there! Are we still on for tonight?"


def _frame(text: str) -> bytes:
    """A client text frame with a zero mask (the payload as is): building it costs the bench next to nothing."""
    payload = text.encode("utf-8")
    assert 126 <= len(payload) < 65536
    return b"\x81\xfe" + len(payload).to_bytes(2, "big") + b"\x00\x00\x00\x00" + payload


class Bench:
    """A node on a fresh database with ``pairs`` pairs of friends, each user with one WebSocket."""

    def __init__(self, database: str, pairs: int) -> None:
        self.database = database
        self.pairs = pairs
        self.tmp = tempfile.mkdtemp(prefix="umoc-hotpath-")
        self.drop: Any = None
        self.sockets: list[Any] = []  # (transport, user id, friend id)
        self.next_ack = 0

    async def start(self) -> None:
        import seeding
        from twisted.internet import reactor

        from umoc.config import parse_config
        from umoc.credentials import token_digest
        from umoc.records.sessions import NewSession
        from umoc.storage import ReadRouter, Storage
        from umoc.storage.database import Database
        from umoc.wiring import build_node

        config = parse_config(
            {
                # Callgrind runs the node some 50 times slower: no deadline, ping or overload bound may
                # fire on that account (their timers are still set and cancelled, as ever).
                "server": {"listen": "tcp:0:interface=127.0.0.1", "data_dir": self.tmp, "overload_wait": "1h"},
                "database": {"timeout": "1h"},
                "ratelimits": {"enabled": False},
                "engineio": {"max_sockets_per_ip": 100_000, "ping_interval": "1h", "ping_timeout": "1h"},
            }
        )
        if self.database == "sqlite":
            db = Database.sqlite(os.path.join(self.tmp, "umoc.sqlite3"))
        else:
            from databases import postgres_schema

            dsn = os.environ.get("UMOC_TEST_POSTGRES")
            if not dsn:
                raise SystemExit("app_send*_postgres needs UMOC_TEST_POSTGRES")
            db, self.drop = postgres_schema(dsn)
        await db.migrate()
        storage = Storage(db, ReadRouter(db))
        self.node = node = build_node(config, reactor, storage)
        node.services.sessions.start()
        now = time.time()
        ids = await db.run("bench.users", seeding._users_txn, "hot", 2 * self.pairs, now)
        for p in range(self.pairs):
            await db.run("bench.friends", seeding._direct_chats_txn, ids[2 * p], [ids[2 * p + 1]], now)
        for i, uid in enumerate(ids):
            sid, token = f"00000000-0000-4000-8000-{i:012d}", f"token-{i:035d}"
            await storage.users.create_session(NewSession(uid, sid, token_digest(token), now, now + 86400), 10)
            transport = self._connect(sid, token)
            friend = ids[i ^ 1]
            self.sockets.append((transport, uid, friend, sid))
        from twisted.internet import reactor, task

        for _ in range(500):  # authenticate reads the session: wait for every socket's CONNECT answer
            if all(b"connection_successful" in t.value() for t, *_ in self.sockets):
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        await self.settle()
        for transport, *_ in self.sockets:
            assert b"connection_successful" in transport.value(), transport.value()[-300:]
            transport.clear()
        from umoc import gcpolicy

        gcpolicy.settle()  # as `UmocService` does once it listens

    def _connect(self, sid: str, token: str) -> Any:
        from bench_wire import HANDSHAKE, client_frame
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        channel = self.node.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        transport.protocol = channel
        channel.makeConnection(transport)
        channel.dataReceived(HANDSHAKE)
        transport.protocol.dataReceived(client_frame(f'40{{"sessionID":"{sid}","token":"{token}"}}'))
        return transport

    async def settle(self) -> None:
        """The router idle, then a few reactor turns for what it wrote at the end of its turn."""
        from twisted.internet import reactor, task

        await self.node.socketapp.idle()
        for _ in range(2):
            await task.deferLater(reactor, 0, lambda: None)

    async def rounds(self, messages: int) -> None:
        """``messages`` messages, in rounds: every sending socket writes one, then all are answered."""
        senders = self.sockets if self.pairs > 1 else None
        sent = 0
        while sent < messages:
            batch = senders if senders is not None else [self.sockets[sent % 2]]
            batch = batch[: messages - sent]
            acks = []
            for transport, _uid, friend, sid in batch:
                self.next_ack += 1
                acks.append(self.next_ack)
                text = (
                    f'42{self.next_ack}["send_message",{{"recipient_id":{friend},"content":"{TEXT}",'
                    f'"is_group":false,"type":"text","sessionID":"{sid}"}}]'
                )
                transport.protocol.dataReceived(_frame(text))
            await self.settle()
            by_user = {uid: t for t, uid, *_ in self.sockets}
            for (transport, _uid, friend, _sid), ack in zip(batch, acks, strict=True):
                out = transport.value()
                assert f"43{ack}[".encode() in out and b'"new_message"' in out, out[-400:]
                assert b'"new_message"' in by_user[friend].value()
            for transport, *_ in self.sockets:
                transport.clear()
            sent += len(batch)

    async def stop(self) -> None:
        self.node.services.sessions.stop()
        self.node.services.storage.db.close()
        if self.drop is not None:
            self.drop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run(workload: str, units: int, profile: bool = False) -> None:
    """``units`` messages of ``workload`` after its warm-up, on the real reactor."""
    from twisted.internet import defer, task

    _, warm, pairs, database = WORKLOADS[workload]

    async def main(reactor: Any) -> None:
        bench = Bench(database, pairs)
        await bench.start()
        try:
            await bench.rounds(warm)
            if profile:
                import cProfile
                import pstats

                from umoc.storage import batching

                prof, in_thread = cProfile.Profile(), cProfile.Profile()
                batch_txn = batching._batch_txn

                def profiled_batch_txn(*args: Any) -> Any:
                    # The database thread's share: cProfile follows the thread it is enabled in.
                    in_thread.enable()
                    try:
                        return batch_txn(*args)
                    finally:
                        in_thread.disable()

                batching._batch_txn = profiled_batch_txn  # type: ignore[assignment]
                prof.enable()
                await bench.rounds(units)
                prof.disable()
                batching._batch_txn = batch_txn  # type: ignore[assignment]
                for title, p in (("reactor thread", prof), ("database thread (the batch transactions)", in_thread)):
                    print(f"==== {title}, {units} messages")
                    stats = pstats.Stats(p)
                    stats.sort_stats("tottime").print_stats(30)
                    stats.sort_stats("cumulative").print_stats(40)
            else:
                await bench.rounds(units)
        finally:
            await bench.stop()

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))


def _callgrind(workload: str, units: int) -> subprocess.Popen[str]:
    """One run of ``workload`` with ``units`` messages under callgrind, started."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        os.path.abspath(__file__),
        "--once",
        workload,
        str(units),
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def instructions_per_message(workload: str, units: int) -> float:
    """(Instructions with ``units`` messages - without) / ``units``; both runs at once (each its own core)."""
    counts = []
    for run in [_callgrind(workload, units), _callgrind(workload, 0)]:
        _, err = run.communicate()
        match = re.search(r"Collected : (\d+)", err)
        if run.returncode != 0 or match is None:
            raise SystemExit(f"{workload}: callgrind failed\n{err[-3000:]}")
        counts.append(int(match.group(1)))
    return (counts[0] - counts[1]) / units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", nargs=2, metavar=("WORKLOAD", "N"))
    parser.add_argument("--profile", nargs=2, metavar=("WORKLOAD", "N"))
    parser.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    args = parser.parse_args()
    if args.once:
        run(args.once[0], int(args.once[1]))
        return
    if args.profile:
        run(args.profile[0], int(args.profile[1]), profile=True)
        return
    names = args.only.split(",") if args.only else list(WORKLOADS)
    if not os.environ.get("UMOC_TEST_POSTGRES"):
        names = [n for n in names if WORKLOADS[n][3] != "postgres"]
    print(f"{'workload':<20} {'messages':>8} {'instructions per message':>25}")
    for name in names:
        units = WORKLOADS[name][0]
        per_unit = instructions_per_message(name, units)
        print(f"{name:<20} {units:>8} {per_unit:>25,.0f}", flush=True)


if __name__ == "__main__":
    main()
