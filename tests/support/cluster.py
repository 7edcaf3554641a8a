"""Several nodes in this process on one database (PostgreSQL unless a test says SQLite) and one Redis.

PostgreSQL and Redis are required (else the tests skip); a test on SQLite needs Redis only.
"""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

from tests.support.client import Client
from tests.support.databases import NO_CLUSTER, REDIS_URL, reopenable_database
from tests.support.deferreds import blocking, inline
from tests.support.server import Server, ServerTestCase, test_config

__all__ = ["ClusterTestCase"]


class ClusterTestCase(ServerTestCase):
    """Starts no server by itself: each test starts the nodes it needs with `start_node`.

    ``backend``: the database the nodes share, PostgreSQL by default; a
    subclass may say ``"sqlite"`` (one file, both nodes in this process) and
    skip with `NO_REDIS` only.
    """

    skip = NO_CLUSTER
    backend = "postgres"

    @inline
    async def setUp(self) -> None:
        self.clients: list[Client] = []
        self.addCleanup(self._disconnect_clients)
        self.database = await reopenable_database(self, self.backend)
        #: A Redis key prefix of this test's own: user ids restart at 1 in every test's database.
        self.prefix = f"umoc-test-{uuid.uuid4().hex}:"

    def node_config(self, redis: dict[str, Any] | None = None, **sections: dict[str, Any]) -> Any:
        return test_config(
            tempfile.mkdtemp(prefix="umoc-srv-"),
            redis={"url": REDIS_URL, "prefix": self.prefix, **(redis or {})},
            **sections,
        )

    async def start_node(self, config: Any) -> Server:
        """A node on this test's database, subscribed to the bus."""
        node = await self.start_server(config, self.database())
        await node.service.redis_service.subscribed()
        return node

    async def connect_to(self, node: Server, login: dict[str, Any]) -> Client:
        """A stock client connected to ``node``, ``connection_successful`` read."""
        client = Client(node.url, login)
        self.clients.append(client)
        await blocking(client.connect)
        await client.expect("connection_successful")
        return client
