"""SQLite: what one more page written by a commit costs, in CPU, on this machine's file system.

A thread reply's batch writes a few pages a batch of plain messages does
not (its thread's row, the ``threads_chat`` entry, follows, the
``messages_thread`` leaf; ``bench_thread_cost.py --pages``).  This prices
one such page apart from everything UMOC does: commits of a WAL database
(``synchronous=FULL``, as UMOC opens it) that each update one row, and
``--extra`` more rows each on a page of its own, in alternating rounds.
Per commit it prints the median CPU of the committing thread (user and
system: SQLite's page checksums, and the kernel's ``pwrite`` of each WAL
frame, which callgrind's instruction counts leave out), its system part
and the wall time, and the cost of each extra page against none::

    python bench/bench_page_cost.py [--dir /tmp] [--extra 0,2,5,10] [--commits 2000] [--rounds 3]

``--dir`` is where the database goes (a temporary folder in it): the disk
UMOC's data would be on, or ``/dev/shm`` to see the file system's share.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import tempfile
import time

#: Rows of about 300 bytes: about a dozen to a 4 KiB page, so rows `_SPREAD` apart are on different pages.
_ROWS = 30_000
_SPREAD = 15


def _commits(conn: sqlite3.Connection, extra: int, commits: int, start: int) -> tuple[float, float, float]:
    """``commits`` transactions, each one row and ``extra`` rows on other pages: (CPU, system, wall) us each."""
    cpu, wall = time.thread_time(), time.perf_counter()
    system = resource.getrusage(resource.RUSAGE_THREAD).ru_stime
    for i in range(start, start + commits):
        conn.execute("BEGIN")
        conn.execute("UPDATE t SET v = v + 1 WHERE id = 0")
        for j in range(extra):
            # A different page from the first row's and from each other's; they move from commit to commit.
            conn.execute("UPDATE t SET v = v + 1 WHERE id = ?", (((i * 7 + j * 131) % 1500 + 1) * _SPREAD,))
        conn.execute("COMMIT")
    system = resource.getrusage(resource.RUSAGE_THREAD).ru_stime - system
    return (
        (time.thread_time() - cpu) / commits * 1e6,
        system / commits * 1e6,
        (time.perf_counter() - wall) / commits * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the database goes")
    parser.add_argument("--extra", type=lambda s: [int(x) for x in s.split(",")], default=[0, 2, 5, 10])
    parser.add_argument("--commits", type=int, default=2000, help="commits per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over --extra")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="umoc-pagecost-", dir=args.dir) as folder:
        conn = sqlite3.connect(os.path.join(folder, "pages.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad TEXT NOT NULL)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?, 0, ?)", ((i, "x" * 300) for i in range(_ROWS)))
        conn.execute("COMMIT")
        _commits(conn, max(args.extra), args.commits // 4, 0)  # warm-up: the pages cached, the WAL grown
        times: dict[int, list[tuple[float, float, float]]] = {k: [] for k in args.extra}
        for r in range(args.rounds):
            for k in args.extra if r % 2 == 0 else reversed(args.extra):
                times[k].append(_commits(conn, k, args.commits, r * args.commits))
        conn.close()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"SQLite WAL commits in {args.dir} (synchronous=FULL), {args.commits} x {args.rounds} each; load {load}")
    base = statistics.median(t[0] for t in times[args.extra[0]])
    for k, measured in times.items():
        cpu, system, wall = (statistics.median(t[i] for t in measured) for i in range(3))
        per = f" | {(cpu - base) / (k - args.extra[0]):5.1f} us CPU per extra page" if k != args.extra[0] else ""
        print(f"  {k:3d} extra pages: CPU {cpu:6.1f} us (system {system:5.1f})  wall {wall:7.1f} us a commit{per}")


if __name__ == "__main__":
    main()
