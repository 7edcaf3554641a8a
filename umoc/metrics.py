"""Counters for ``GET /metrics`` in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from typing import Callable

__all__ = ["Metrics"]

_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class Metrics:
    """Cheap in-process counters; rendering happens only when scraped."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency_buckets = [0] * (len(_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.gauges: dict[str, Callable[[], float]] = {}
        #: Push attempts by (kind, outcome): ``webpush``/``gateway`` and ``sent``, ``gone``, ``failed``, ``dropped``.
        self.pushes: Counter[tuple[str, str]] = Counter()
        #: Webhook deliveries by outcome: ``delivered``, ``retried``, ``dead_letter``, ``dropped``.
        self.webhooks: Counter[str] = Counter()

    def count_push(self, kind: str, outcome: str) -> None:
        self.pushes[(kind, outcome)] += 1

    def count_webhook(self, outcome: str) -> None:
        self.webhooks[outcome] += 1

    def count_event(self, event: str) -> None:
        self.events[event[:64]] += 1

    def count_error(self, event: str) -> None:
        self.errors[event[:64]] += 1

    def observe_latency(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1
                return
        self.latency_buckets[-1] += 1

    def render(self) -> str:
        lines = []
        for name, gauge in sorted(self.gauges.items()):
            lines += [f"# TYPE umoc_{name} gauge", f"umoc_{name} {gauge()}"]
        lines.append("# TYPE umoc_events_total counter")
        lines += [f'umoc_events_total{{event="{_label(e)}"}} {n}' for e, n in sorted(self.events.items())]
        lines.append("# TYPE umoc_event_errors_total counter")
        lines += [f'umoc_event_errors_total{{event="{_label(e)}"}} {n}' for e, n in sorted(self.errors.items())]
        lines.append("# TYPE umoc_pushes_total counter")
        lines += [
            f'umoc_pushes_total{{kind="{_label(k)}",outcome="{_label(o)}"}} {n}'
            for (k, o), n in sorted(self.pushes.items())
        ]
        lines.append("# TYPE umoc_webhook_deliveries_total counter")
        lines += [
            f'umoc_webhook_deliveries_total{{outcome="{_label(o)}"}} {n}' for o, n in sorted(self.webhooks.items())
        ]
        lines.append("# TYPE umoc_event_latency_seconds histogram")
        running = 0
        for bound, count in zip(_BUCKETS, self.latency_buckets[:-1], strict=True):
            running += count
            lines.append(f'umoc_event_latency_seconds_bucket{{le="{bound}"}} {running}')
        lines.append(f'umoc_event_latency_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        lines.append(f"umoc_event_latency_seconds_sum {self.latency_sum:.6f}")
        lines.append(f"umoc_event_latency_seconds_count {self.latency_count}")
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
