"""SQLite: what a savepoint around a whole group-commit batch costs (why `Dialect.batch_savepoint` is off there).

Runs the real ``send_message`` handler (as `bench_threads.py` does) on
SQLite in a temp file, to a group of ``--members``, in blocks of 300 plain
messages, ``--in-flight`` 1 and 16 at a time, alternating blocks whose batch
opens ``SAVEPOINT batch_all`` (as PostgreSQL's does) with blocks whose batch
does not (SQLite's, which restarts its transaction on a refusal instead).
Prints, per kind, the median user and kernel CPU and wall time a message,
and the median of each block pair's wall-time ratio::

    python bench/bench_batch_savepoint.py [--blocks 12] [--members 1000]

SQLite keeps a savepoint's undo in a sub-journal of every page changed
while it is open and writes it to a temporary file past 64 KiB, so the
difference is the kernel's: a batch's pages copied once more.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from bench.bench_threads import _block, _payload, seeded_group  # noqa: E402
from umoc.events.router import EventContext  # noqa: E402
from umoc.storage import batching  # noqa: E402
from umoc.storage.database import Database  # noqa: E402

#: Whether the next batch opens the savepoint (switched between blocks).
SAVEPOINT = {"on": False}
_batch_txn = batching._batch_txn


def _switched_batch_txn(txn: Any, items: Any, retry: Any, fatal: Any) -> Any:
    txn.dialect = dataclasses.replace(txn.dialect, batch_savepoint=SAVEPOINT["on"])
    return _batch_txn(txn, items, retry, fatal)


async def main(reactor: Any) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=12, help="blocks of each kind (alternating)")
    args = parser.parse_args()
    batching._batch_txn = _switched_batch_txn  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="umoc-savepoint-") as folder:
        db = Database.sqlite(os.path.join(folder, "bench.db"))
        seeded = await seeded_group(reactor, db, args.members)
        group, senders = seeded.group, [seeded.context(u) for u in seeded.members[:20]]

        def sends(count: int) -> list[tuple[EventContext, dict[str, Any]]]:
            return [(senders[i % len(senders)], _payload(group, f"message {i}")) for i in range(count)]

        print(f"SQLite, group of {args.members}, {args.blocks} blocks of 300 each way; load {os.getloadavg()[0]:.2f}")
        for in_flight in (1, 16):
            await _block(sends(400), in_flight)  # warm-up
            samples: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
            for b in range(args.blocks):
                for on in (True, False) if b % 2 else (False, True):
                    SAVEPOINT["on"] = on
                    before, started = os.times(), time.perf_counter()
                    await _block(sends(300), in_flight)
                    after, wall = os.times(), time.perf_counter() - started
                    samples[on].append(
                        ((after.user - before.user) / 300e-6, (after.system - before.system) / 300e-6, wall / 300e-6)
                    )
            for on in (True, False):
                user, kernel, wall = (statistics.median(s[k] for s in samples[on]) for k in range(3))
                print(
                    f"  {in_flight:>2} in flight, savepoint {'on ' if on else 'off'}: user {user:5.0f} us/msg,"
                    f" kernel {kernel:5.0f} us/msg, wall {wall:5.0f} us/msg ({1e6 / wall:5.0f}/s)"
                )
            pairs = [a[2] / b[2] for a, b in zip(samples[True], samples[False], strict=True)]
            median = statistics.median(pairs)
            print(f"  {in_flight:>2} in flight: wall with / without, median of block pairs {median:.3f}")
        db.close()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
