"""SQLite: what one thread reply costs against one plain message in a group of 1,000, counted (issue 30).

Runs the real ``send_message`` handler (as `bench_threads.py` does: schema,
command, group commit, ``new_message`` and ``thread_updated`` encoded for
the hub) on SQLite in a temp file, in blocks of plain messages, blocks
of thread replies (to ``--roots`` roots, from ``--senders`` rotating
members) and blocks of the two mixed as `bench_threads.py` mixes them (a
fifth replies), ``--in-flight`` at a time, alternating.  Per message of each
kind it prints what does not depend on the machine's load: statements the
writer's connection ran (``sqlite3``'s trace callback; ``BEGIN`` and
``SAVEPOINT`` included, ``COMMIT`` not) and the trigger programs inside
them, rows written (``total_changes``), batches; then the median CPU
microseconds of this process per message (the reactor and SQLite's
thread) and their ratio, which the load moves far less than wall time::

    python bench/bench_thread_cost.py [--blocks 6] [--per-block 400] [--in-flight 16]
    python bench/bench_thread_cost.py --profile reply   # cProfile of both threads while replies are sent

``--profile plain|reply|mixed`` prints the top functions (cumulative) of the
reactor's thread and of the writer's thread during one block of that kind.

``--instructions`` counts instead of timing, so the machine's load does not
move it: each kind runs under callgrind after the same warm-up, once with
``--per-block`` messages and once with none, and the difference over their
number is a message's instructions, the reactor's thread apart from the
database's (``PYTHONHASHSEED`` fixed; two runs at a time, a few minutes)::

    python bench/bench_thread_cost.py --instructions [--per-block 800]

``--pages`` shows what each kind's commits write: with checkpoints off, the
WAL's frames a block appends, by the table or index each page belongs to
(``dbstat``), per message (``--in-flight 1``: one message a commit)::

    python bench/bench_thread_cost.py --pages --in-flight 1 --per-block 200

``--batches`` times each group-commit batch of the writer instead (its
thread's CPU, commit included) with what it held, over the same blocks,
and fits ``CPU = a + b * messages + c * replies + d * (any reply)`` by
least squares, once per round of blocks: ``c`` is what a reply costs the
writer beyond a plain message, and ``d`` what a batch costs once it holds
a reply at all (its thread rows', follows' and index pages, written once
per batch however many replies share them)::

    python bench/bench_thread_cost.py --batches --blocks 10 --per-block 400
"""

from __future__ import annotations

import argparse
import cProfile
import glob
import os
import pstats
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from bench.bench_threads import _SEND, _payload, seeded_group  # noqa: E402
from umoc.events.router import EventContext  # noqa: E402
from umoc.storage import batching as batchmod  # noqa: E402
from umoc.storage import database as dbmod  # noqa: E402
from umoc.storage.database import Database  # noqa: E402
from umoc.storage.engine import pool as poolmod  # noqa: E402

#: The share of replies in a ``mixed`` block, as in `bench_threads.py`'s (``--thread-share``'s default).
MIX_SHARE = 0.2


class Counter:
    """The writer's trace callback: statements and trigger programs; its connection for ``total_changes``."""

    def __init__(self) -> None:
        self.statements = 0
        self.triggers = 0
        self.begins = 0
        #: CPU seconds of the database's threads in transactions (their commits and checkpoints included).
        self.db_cpu = 0.0
        self.connection: sqlite3.Connection | None = None

    def __call__(self, sql: str) -> None:
        if sql.startswith("--"):
            self.triggers += 1
        else:
            self.statements += 1
            if sql.startswith("BEGIN"):
                self.begins += 1

    def snapshot(self) -> tuple[int, int, int, int]:
        assert self.connection is not None
        return self.statements, self.triggers, self.connection.total_changes, self.begins


COUNTER = Counter()
_open = dbmod._sqlite_open


def _counted_open(synchronous: str, conn: sqlite3.Connection) -> None:
    _open(synchronous, conn)
    COUNTER.connection = conn
    conn.set_trace_callback(COUNTER)


def _unchecked_open(synchronous: str, conn: sqlite3.Connection) -> None:
    """The writer's connection with automatic checkpoints off: the WAL keeps every frame a block writes."""
    _open(synchronous, conn)
    conn.execute("PRAGMA wal_autocheckpoint=0")


_FRAME = 24 + 4096  # a WAL frame: its header, then the page (SQLite's default page size)


def _wal_end(path: str) -> int:
    return max(32, os.path.getsize(path + "-wal"))  # 32: the WAL's own header


async def _appended(path: str, sends: Any) -> list[int]:
    """The page numbers of the WAL frames appended while ``sends`` ran."""
    start = _wal_end(path)
    await sends
    with open(path + "-wal", "rb") as wal:
        wal.seek(start)
        data = wal.read()
    return [int.from_bytes(data[i : i + 4], "big") for i in range(0, len(data) - _FRAME + 1, _FRAME)]


