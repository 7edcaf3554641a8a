"""``/metrics`` behind a bearer token, or on an endpoint of its own (``metrics.token``, ``metrics.listen``)."""

from __future__ import annotations

import socket

import treq

from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from tests.support.server import ServerTestCase, test_config
from tests.support.web import request
from umoc.config import Config


class MetricsTokenTests(ServerTestCase):
    config_overrides = {"metrics": {"token": "scrape-me-please"}}

    @inline
    async def test_metrics_need_the_token(self) -> None:
        url = self.server.url + "/metrics"
        response = await treq.get(url, persistent=False)
        self.assertEqual(response.code, 401)
        response = await treq.get(url, headers={"Authorization": "Bearer wrong"}, persistent=False)
        self.assertEqual(response.code, 401)
        response = await treq.get(url, headers={"Authorization": "Bearer scrape-me-please"}, persistent=False)
        self.assertEqual(response.code, 200)
        self.assertIn("umoc_connected_sockets", await response.text())


class MetricsListenTests(ServerTestCase):
    def config_for_test(self, data_dir: str) -> Config:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.metrics_port = probe.getsockname()[1]
        probe.close()
        return test_config(data_dir, metrics={"listen": f"tcp:{self.metrics_port}:interface=127.0.0.1"})

    @inline
    async def test_metrics_are_served_on_their_own_port_only(self) -> None:
        response = await treq.get(f"http://127.0.0.1:{self.metrics_port}/metrics", persistent=False)
        self.assertEqual(response.code, 200)
        self.assertIn("umoc_events_total", await response.text())
        response = await treq.get(self.server.url + "/metrics", persistent=False)
        self.assertEqual(response.code, 404)
        response = await treq.get(f"http://127.0.0.1:{self.metrics_port}/api/login", persistent=False)
        self.assertEqual(response.code, 404)


class HealthResourceTests(NodeTestCase):
    """``/healthz``, ``/readyz`` and ``/metrics`` rendered in-process through the node's Site."""

    use_clock = False

    @inline
    async def test_healthz_is_liveness_and_readyz_asks_the_database(self) -> None:
        live = await request(self.node.site, "GET", "/healthz")
        self.assertEqual((live.code, live.json()), (200, {"status": "ok"}))
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
