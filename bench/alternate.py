"""Run `bench_threads.py` in several trees (or with several arguments) by turns; each cell's median over them.

On this noisy 2-core machine one run's "pairs: median" (threads / plain,
each block against its neighbour) spreads by +-0.05, and the machine's
speed drifts over minutes.  Taking turns, round after round, lets the drift
hit every configuration alike; the median over the rounds is the figure to
compare.  A configuration is ``NAME=TREE`` or ``NAME=TREE:EXTRA ARGS``
(a checkout, e.g. a ``git worktree`` with a patch of ``bench/patches``
applied, and arguments added to the bench's)::

    python bench/alternate.py --rounds 8 [--pin] 'ctl=.:--thread-share 0' main=. floor=/work/floor

``--pin`` runs each under ``taskset -c 0``.  The bench's own arguments
default to SQLite's 16-in-flight cell of issue 30 (``--bench-args``); with
``--bench-args "--blocks 24 --per-block 200"`` and UMOC_TEST_POSTGRES set,
each run gives all four cells (both databases, 1 and 16 in flight), and
``get_chats``' median after the sends for each database.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys

#: A send-rate line of `bench_threads.py`: its database, its in-flight count, its pair median.
_RATE = re.compile(r"^\s*(\S+)\s+group of \d+\s+(\d+) in flight .*pairs: median ([0-9.]+)", re.MULTILINE)
#: A ``get_chats`` line: its database and the median after the sends, in ms.
_CHATS = re.compile(r"^\s*(\S+)\s+get_chats .*after them .* median ([0-9.]+) ms", re.MULTILINE)
_CELL = "--sqlite-only --blocks 24 --per-block 200 --in-flight 16"


def _run(tree: str, args: list[str], pin: bool) -> dict[str, float]:
    """One run of the bench in ``tree``: each cell's pair median, and each ``get_chats`` median after (ms)."""
    command = [os.path.abspath(sys.executable), "bench/bench_threads.py", *args]  # run in another directory
    if pin:
        command = ["taskset", "-c", "0", *command]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
    found = {f"{db} {n} in flight": float(ratio) for db, n, ratio in _RATE.findall(done.stdout)}
    found.update({f"{db} get_chats after, ms": float(ms) for db, ms in _CHATS.findall(done.stdout)})
    if not found:
        print(f"  {tree}: no ratio printed\n{done.stderr[-2000:]}", file=sys.stderr)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", metavar="NAME=TREE[:ARGS]")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--pin", action="store_true", help="taskset -c 0 (the bench's client and server share it)")
    parser.add_argument("--bench-args", default=_CELL, help=f"bench_threads.py's arguments (default: {_CELL})")
    options = parser.parse_args()
    configs: list[tuple[str, str, list[str]]] = []
    for spec in options.configs:
        name, _, rest = spec.partition("=")
        tree, _, extra = rest.partition(":")
        configs.append((name, tree or ".", shlex.split(options.bench_args) + shlex.split(extra)))
    found: dict[str, dict[str, list[float]]] = {name: {} for name, _, _ in configs}
    for round_number in range(1, options.rounds + 1):
        for name, tree, args in configs:
            cells = _run(tree, args, options.pin)
            for cell, value in cells.items():
                found[name].setdefault(cell, []).append(value)
            print(f"round {round_number} {name} {cells}", flush=True)
    print("median over the rounds: each cell's pair median (threads / plain), get_chats after the sends (ms)")
    for name, cells in found.items():
        for cell, values in cells.items():
            shown = " ".join(f"{v:.3f}" for v in values)
            print(f"  {name:<10} {cell:<32} {statistics.median(values):7.3f}  ({len(values)} runs: {shown})")


if __name__ == "__main__":
    main()
