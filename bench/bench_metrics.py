"""What one metric update costs: today's prometheus-client instruments against plain counters.

    PYTHONPATH=. python bench/bench_metrics.py

Prints nanoseconds per call (best of 5 runs of a million calls).  The
comparison that chose prometheus-client for the hot path: see umoc/metrics.py.
"""

from __future__ import annotations

import timeit
from collections import Counter as PlainCounter

from prometheus_client import CollectorRegistry, Counter, Histogram

from umoc.metrics import Metrics

N = 1_000_000


def per_call(statement: str, names: dict) -> float:
    return min(timeit.repeat(statement, globals=names, number=N, repeat=5)) / N * 1e9


def main() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["event", "outcome"], registry=registry)
    histogram = Histogram("h", "h", ["event"], registry=registry)
    names = {
        "plain": PlainCounter(),
        "counter": counter,
        "child": counter.labels("send_message", "ok"),
        "histogram": histogram,
        "hchild": histogram.labels("send_message"),
        "metrics": Metrics(),
    }
    for label, statement in [
        ("collections.Counter += 1", "plain['send_message'] += 1"),
        ("Counter.labels(...).inc()", "counter.labels('send_message', 'ok').inc()"),
        ("cached child .inc()", "child.inc()"),
        ("Histogram.labels(...).observe()", "histogram.labels('send_message').observe(0.003)"),
        ("cached child .observe()", "hchild.observe(0.003)"),
        ("Metrics.event_done (per event)", "metrics.event_done('send_message', True, 0.003)"),
    ]:
        print(f"{label:36} {per_call(statement, names):7.0f} ns")


if __name__ == "__main__":
    main()
