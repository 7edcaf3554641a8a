"""Metrics for ``GET /metrics``, with prometheus-client, in a registry of each node's own.

A private `CollectorRegistry` per `Metrics` (not prometheus-client's global
one): tests start several nodes in one process, and each must count only
its own.

Two kinds of metric:

* **Instruments** (``Counter``, ``Histogram``) counted where things happen:
  events by name and outcome and their latency, database transactions by
  name and the wait for a pool connection, logins, rate-limit refusals,
  overload refusals, messages stored.  Label sets are bounded: event names are the route
  table's (anything else is ``unknown``), transaction names are literals in
  ``umoc.storage``.  The four every message moves (``umoc_events``,
  ``umoc_event_latency_seconds``, ``umoc_db_transaction_seconds``,
  ``umoc_messages_stored``) are kept as plain numbers (`_Counts`,
  `_Timings`) and shown in prometheus-client's families when scraped:
  its own instruments take a lock per value and walk a histogram's buckets
  in Python, about 15 µs a message on the loaded development machine,
  against 2 µs here (``bench/bench_hotpath.py``).  They are only moved on
  the reactor thread.
* **Read at scrape time** (`Metrics.gauge`, `Metrics.counter`): values that
  objects further down keep anyway (sockets in the hub, the bus's publish
  and receive counts, whether Redis is connected, the push and webhook
  queues), and the push and webhook outcomes, kept here as plain counters.  Those objects import
  nothing from here, and a fan-out to a thousand sockets pays nothing extra.

A private registry has none of prometheus-client's default collectors, so
two are added by hand: ``process_*`` (CPU seconds, resident memory, open
files, start time: read from ``/proc`` at scrape time, Linux only) and
``umoc_build_info{version, python}`` = 1, which tells a dashboard which
release each node runs during a rolling upgrade.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections import Counter as PlainCounter
from typing import Any, Callable, Iterable, Iterator, Mapping

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

import umoc

__all__ = ["CONTENT_TYPE", "Metrics", "TransactionMetrics"]

#: ``umoc_events_created`` and the like: noise for counters that start with the process.
prometheus_client.disable_created_metrics()

#: The classic text format, which every Prometheus reads (newer prometheus-client releases announce
#: ``version=1.0.0``, which Prometheus 2 does not know); with names of plain ASCII the body is the same.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_EVENT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: A scrape-time value: a number, or {label value (a tuple for several labels): number}.
Reading = Callable[[], "float | Mapping[Any, float]"]
#: No label, one label's name, or several.
Labels = str | tuple[str, ...] | None


class _ScrapeTime(Collector):
    """The `Metrics.gauge` and `Metrics.counter` metrics, read when scraped."""

    def __init__(self) -> None:
        self.entries: list[tuple[type, str, str, Any, Reading]] = []

    def collect(self) -> Iterator[Metric]:
        for family_type, name, documentation, labels, read in self.entries:
            value = read()
            if labels is None:
                family = family_type(name, documentation, value=float(value))  # type: ignore[arg-type]
            else:
                names = [labels] if isinstance(labels, str) else list(labels)
                family = family_type(name, documentation, labels=names)
                for key, number in sorted(value.items()):  # type: ignore[union-attr]
                    family.add_metric(list(key) if isinstance(key, tuple) else [key], float(number))
            yield family

    def describe(self) -> Iterable[Metric]:
        return []


class _Series:
    """One label set of a `_Timings`: observations per bucket (not cumulative; the last is +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is at least ``amount``, as prometheus-client's ``amount <= bound``.
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class _Timings(Collector):
    """A histogram by label values, in plain numbers; prometheus-client's ``Histogram`` family when scraped."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], buckets: Iterable[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = tuple(float(b) for b in buckets)
        self._series: dict[tuple[str, ...], _Series] = {}

    def labels(self, *values: str) -> _Series:
        """The series of these label values (made on first use): keep it, and call its ``observe``."""
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = _Series(self.bounds)
        return series

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for values, series in list(self._series.items()):
            buckets, total = [], 0
            for le, count in zip(les, list(series.counts), strict=True):
                total += count
                buckets.append((le, float(total)))
            family.add_metric(list(values), buckets, series.sum)
        yield family

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))]


class _Counts(Collector):
    """A counter by label values (none: one value), in plain numbers; a ``Counter`` family when scraped."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, values: tuple[str, ...] = ()) -> None:
        self.values[values] = self.values.get(values, 0.0) + amount

    def collect(self) -> Iterator[Metric]:
        if not self.labelnames:
            yield CounterMetricFamily(self.name, self.documentation, value=self.values.get((), 0.0))
            return
        family = CounterMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        for values, value in list(self.values.items()):
            family.add_metric(list(values), value)
        yield family

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=list(self.labelnames) or None)]


