"""Several nodes when things break: Redis gaps, a crashed node, a stopping node.

Real PostgreSQL and Redis, two or three nodes in this process (as
``tests/e2e/test_multinode.py``).  The Redis outage runs against a private
``redis-server`` this test starts and kills on a free port, never against the
shared one.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import threading
import time
from typing import Any

import socketio
from twisted.application.internet import TimerService
from twisted.internet import reactor
from twisted.protocols import portforward

from tests.support.client import Client
from tests.support.cluster import ClusterTestCase
from tests.support.databases import REDIS_URL
from tests.support.deferreds import blocking, inline, sleep
from tests.support.server import Server

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A throw-away redis-server on its own port, to kill and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class ClusterCase(ClusterTestCase):
    """Nodes on one PostgreSQL database and one Redis, people with sockets on them."""

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self._inboxes: dict[int, list[dict[str, Any]]] = {}

    async def start_nodes(
        self, count: int, redis_url: str = REDIS_URL, presence_ttl: float | None = None, **sections: dict[str, Any]
    ) -> list[Server]:
        nodes = []
        for _ in range(count):
            config = self.node_config({"url": redis_url, "bus_check_interval": "0.2s"}, **sections)
            if presence_ttl is not None:
                # Shorter than the configuration allows (3s), to keep the test short.
                config = dataclasses.replace(config, redis=dataclasses.replace(config.redis, presence_ttl=presence_ttl))
            nodes.append(await self.start_node(config))
        return nodes

    async def person(self, node: Server, name: str) -> tuple[dict[str, Any], Client]:
        login = await node.user(name)
        return login, await self.connect_to(node, login)

    async def befriend(self, a: tuple[dict[str, Any], Client], b: tuple[dict[str, Any], Client]) -> None:
        (login_a, client_a), (login_b, client_b) = a, b
        added = await client_a.call("add_contact", client_a.with_session(contact_username=login_b["username"]))
        self.assertEqual(added.get("status"), "NEW", added)
        accepted = await client_b.call("accept_contact", client_b.with_session(contact_id=login_a["user_id"]))
        self.assertEqual(accepted.get("status"), "FRIEND", accepted)
        await sleep(0.3)
        for client in (client_a, client_b):
            client.drain_all()

    async def send(self, sender: tuple[dict[str, Any], Client], to: dict[str, Any], text: str) -> None:
        client = sender[1]
        answer = await client.call("send_message", client.with_session(recipient_id=to["user_id"], content=text))
        self.assertEqual(answer.get("content"), text, answer)

    async def received(self, client: Client, sender_id: int, expected: list[str], timeout: float = 15) -> None:
        """``client`` gets exactly ``expected`` from ``sender_id``, each once, in order, and nothing more."""
        inbox = self._inboxes.setdefault(id(client), [])

        def got() -> list[str]:
            inbox.extend(client.drain("new_message"))
            return [m["content"] for m in inbox if m["sender_id"] == sender_id]

        deadline = time.monotonic() + timeout
        while len(got()) < len(expected) and time.monotonic() < deadline:
            await sleep(0.05)
        await sleep(0.5)
        self.assertEqual(got(), expected)

    async def wait_for(self, probe: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            self.assertLess(time.monotonic(), deadline, "condition not met in time")
            await sleep(0.05)


class BusGapTests(ClusterCase):
    """Every acknowledged message reaches every online recipient exactly once, whatever happens to Redis."""

    async def traffic(self, alice: Any, bob: Any, rounds: int, during: Any) -> tuple[list[str], list[str]]:
        """Alice and Bob write to each other (each send acknowledged); ``during`` runs at the middle round."""
        from_alice, from_bob = [], []
        for n in range(rounds):
            if n == rounds // 2:
                await during()
            text = f"a{n}"
            await self.send(alice, bob[0], text)
            from_alice.append(text)
            text = f"b{n}"
            await self.send(bob, alice[0], text)
            from_bob.append(text)
        return from_alice, from_bob

    @inline
    async def test_redis_killed_mid_traffic_then_restarted(self) -> None:
        if REDIS_SERVER is None:
            raise self.skipTest("redis-server is not installed")
        private = PrivateRedis()
        private.start()
        self.addCleanup(private.kill)
        a, b = await self.start_nodes(2, private.url)
        alice, bob = await self.person(a, "alice"), await self.person(b, "bob")
        await self.befriend(alice, bob)

        async def outage() -> None:
            private.kill()
            for n in range(10):  # stored and acknowledged while Redis is away
                await self.send(alice, bob[0], f"away-a{n}")
                await self.send(bob, alice[0], f"away-b{n}")
                await sleep(0.1)
            private.start()

        sent_a, sent_b = await self.traffic(alice, bob, 10, outage)
        away_a, away_b = [f"away-a{n}" for n in range(10)], [f"away-b{n}" for n in range(10)]
        expected_a = sent_a[:5] + away_a + sent_a[5:]
        expected_b = sent_b[:5] + away_b + sent_b[5:]
        await self.received(bob[1], alice[0]["user_id"], expected_a)
        await self.received(alice[1], bob[0]["user_id"], expected_b)
        # And each sender saw its own messages once too.
        await self.received(alice[1], alice[0]["user_id"], expected_a)
        self.assertGreater(b.service.node.cluster.catchup.replayed, 0)

    @inline
    async def test_subscriber_connection_cut_mid_traffic(self) -> None:
        a, b = await self.start_nodes(2)
        alice, bob = await self.person(a, "alice"), await self.person(b, "bob")
        await self.befriend(alice, bob)

        async def cut() -> None:
            b.service.redis_service.subscriber.reset()
            for n in range(5):
                await self.send(alice, bob[0], f"cut{n}")

        sent_a, sent_b = await self.traffic(alice, bob, 10, cut)
        await self.received(bob[1], alice[0]["user_id"], sent_a[:5] + [f"cut{n}" for n in range(5)] + sent_a[5:])
        await self.received(alice[1], bob[0]["user_id"], sent_b)
        self.assertGreater(b.service.node.cluster.catchup.replayed, 0, "the gap was caught up from the database")

    @inline
    async def test_command_connection_cut_the_other_node_catches_up(self) -> None:
        a, b = await self.start_nodes(2)
        alice, bob = await self.person(a, "alice"), await self.person(b, "bob")
        await self.befriend(alice, bob)
        redis = a.service.node.cluster.redis
        redis._conn._factory.initialDelay = redis._conn._factory.maxDelay = 1.0  # a gap long enough to send in

        async def cut() -> None:
            redis._conn._factory.pool[0].transport.abortConnection()
            await self.wait_for(lambda: not redis.connected)
            for n in range(5):
                await self.send(alice, bob[0], f"cut{n}")  # stored, but A cannot publish it

        sent_a, _ = await self.traffic(alice, bob, 6, cut)
        await self.received(bob[1], alice[0]["user_id"], sent_a[:3] + [f"cut{n}" for n in range(5)] + sent_a[3:])
        self.assertGreater(b.service.node.cluster.catchup.replayed, 0, "B caught up at A's request")

    @inline
    async def test_subscription_dropped_silently(self) -> None:
        a, b = await self.start_nodes(2, engineio={"recovery_window": 60})
        alice, bob = await self.person(a, "alice"), await self.person(b, "bob")
        await self.befriend(alice, bob)
        subscriber = b.service.redis_service.subscriber

        async def drop() -> None:
            # Redis stops sending to B, and nothing tells B so.
            await subscriber.protocol.unsubscribe(b.service.node.cluster.channel)
            for n in range(5):
                await self.send(alice, bob[0], f"silent{n}")

        sent_a, sent_b = await self.traffic(alice, bob, 10, drop)
        expected = sent_a[:5] + [f"silent{n}" for n in range(5)] + sent_a[5:]
        await self.received(bob[1], alice[0]["user_id"], expected)
        await self.received(alice[1], bob[0]["user_id"], sent_b)
        self.assertIsNone(b.service.node.cluster.watch.gap_start)
        self.assertGreater(b.service.node.cluster.catchup.replayed, 0, "the gap was caught up from the database")


class IdleGapTests(ClusterCase):
    """A gap while nobody is connected must not switch the catch-up of later gaps off (issue 22, G4)."""

    async def outage(self, private: PrivateRedis, nodes: list[Server], during: Any = None) -> None:
        """Redis killed until every node noticed, ``during`` run, Redis back until every node caught up."""
        watches = [node.service.node.cluster.watch for node in nodes]
        private.kill()
        await self.wait_for(lambda: all(watch.gap_start is not None for watch in watches))
        if during is not None:
            await during()
        private.start()
        catchups = [node.service.node.cluster.catchup for node in nodes]
        await self.wait_for(
            lambda: all(watch.gap_start is None for watch in watches) and not any(c.running for c in catchups),
            timeout=20,
        )

    @inline
    async def test_after_a_gap_with_nobody_connected_the_next_gap_is_still_caught_up(self) -> None:
        if REDIS_SERVER is None:
            raise self.skipTest("redis-server is not installed")
        private = PrivateRedis()
        private.start()
        self.addCleanup(private.kill)
        a, b = await self.start_nodes(2, private.url)
        await self.outage(private, [a, b])  # a blip with nobody on either node

        alice, bob = await self.person(a, "alice"), await self.person(b, "bob")
        await self.befriend(alice, bob)
        before = await alice[1].call(
            "send_message", alice[1].with_session(recipient_id=bob[0]["user_id"], content="before")
        )
        await self.received(bob[1], alice[0]["user_id"], ["before"])

        async def write() -> None:
            # Stored on A and acknowledged while Redis is away: B hears of it only from the database.
            await self.send(alice, bob[0], "during the gap")
            edited = await alice[1].call(
                "edit_message", alice[1].with_session(message_id=before["message_id"], content="before, edited")
            )
            self.assertEqual(edited.get("content"), "before, edited", edited)

        await self.outage(private, [a, b], write)
        await self.received(bob[1], alice[0]["user_id"], ["before", "during the gap"])
        self.assertGreater(b.service.node.cluster.catchup.replayed, 0, "B caught the second gap up")

        # The edit is replayed live too, from the change feed, and no socket is told to sync.
        edited = await bob[1].expect("message_edited")
        self.assertEqual((edited["message_id"], edited["content"]), (before["message_id"], "before, edited"))
        await sleep(0.3)
        self.assertEqual(bob[1].drain("message_edited"), [], "once")
        self.assertEqual(bob[1].drain("sync_needed"), [], "an exact catch-up needs no hint")


class NodeGoneTests(ClusterCase):
    """A node that dies or stops: its users' friends elsewhere are told, once."""

    @inline
    async def test_crashed_node_users_are_announced_offline_once_within_presence_ttl(self) -> None:
        ttl = 1.5
        a, b, c = await self.start_nodes(3, presence_ttl=ttl)
        alice, bob, carol = await self.person(a, "alice"), await self.person(b, "bob"), await self.person(c, "carol")
        await self.befriend(alice, bob)
        await self.befriend(alice, carol)
        # A "crashes": no more heartbeats or checks, Redis gone without a goodbye, then its sockets drop.
        for child in list(a.service):
            if isinstance(child, TimerService):
                await child.stopService()
        crashed_at = time.monotonic()
        await a.service.redis_service.subscriber.close()
        await a.service.node.cluster.redis.close()
        await blocking(alice[1].close)
        for friend in (bob, carol):
            status = await friend[1].expect("user_status", timeout=ttl + 2)
            self.assertEqual((status["user_id"], status["status"]), (alice[0]["user_id"], "offline"))
            self.assertIn("last_seen", status)
        self.assertLessEqual(time.monotonic() - crashed_at, ttl + 0.5)
        await sleep(ttl)
        for friend in (bob, carol):
            self.assertEqual(friend[1].drain("user_status"), [], "announced once across the survivors")

    @inline
    async def test_stopping_a_node_disconnects_its_clients_and_tells_their_friends(self) -> None:
        a, b = await self.start_nodes(2)
        alice, bob = await self.person(a, "alice"), await self.person(b, "bob")
        await self.befriend(alice, bob)
        disconnected = threading.Event()
        alice[1].sio.on("disconnect", lambda *args: disconnected.set())
        await a.service.stopService()
        self.assertTrue(await blocking(disconnected.wait, 5))
        status = await bob[1].expect("user_status", timeout=5)
        self.assertEqual((status["user_id"], status["status"]), (alice[0]["user_id"], "offline"))
        await sleep(0.5)
        self.assertEqual(bob[1].drain("user_status"), [])

    @inline
    async def test_a_stock_client_reconnects_to_another_node_when_its_node_stops(self) -> None:
        a, b = await self.start_nodes(2)
        login = await a.user("alice")
        # A load balancer in front: new connections go to whichever node it points at.
        balancer = portforward.ProxyFactory("127.0.0.1", a.port)
        listening = reactor.listenTCP(0, balancer, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        url = f"http://127.0.0.1:{listening.getHost().port}"
        sio = socketio.Client(reconnection=True, reconnection_delay=0.1, reconnection_delay_max=0.5)
        self.addCleanup(blocking, sio.disconnect)
        connected = threading.Semaphore(0)
        sio.on("connection_successful", lambda data: connected.release())
        query = f"/?sessionID={login['sessionID']}&token={login['token']}"
        await blocking(sio.connect, url + query, transports=["websocket"], wait_timeout=10)
        self.assertTrue(await blocking(connected.acquire, True, 5))
        balancer.port = b.port
        await a.service.stopService()
        self.assertTrue(await blocking(connected.acquire, True, 10), "reconnected through the balancer")
        await self.wait_for(lambda: b.services.hub.is_local(login["user_id"]))