def _wal_pages(path: str, name: str, pages: list[int], messages: int) -> None:
    """Print the frames per message, by the table or index their pages belong to."""
    reader = sqlite3.connect(path)
    try:
        owner = dict(reader.execute("SELECT pageno, name FROM dbstat").fetchall())
    finally:
        reader.close()
    by_name: dict[str, int] = {}
    for page in pages:
        by_name[owner.get(page, "(new page)")] = by_name.get(owner.get(page, "(new page)"), 0) + 1
    shown = ", ".join(f"{k} {v / messages:.2f}" for k, v in sorted(by_name.items(), key=lambda kv: -kv[1]))
    print(f"  {name:<6} WAL frames per message {len(pages) / messages:5.2f}: {shown}")


#: The writer thread's profiler, enabled around each transaction while ``--profile`` runs.
WRITER_PROFILE: cProfile.Profile | None = None
_run_job = poolmod._GuardedPool._run_job


class _Batches(threading.local):
    """``--batches``: what the writer's current batch holds (set by `_counted_all_txn`), and every batch timed."""

    held: tuple[int, int] | None = None
    #: (messages, replies, CPU seconds) of each message batch, in order; shared by the threads (the class's).
    timed: list[tuple[int, int, float]] = []


BATCHES = _Batches()
_all_txn = batchmod._all_txn


def _counted_all_txn(txn: Any, items: list[Any]) -> list[Any]:
    """`batching._all_txn`, noting how many of the batch's writes are messages and how many of those replies."""
    news = [item.args[1] for item in items if item.name == "messages.post"]
    if news:
        BATCHES.held = (len(news), sum(1 for new in news if new.thread_id is not None))
    return _all_txn(txn, items)


def _profiled_run_job(self: Any, job: Any, interaction: Any) -> Any:
    """A transaction in a pool thread: its CPU time counted (the writer's, and the readers'), maybe profiled."""
    profile = WRITER_PROFILE
    started = time.thread_time()
    BATCHES.held = None
    try:
        if profile is None or threading.current_thread() is threading.main_thread():
            return _run_job(self, job, interaction)
        profile.enable()
        try:
            return _run_job(self, job, interaction)
        finally:
            profile.disable()
    finally:
        used = time.thread_time() - started
        COUNTER.db_cpu += used
        if BATCHES.held is not None:
            BATCHES.timed.append((*BATCHES.held, used))


async def _sends(sends: list[tuple[EventContext, dict[str, Any]]], in_flight: int) -> None:
    """Every send, ``in_flight`` at a time."""
    pending = iter(sends)

    async def worker() -> None:
        for ctx, payload in pending:
            await _SEND.handler(ctx, _SEND.schema.validate(payload))

    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(in_flight)], consumeErrors=True)


async def _block(
    sends: list[tuple[EventContext, dict[str, Any]]], in_flight: int
) -> tuple[tuple[float, float], tuple[int, ...]]:
    """Every send, ``in_flight`` at a time: ((CPU, the database threads' CPU) us per message, the counters' growth)."""
    before = COUNTER.snapshot()
    cpu, db_cpu = time.process_time(), COUNTER.db_cpu
    await _sends(sends, in_flight)
    used = (time.process_time() - cpu) / len(sends) * 1e6, (COUNTER.db_cpu - db_cpu) / len(sends) * 1e6
    return used, tuple(b - a for a, b in zip(before, COUNTER.snapshot(), strict=True))


