"""``GET /metrics`` after some traffic: it parses as Prometheus text and has every family, with HELP."""

from __future__ import annotations

import socket
import uuid

import treq
from prometheus_client.parser import text_string_to_metric_families

from tests.support.chat import ChatCase
from tests.support.databases import REDIS_URL
from tests.support.deferreds import inline
from tests.support.server import ServerTestCase, test_config
from umoc.config import Config
from umoc.metrics import Metrics

#: Families every node has, and (with Redis) the bus's.
NODE_FAMILIES = {
    "umoc_connected_sockets",
    "umoc_connected_users",
    "umoc_events",
    "umoc_event_latency_seconds",
    "umoc_db_transaction_seconds",
    "umoc_db_pool_wait_seconds",
    "umoc_logins",
    "umoc_ratelimit_refusals",
    "umoc_messages_stored",
    "umoc_messages_delivered",
    "umoc_pushes",
    "umoc_webhook_deliveries",
    "umoc_push_queue",
    "umoc_webhook_queue",
    "umoc_password_hashes",
    "umoc_password_hashes_refused",
}
REDIS_FAMILIES = {
    "umoc_bus_published",
    "umoc_bus_publish_failures",
    "umoc_bus_received",
    "umoc_redis_connected",
    "umoc_bus_ok",
    "umoc_catchup_replayed",
    "umoc_catchup_hints",
}


def samples(text: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}}."""
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


class MetricsAfterTrafficTests(ChatCase):
    config_overrides = {"ratelimits": {"login_name": {"rate": 1, "per": "1h", "burst": 4}}}

    def config_for_test(self, data_dir: str) -> Config:
        sections: dict = dict(self.config_overrides)
        if REDIS_URL:
            sections["redis"] = {"url": REDIS_URL, "prefix": f"umoc-test-{uuid.uuid4().hex}:", "timeout": "5s"}
        return test_config(data_dir, **sections)

    async def scrape(self) -> tuple[str, str]:
        response = await treq.get(self.server.url + "/metrics", persistent=False)
        self.assertEqual(response.code, 200)
        return response.headers.getRawHeaders("content-type")[0], await response.text()

    @inline
    async def test_metrics_parse_and_count_the_traffic(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        sent = await alice.call("send_message", recipient_id=bob.id, content="hello", type="text")
        self.assertNotIn("error", sent)
        await bob.client.expect("new_message")
        await alice.call("no_such_event")
        for _ in range(4):  # wrong passwords until the login_name bucket refuses
            await self.server.post("/api/login", {"username": "alice", "password": "wrong password"})

        content_type, text = await self.scrape()
        self.assertTrue(content_type.startswith("text/plain"))
        families = {f.name: f for f in text_string_to_metric_families(text)}
        expected = NODE_FAMILIES | (REDIS_FAMILIES if REDIS_URL else set())
        self.assertEqual(expected - set(families), set())
        for name in expected:
            self.assertTrue(families[name].documentation, f"{name} has no HELP")
        found = samples(text)
        self.assertEqual(found["umoc_connected_sockets"][(("transport", "websocket"),)], 2)
        self.assertEqual(found["umoc_connected_users"][()], 2)
        self.assertEqual(found["umoc_events_total"][(("event", "send_message"), ("outcome", "ok"))], 1)
        self.assertEqual(found["umoc_events_total"][(("event", "unknown"), ("outcome", "error"))], 1)
        self.assertEqual(found["umoc_event_latency_seconds_count"][(("event", "send_message"),)], 1)
        self.assertEqual(found["umoc_messages_stored_total"][()], 1)
        self.assertEqual(found["umoc_messages_delivered_total"][()], 2)  # bob's socket and alice's own
        self.assertEqual(found["umoc_logins_total"][(("outcome", "ok"),)], 2)
        self.assertEqual(found["umoc_logins_total"][(("outcome", "failed"),)], 3)
        self.assertEqual(found["umoc_ratelimit_refusals_total"][(("bucket", "login_name"),)], 1)
        transactions = found["umoc_db_transaction_seconds_count"]
        # 2 logins, then 3 wrong passwords (the 4th attempt was refused before the database)
        self.assertEqual(transactions[(("outcome", "ok"), ("transaction", "users.credentials"))], 5)
        self.assertGreaterEqual(transactions[(("outcome", "ok"), ("transaction", "batch"))], 1)  # group commit
        # The one message sent, under its own name too, beside the batch it shared.
        self.assertEqual(transactions[(("outcome", "ok"), ("transaction", "messages.post"))], 1)
        self.assertGreater(found["umoc_db_pool_wait_seconds_count"][()], 5)
        if REDIS_URL:
            self.assertEqual(found["umoc_redis_connected"][()], 1)
            self.assertGreaterEqual(found["umoc_bus_published_total"][()], 1)


class OneRegistryPerNodeTests(ServerTestCase):
    @inline
    async def test_two_nodes_in_one_process_count_apart(self) -> None:
        other = await self.start_server()
        await other.user("carol")
        mine = samples(await (await treq.get(self.server.url + "/metrics", persistent=False)).text())
        theirs = samples(await (await treq.get(other.url + "/metrics", persistent=False)).text())
        self.assertEqual(theirs["umoc_logins_total"][(("outcome", "ok"),)], 1)
        self.assertNotIn((("outcome", "ok"),), mine.get("umoc_logins_total", {}))

    def test_metrics_objects_do_not_share_a_registry(self) -> None:
        self.assertIsNot(Metrics().registry, Metrics().registry)


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