class TransactionMetrics:
    """A database's transaction timings, made with its `Database` and shown by the node's `Metrics`.

    Their histograms belong to no registry until a `Metrics` is built with
    them: the database exists before the node (tests build it first), and
    nothing is attached to it afterwards.
    """

    def __init__(self) -> None:
        self.seconds = _Timings(
            "umoc_db_transaction_seconds",
            "Database transactions by name (as Database.run names them), from request to result",
            ("transaction", "outcome"),
            _DB_BUCKETS,
        )
        self.pool_wait = Histogram(
            "umoc_db_pool_wait_seconds",
            "Time a transaction waited for a pool thread and connection",
            buckets=_DB_BUCKETS,
            registry=None,
        )
        self._children: dict[tuple[str, bool], _Series] = {}

    def done(self, name: str, ok: bool, seconds: float, waited: float | None) -> None:
        """One `Database.run`, or one write of a group-commit batch (``waited`` None).

        ``waited`` is the time before a pool thread ran it (None if it never
        did, or for a write of a batch: its batch has the pool wait).  Every
        message stored observes one (its ``messages.post``): children are
        cached per label value, as `Metrics.event_done`'s are, since
        ``labels()`` costs more than the observation.
        """
        child = self._children.get((name, ok))
        if child is None:
            child = self._children[(name, ok)] = self.seconds.labels(name, "ok" if ok else "error")
        child.observe(seconds)
        if waited is not None:
            self.pool_wait.observe(waited)


class Metrics:
    """One node's metrics; `render` gives the Prometheus text exposition.

    ``transactions`` are the node's database's (`Database.transactions`);
    without them the transaction histograms stay empty.
    """

    def __init__(self, transactions: TransactionMetrics | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._scrape_time = _ScrapeTime()
        registry.register(self._scrape_time)
        ProcessCollector(registry=registry)
        self.gauge(
            "umoc_build_info",
            "Always 1; the labels say which UMOC release (umoc.__version__) and Python this node runs",
            lambda: {(umoc.__version__, platform.python_version()): 1},
            ("version", "python"),
        )
        self.events = _Counts(
            "umoc_events", "Socket.IO events handled, by event and outcome (ok, error)", ("event", "outcome")
        )
        registry.register(self.events)
        self.event_latency = _Timings(
            "umoc_event_latency_seconds",
            "Time from an event's arrival to its answer, by event",
            ("event",),
            _EVENT_BUCKETS,
        )
        registry.register(self.event_latency)
        self.transactions = transactions if transactions is not None else TransactionMetrics()
        registry.register(self.transactions.seconds)
        registry.register(self.transactions.pool_wait)
        self.logins = Counter(
            "umoc_logins", "POST /api/login attempts, by outcome (ok, failed)", ["outcome"], registry=registry
        )
        self.ratelimit_refusals = Counter(
            "umoc_ratelimit_refusals", "Actions refused by a rate limit, by bucket", ["bucket"], registry=registry
        )
        self.overload_refusals = Counter(
            "umoc_overload_refusals",
            "Writes refused at once because the oldest write waiting to commit had waited past "
            "server.overload_wait, by edge (socket, bot, upload)",
            ["edge"],
            registry=registry,
        )
        self.messages_stored = _Counts("umoc_messages_stored", "Messages stored (sent by a client of this node)")
        registry.register(self.messages_stored)
        #: Push attempts by (kind, outcome): ``webpush``/``gateway`` and ``sent``, ``gone``, ``failed``,
        #: ``retried``, ``refused``, ``dropped``.
        self.pushes: PlainCounter[tuple[str, str]] = PlainCounter()
        #: Webhook deliveries by outcome: ``delivered``, ``retried``, ``dead_letter``.
        self.webhooks: PlainCounter[str] = PlainCounter()
        self.counter(
            "umoc_pushes",
            "Push attempts by kind (webpush, gateway) and outcome (sent, gone, failed, retried, refused, dropped)",
            lambda: dict(self.pushes),
            ("kind", "outcome"),
        )
        self.counter(
            "umoc_webhook_deliveries",
            "Webhook deliveries by outcome (delivered, retried, dead_letter)",
            lambda: dict(self.webhooks),
            "outcome",
        )
        # Per event: its label sets in `events` and its latency series.
        self._event_children: dict[str, tuple[tuple[str, str], tuple[str, str], _Series]] = {}

    # -- instruments ---------------------------------------------------------

    def event_done(self, event: str, ok: bool, seconds: float) -> None:
        """One Socket.IO event handled (``event`` from the route table, or ``unknown``)."""
        children = self._event_children.get(event)
        if children is None:
            children = self._event_children[event] = ((event, "ok"), (event, "error"), self.event_latency.labels(event))
        self.events.inc(1.0, children[0] if ok else children[1])
        children[2].observe(seconds)

    def count_push(self, kind: str, outcome: str) -> None:
        self.pushes[(kind, outcome)] += 1

    def count_webhook(self, outcome: str) -> None:
        self.webhooks[outcome] += 1

    def login(self, ok: bool) -> None:
        self.logins.labels("ok" if ok else "failed").inc()

    def refused(self, bucket: str) -> None:
        self.ratelimit_refusals.labels(bucket).inc()

    def overloaded(self, edge: str) -> None:
        """A write refused by ``server.overload_wait`` (``edge``: socket, bot, upload)."""
        self.overload_refusals.labels(edge).inc()

    # -- read at scrape time -------------------------------------------------------

    def gauge(self, name: str, documentation: str, read: Reading, label: Labels = None) -> None:
        """A gauge whose value ``read()`` gives when scraped."""
        self._scrape_time.entries.append((GaugeMetricFamily, name, documentation, label, read))

    def counter(self, name: str, documentation: str, read: Reading, label: Labels = None) -> None:
        """A counter kept elsewhere as a plain number (``name`` without ``_total``)."""
        self._scrape_time.entries.append((CounterMetricFamily, name, documentation, label, read))

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
