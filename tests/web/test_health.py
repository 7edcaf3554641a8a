"""``/metrics`` behind a bearer token, or on an endpoint of its own (``metrics.token``, ``metrics.listen``)."""

from __future__ import annotations

import platform

import umoc
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from tests.support.node import NodeTestCase
from tests.support.web import request


class MetricsTokenTests(InProcessChatCase):
    config_overrides = {"metrics": {"token": "scrape-me-please"}}

    @inline
    async def test_metrics_need_the_token(self) -> None:
        response = await self.server.http("GET", "/metrics")
        self.assertEqual(response.code, 401)
        response = await self.server.http("GET", "/metrics", headers={"Authorization": "Bearer wrong"})
        self.assertEqual(response.code, 401)
        response = await self.server.http("GET", "/metrics", headers={"Authorization": "Bearer scrape-me-please"})
        self.assertEqual(response.code, 200)
        self.assertIn("umoc_connected_sockets", response.text())


class HealthResourceTests(NodeTestCase):
    """``/healthz``, ``/readyz`` and ``/metrics`` rendered in-process through the node's Site."""

    use_clock = False

    @inline
    async def test_healthz_is_liveness_and_readyz_asks_the_database(self) -> None:
        live = await request(self.node.site, "GET", "/healthz")
        self.assertEqual((live.code, live.json()), (200, {"status": "ok", "version": umoc.__version__}))
        ready = await request(self.node.site, "GET", "/readyz")
        self.assertEqual((ready.code, ready.json()), (200, {"database": True, "status": "ok"}))
        self.storage.close()
        gone = await request(self.node.site, "GET", "/readyz")
        self.assertEqual((gone.code, gone.json()), (503, {"database": False, "status": "unready"}))

    @inline
    async def test_metrics_are_prometheus_text_with_the_socket_gauges(self) -> None:
        response = await request(self.node.site, "GET", "/metrics")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        self.assertIn("connected_sockets", response.body.decode())

    @inline
    async def test_metrics_have_build_info_and_process_metrics(self) -> None:
        body = (await request(self.node.site, "GET", "/metrics")).body.decode()
        python = platform.python_version()
        self.assertIn(f'umoc_build_info{{python="{python}",version="{umoc.__version__}"}} 1.0', body)
        for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
            self.assertRegex(body, rf"(?m)^{name} \d")
