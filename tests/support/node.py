"""A node built in-process by ``build_node`` over a real SQLite database: no port, no client threads.

Events go straight to ``node.socketapp.on_event`` from `FakeSocket` s and
their acks are awaited as Deferreds; HTTP requests are rendered through the
node's `Site` (``tests.support.web``).  Storage still runs in adbapi's
threads, so tests wait on Deferreds, never on sleeps.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from tests.support.databases import DatabaseTestCase
from tests.support.deferreds import inline
from tests.support.fakes import FakeSocket
from tests.support.server import test_config
from umoc.credentials import new_token, token_digest
from umoc.records.sessions import NewSession
from umoc.storage.users import User
from umoc.wiring import Node, build_node

__all__ = ["NodeTestCase"]


class NodeTestCase(DatabaseTestCase):
    """``self.node`` over this test's database; ``use_clock`` puts it on a `Clock` instead of the reactor.

    A node that hashes passwords (registration, login) needs the real
    reactor: its hashing pool hands results back with ``callFromThread``.
    """

    use_clock = True
    config_overrides: dict[str, dict[str, Any]] = {"ratelimits": {"enabled": False}}

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        if self.use_clock:
            self.clock: Any = Clock()
            self.clock.advance(1_700_000_000)
        else:
            self.clock = reactor
        self.config = test_config(self.mktemp(), **self.config_overrides)
        self.node: Node = build_node(self.config, self.clock, self.storage)
        self.services = self.node.services
        self.services.sessions.start()  # the password hashing pool, as UmocService starts it
        self.addCleanup(self.services.sessions.stop)
        self._ack_ids = itertools.count(1)

    async def user(self, name: str) -> User:
        """A user made through storage (no password hashing): enough for events."""
        return await self.storage.users.create(name, "not a hash", self.clock.seconds())

    async def connected(self, name: str) -> FakeSocket:
        """A user with a live session and one socket the app has accepted."""
        user = await self.user(name)
        session_id, now = f"session-{name}", self.clock.seconds()
        await self.storage.users.create_session(
            NewSession(user.id, session_id, token_digest(new_token()), now, now + 3600), 3
        )
        socket = FakeSocket(user.id, session_id, name)
        self.node.socketapp.on_connect(socket)  # type: ignore[arg-type]
        self.addCleanup(lambda: defer.ensureDeferred(self._disconnect(socket)))
        await self.settled()
        return socket

    async def call(self, socket: FakeSocket, event: str, **payload: Any) -> Any:
        """Dispatch ``event`` as the client would, with an ack and its own sessionID; the ack's payload."""
        ack_id = next(self._ack_ids)
        answer = socket.answer(ack_id)
        args = [{"sessionID": socket.session_id, **payload}]
        self.node.socketapp.on_event(socket, event, args, ack_id)  # type: ignore[arg-type]
        return await answer

    async def settled(self) -> None:
        """Wait for the events under way and the status announcements they started."""
        await self.node.socketapp.idle()

    async def _disconnect(self, socket: FakeSocket) -> None:
        self.node.socketapp.on_disconnect(socket, "test over")  # type: ignore[arg-type]
        await self.settled()