async def main(reactor: Any) -> None:
    global WRITER_PROFILE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--roots", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=6, help="blocks of each kind (alternating)")
    parser.add_argument("--per-block", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--profile", choices=["plain", "reply", "mixed"])
    parser.add_argument("--instructions", action="store_true", help="count under callgrind instead of timing")
    parser.add_argument("--pages", action="store_true", help="the pages each kind's commits write, by table")
    parser.add_argument("--batches", action="store_true", help="fit the writer's CPU per batch to what it held")
    parser.add_argument("--once", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)  # what callgrind runs
    args = parser.parse_args()
    if args.instructions:
        _instructions(args)
        return
    if not args.once:  # counted by callgrind: no trace callback, no timing, in what it counts
        dbmod._sqlite_open = _counted_open
        poolmod._GuardedPool._run_job = _profiled_run_job  # type: ignore[method-assign]
        batchmod._all_txn = _counted_all_txn
    if args.pages:
        dbmod._sqlite_open = _unchecked_open
    with tempfile.TemporaryDirectory(prefix="umoc-threadcost-") as folder:
        path = os.path.join(folder, "bench.db")
        db = Database.sqlite(path)
        seeded = await seeded_group(reactor, db, args.members)
        owner, members, group, context = seeded.owner, seeded.members, seeded.group, seeded.context
        owner_ctx = context(owner)
        senders = [context(u) for u in members[: args.senders]]
        roots = []
        for i in range(args.roots):
            sent = await _SEND.handler(owner_ctx, _SEND.schema.validate(_payload(group, f"topic {i}")))
            roots.append(sent["message_id"])

        def plain(i: int) -> tuple[EventContext, dict[str, Any]]:
            return senders[i % len(senders)], _payload(group, f"message {i}")

        rng = random.Random(30)

        def reply(i: int) -> tuple[EventContext, dict[str, Any]]:
            # To a random root, as bench_threads.py sends them (few replies of one batch share a thread).
            return senders[i % len(senders)], _payload(group, f"reply {i}", thread_id=rng.choice(roots))

        mix_rng = random.Random(31)

        def mixed(i: int) -> tuple[EventContext, dict[str, Any]]:
            # As bench_threads.py's mixed blocks: a fifth of the messages are replies, among plain ones.
            return reply(i) if mix_rng.random() < MIX_SHARE else plain(i)

        kinds = {"plain": plain, "reply": reply, "mixed": mixed}
        for make in kinds.values():  # warm-up: most senders follow most threads
            await _sends([make(i) for i in range(args.roots * len(senders))], args.in_flight)
        if args.pages:
            for name in ("plain", "reply", "mixed") * 2:
                _wal_pages(
                    path,
                    name,
                    await _appended(path, _sends([kinds[name](i) for i in range(args.per_block)], args.in_flight)),
                    args.per_block,
                )
            db.close()
            return
        if args.once:
            kind, count = args.once[0], int(args.once[1])
            if count:
                await _sends([kinds[kind](i) for i in range(count)], args.in_flight)
            db.close()
            return
        if args.profile:
            reactor_profile, WRITER_PROFILE = cProfile.Profile(time.thread_time), cProfile.Profile(time.thread_time)
            reactor_profile.enable()
            await _block([kinds[args.profile](i) for i in range(args.per_block)], args.in_flight)
            reactor_profile.disable()
            for label, profile in (("reactor", reactor_profile), ("writer", WRITER_PROFILE)):
                print(f"== {label} thread, {args.per_block} {args.profile} messages")
                pstats.Stats(profile).sort_stats("cumulative").print_stats(45)
            db.close()
            return
        cpus: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        counts: dict[str, list[int]] = {k: [0, 0, 0, 0] for k in kinds}
        rounds: list[tuple[int, int]] = []  # each round's batches: BATCHES.timed[start:end]
        for b in range(args.blocks):
            order = list(kinds.items())
            start = len(BATCHES.timed)
            for name, make in order if b % 2 == 0 else reversed(order):
                used, grown = await _block([make(i) for i in range(args.per_block)], args.in_flight)
                cpus[name].append(used)
                counts[name] = [c + g for c, g in zip(counts[name], grown, strict=True)]
            rounds.append((start, len(BATCHES.timed)))
        db.close()
    if args.batches:
        _print_batch_fits(args, [BATCHES.timed[start:end] for start, end in rounds])
        return
    n = args.blocks * args.per_block
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"SQLite, group of {args.members}, {args.in_flight} in flight,"
        f" {args.blocks} x {args.per_block} each; load {load}"
    )
    for name in kinds:
        statements, triggers, rows, batches = counts[name]
        print(
            f"  {name:<6} per message: statements {statements / n:5.2f}  triggers {triggers / n:5.2f}"
            f"  rows {rows / n:5.2f}  (messages per batch {n / max(batches, 1):5.1f})"
            f" | CPU us/msg median {statistics.median(c[0] for c in cpus[name]):6.0f}"
            f" (database thread {statistics.median(c[1] for c in cpus[name]):5.0f})"
        )
    for kind in ("reply", "mixed"):
        ratios = [r[0] / p[0] for r, p in zip(cpus[kind], cpus["plain"], strict=True)]
        print(
            f"  CPU {kind}/plain: median of block pairs {statistics.median(ratios):.3f}"
            f" ({', '.join(f'{x:.2f}' for x in ratios)})"
        )


#: What `_instructions` counts: plain messages, thread replies, and the bench's mix (a fifth of them replies).
KINDS = ("plain", "reply", "mixed")


