"""Every metric the docs and the shipped Grafana dashboard name is one a node exposes.

The names a node exposes are read from a real node's registry (SQLite, no
Redis), plus the Redis bus's metrics registered on a registry of their own
(they exist only on a node with Redis): families (``umoc_events``), their
samples (``umoc_events_total``, ``umoc_event_latency_seconds_bucket``) and
prometheus-client's ``process_*``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from umoc.metrics import Metrics
from umoc.wiring import _redis_metrics, _replica_metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "etc" / "grafana-umoc.json"
#: The pages that document metrics as they are now (the CHANGELOG records old names on purpose).
PAGES = [ROOT / "docs" / "api.md", ROOT / "docs" / "operator-guide.md", ROOT / "README.rst"]
_METRIC = re.compile(r"\b((?:umoc|process)_[a-z][a-z_]*[a-z])(?![a-z_])")  # not a prefix such as `umoc_port_...`


#: The series a family of each type has, whether or not a labelled child exists yet.
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def _names(metrics: Metrics) -> set[str]:
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def _redis_names() -> set[str]:
    metrics = Metrics()
    cluster = SimpleNamespace(
        bus=SimpleNamespace(published=0, publish_failures=0),
        receiver=SimpleNamespace(received={}),
        redis=SimpleNamespace(connected=True),
        watch=SimpleNamespace(gap_start=None),
        catchup=SimpleNamespace(replayed=0, hinted=0),
    )
    _redis_metrics(metrics, cluster)  # type: ignore[arg-type]
    return _names(metrics)


def _replica_names() -> set[str]:
    metrics = Metrics()
    _replica_metrics(metrics, SimpleNamespace(lag=lambda: 0.5, served={"replica": 0, "primary": 0}))  # type: ignore[arg-type]
    return _names(metrics)


def _dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    texts = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    texts += [variable["definition"] for variable in dashboard["templating"]["list"]]
    return {name for text in texts for name in _METRIC.findall(text)}


class MetricNamesTests(NodeTestCase):
    use_clock = False

    def exposed(self) -> set[str]:
        return _names(self.services.metrics) | _redis_names() | _replica_names()

    @inline
    async def test_every_metric_in_the_grafana_dashboard_exists(self) -> None:
        named = _dashboard_metrics()
        self.assertIn("umoc_build_info", named)
        self.assertIn("process_resident_memory_bytes", named)
        self.assertEqual(named - self.exposed(), set())

    @inline
    async def test_every_metric_the_docs_name_exists(self) -> None:
        missing = {}
        exposed = self.exposed()
        for page in PAGES:
            named = {m.group(1) for m in re.finditer(r"`" + _METRIC.pattern, page.read_text(encoding="utf-8"))}
            if named - exposed:
                missing[page.name] = sorted(named - exposed)
        self.assertEqual(missing, {})
