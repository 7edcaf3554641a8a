"""Finding the master through Sentinel: reading its answer, failing fast, refusing a replica.

The parsing runs alone; the rest against a real master, replica and
sentinel started here on loopback (``tests/support/sentinel.py``), skipped
without ``redis-server`` or without ``UMOC_TEST_REDIS`` (no Redis tests wanted).
"""

from __future__ import annotations

import txredisapi
from twisted.internet import endpoints, reactor
from twisted.trial import unittest

from tests.support.databases import NO_REDIS, REDIS_URL
from tests.support.deferreds import eventually, inline
from tests.support.sentinel import REDIS_SERVER, SentinelSet, free_port
from umoc.cluster.redisclient import RedisClient, _MasterFactory, redis_client
from umoc.cluster.sentinel import Sentinels, _usable_master
from umoc.config import RedisConfig


def reply(**fields: str) -> list[bytes]:
    return [item.encode() for pair in fields.items() for item in pair]


class UsableMasterTests(unittest.SynchronousTestCase):
    def test_a_live_master_gives_its_address(self) -> None:
        self.assertEqual(
            _usable_master(reply(name="umoc", ip="10.0.0.5", port="6380", flags="master")), ("10.0.0.5", 6380)
        )

    def test_a_master_held_down_gives_nothing_so_no_dead_address_is_tried(self) -> None:
        for flags in ("master,s_down", "master,s_down,o_down", "master,disconnected"):
            self.assertIsNone(_usable_master(reply(name="umoc", ip="10.0.0.5", port="6380", flags=flags)), flags)

    def test_an_error_or_a_broken_answer_gives_nothing(self) -> None:
        self.assertIsNone(_usable_master(txredisapi.ResponseError("ERR No such master with that name")))
        self.assertIsNone(_usable_master(reply(name="umoc", flags="master")))
        self.assertIsNone(_usable_master([b"name"]))


class NoSentinelTests(unittest.TestCase):
    @inline
    async def test_without_a_connected_sentinel_discovery_fails_at_once(self) -> None:
        sentinels = Sentinels([("127.0.0.1", free_port())], "umoc", reactor, 5.0)
        self.addCleanup(sentinels.close)
        with self.assertRaises(txredisapi.MasterNotFoundError):
            await sentinels.master()


class LiveSentinelTests(unittest.TestCase):
    if not REDIS_URL:
        skip = NO_REDIS
    elif REDIS_SERVER is None:
        skip = "redis-server is not installed: no master, replica and sentinel to ask"

    def setUp(self) -> None:
        self.redis = SentinelSet()
        self.addCleanup(self.redis.stop)
        self.redis.start()

    async def connected(self, client: RedisClient) -> None:
        self.addCleanup(client.close)
        self.assertTrue(await client.wait_connected(5.0))

    @inline
    async def test_commands_go_to_the_master_the_sentinel_names(self) -> None:
        client = redis_client(RedisConfig(sentinels=(self.redis.sentinels[0],), master_name="umoc"), reactor)
        await self.connected(client)
        await client.call("set", "k", "v")
        self.assertEqual(client.sentinels.current if client.sentinels else None, ("127.0.0.1", self.redis.master_port))
        role = await client.call("execute_command", "ROLE")
        self.assertEqual(role[0], "master")

    @inline
    async def test_an_unknown_master_name_fails_at_once(self) -> None:
        sentinels = Sentinels([("127.0.0.1", self.redis.sentinel_port)], "nosuch", reactor, 5.0)
        self.addCleanup(sentinels.close)
        # The sentinel connection comes up (else the error would only say that none is connected).
        await eventually(lambda: any(conn._factory.size > 0 for conn in sentinels._connections))
        with self.assertRaises(txredisapi.MasterNotFoundError) as refused:
            await sentinels.master()
        self.assertIn("no sentinel knows a live master", str(refused.exception))

    @inline
    async def test_a_replica_is_never_used_as_the_master(self) -> None:
        def connect(port: int) -> _MasterFactory:
            factory = _MasterFactory(None, None, 1, isLazy=True, convertNumbers=False)
            factory.startConnecting(endpoints.HostnameEndpoint(reactor, "127.0.0.1", port))
            self.addCleanup(factory.disconnect)
            return factory

        to_replica, to_master = connect(self.redis.replica_port), connect(self.redis.master_port)
        # Wait for the master's connection (a fixed 0.5 s could run out first on a loaded machine); the replica's,
        # made at the same moment, would have counted by then were its ROLE not checked.
        await eventually(lambda: to_master.size, 1)
        self.assertEqual((to_replica.size, to_master.size), (0, 1))