def _least_squares(rows: list[list[float]], ys: list[float]) -> list[float]:
    """The coefficients minimising the squared error of ``rows . x = ys`` (normal equations, a whisker of ridge).

    The ridge only settles ``a`` against ``b`` (nearly every batch holds the
    same number of messages, so the two are told apart by a few batches);
    the figures printed (a batch of ``n`` plain messages, ``c``, ``d``) do
    not depend on how it splits them.
    """
    k = len(rows[0])
    m = [[sum(r[i] * r[j] for r in rows) + (1e-6 if i == j else 0.0) for j in range(k)] for i in range(k)]
    v = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(k)]
    for col in range(k):  # Gaussian elimination with partial pivoting
        pivot = max(range(col, k), key=lambda r: abs(m[r][col]))
        m[col], m[pivot], v[col], v[pivot] = m[pivot], m[col], v[pivot], v[col]
        for r in range(col + 1, k):
            f = m[r][col] / m[col][col]
            m[r] = [a - f * b for a, b in zip(m[r], m[col], strict=True)]
            v[r] -= f * v[col]
    x = [0.0] * k
    for r in reversed(range(k)):
        x[r] = (v[r] - sum(m[r][j] * x[j] for j in range(r + 1, k))) / m[r][r]
    return x


def _print_batch_fits(args: argparse.Namespace, rounds: list[list[tuple[int, int, float]]]) -> None:
    """Per round of blocks, the writer's CPU per batch fitted to its messages, its replies and whether it has any."""
    n = round(statistics.median(held for batches in rounds for held, _, _ in batches))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"SQLite, group of {args.members}, {args.in_flight} in flight, writer CPU per batch; load {load}")
    print(f"  fit: CPU = a + b * messages + c * replies + d * (any reply); typical batch {n} messages")
    fits = []
    for batches in rounds:
        rows = [[1.0, float(held), float(replies), 1.0 if replies else 0.0] for held, replies, _ in batches]
        a, b, c, d = _least_squares(rows, [used * 1e6 for _, _, used in batches])
        fits.append((a + n * b, b, c, d))
        print(
            f"  round of {len(batches):4d} batches: {n} plain {a + n * b:6.0f} us ({b:+5.1f} a message),"
            f" a reply {c:+6.1f} us, any reply {d:+6.1f} us"
        )
    base, _, c, d = (statistics.median(f[i] for f in fits) for i in range(4))
    share = MIX_SHARE
    with_reply = 1 - (1 - share) ** n
    print(
        f"  medians: a batch of {n} plain {base:.0f} us; a reply {c:+.1f} us; a batch with any reply {d:+.1f} us."
        f" At {share:.0%} replies ({with_reply:.0%} of batches of {n} hold one) that is"
        f" {(n * share * c + with_reply * d) / base:+.1%} of the writer's CPU:"
        f" {n * share * c / base:+.1%} from the replies, {with_reply * d / base:+.1%} from the batches holding them"
    )


def _instructions(args: argparse.Namespace) -> None:
    """Each kind's instructions per message under callgrind: (with ``--per-block`` messages - with none) / that."""
    count = args.per_block
    with tempfile.TemporaryDirectory(prefix="umoc-threadcost-cg-") as folder:

        def run(kind: str, n: int) -> subprocess.Popen[str]:
            out = os.path.join(folder, f"{kind}-{n}.out")
            cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}"]
            cmd += [sys.executable, os.path.abspath(__file__), "--once", kind, str(n)]
            cmd += ["--members", str(args.members), "--in-flight", str(args.in_flight)]
            env = dict(os.environ, PYTHONHASHSEED="0")
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def threads(kind: str, n: int) -> dict[str, int]:
            """Instructions by thread: the reactor's ("-01") and the database's (every other, summed)."""
            totals = {"reactor": 0, "database": 0}
            for path in glob.glob(os.path.join(folder, f"{kind}-{n}.out-*")):
                with open(path) as f:
                    total = next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
                totals["reactor" if path.endswith("-01") else "database"] += total
            return totals

        for kind in KINDS:
            for proc in [run(kind, count), run(kind, 0)]:  # two at a time: each its own core
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise SystemExit(f"callgrind failed\n{err[-3000:]}")
        per = {
            k: {t: (threads(k, count)[t] - threads(k, 0)[t]) / count for t in ("reactor", "database")} for k in KINDS
        }
    print(f"SQLite, group of {args.members}, {args.in_flight} in flight, {count} messages of each kind (callgrind)")
    for kind, by_thread in per.items():
        print(
            f"  {kind:<6} instructions per message {sum(by_thread.values()):10,.0f}"
            f" (reactor {by_thread['reactor']:9,.0f}, database threads {by_thread['database']:9,.0f})"
        )
    ratio = sum(per["reply"].values()) / sum(per["plain"].values())
    mixed = sum(per["mixed"].values()) / sum(per["plain"].values())
    print(
        f"  reply / plain {ratio:.3f}; at {MIX_SHARE:.0%} replies, a message would cost"
        f" {1 + MIX_SHARE * (ratio - 1):.3f}x"
        f" from the two alone, and costs {mixed:.3f}x in the mix (replies among plain messages in a batch)"
    )


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
