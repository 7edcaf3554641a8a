"""A frozen database answers nobody late: every call has a deadline, and service resumes by itself.

PostgreSQL is frozen with a TCP proxy in the test that stops forwarding
(the server never sees the queries, as with SIGSTOP); SQLite with another
connection holding the file's write lock.  ``send_message`` and login are
answered with an error within the deadline (and ``get_chat_history`` too
on the frozen PostgreSQL; SQLite's reads run on WAL readers and answer at
once, showing every acknowledged message), the client that was refused
finds nothing half-written, and once the database is back the same calls
work without a restart.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from typing import Any

from twisted.internet import reactor
from twisted.protocols import portforward

from tests.support.chat import ChatCase, Person
from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, postgres_schema
from tests.support.deferreds import inline, sleep
from umoc.storage.database import Database, Deadline

DEADLINE = 1.0
UNAVAILABLE = "The database is unavailable; try again shortly"


class FreezableClient(portforward.ProxyClient):
    """The proxy's side towards the database: a connection made while frozen starts frozen."""

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.peer.factory.frozen:
            self.transport.pauseProducing()
            self.peer.transport.pauseProducing()


class FreezableClientFactory(portforward.ProxyClientFactory):
    protocol = FreezableClient


class FreezableServer(portforward.ProxyServer):
    clientProtocolFactory = FreezableClientFactory


class FreezableProxy(portforward.ProxyFactory):
    """A TCP proxy whose connections can be frozen: bytes stop flowing both ways until thawed."""

    protocol = FreezableServer

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.servers: list[Any] = []
        self.frozen = False

    def buildProtocol(self, addr: Any) -> Any:
        server = super().buildProtocol(addr)
        self.servers.append(server)
        return server

    def _transports(self) -> list[Any]:
        found = []
        for server in self.servers:
            found.append(server.transport)
            if server.peer is not None:
                found.append(server.peer.transport)
        return [t for t in found if t is not None]

    def freeze(self) -> None:
        self.frozen = True
        for transport in self._transports():
            transport.pauseProducing()

    def thaw(self) -> None:
        self.frozen = False
        for transport in self._transports():
            transport.resumeProducing()


class DeadlineMixin:
    """Subclasses give `database()` and `freeze()`/`thaw()`."""

    #: Whether a read fails too while frozen (SQLite's reads do not need the write lock).
    reads_frozen = True

    async def frozen_calls_fail_in_time(self, alice: Person, bob: Person) -> None:
        before = await self.count_messages()
        started = time.monotonic()
        answer = await alice.call("send_message", recipient_id=bob.id, content="while frozen", type="text")
        self.assertEqual(answer, {"error": UNAVAILABLE, "code": "unavailable"})
        answer = await alice.call("get_chat_history", chat_id=bob.id)
        if self.reads_frozen:
            self.assertEqual(answer, {"error": UNAVAILABLE, "code": "unavailable"})
        else:
            self.assertEqual(answer["messages"], [], "the read answered; nothing refused is there")
        code, body = await self.server.post("/api/login", {"username": "alice", "password": "correct horse battery"})
        self.assertEqual((code, body), (503, {"error": UNAVAILABLE, "code": "unavailable"}))
        self.assertLess(time.monotonic() - started, 3 * (DEADLINE + 1.0), "each call answered within its deadline")
        return before

    @inline
    async def test_frozen_database_answers_with_an_error_in_time_and_service_resumes(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        before = await self.count_messages()
        self.freeze()
        try:
            await self.frozen_calls_fail_in_time(alice, bob)
        finally:
            self.thaw()
        for _ in range(100):  # the stuck transactions finish, and are rolled back
            answer = await alice.call("send_message", recipient_id=bob.id, content="after", type="text")
            if "error" not in answer:
                break
            await sleep(0.2)
        self.assertEqual(answer["content"], "after")
        history = await alice.call("get_chat_history", chat_id=bob.id)
        self.assertEqual([m["content"] for m in history["messages"]], ["after"], "nothing refused was stored")
        self.assertEqual(await self.count_messages(), before + 1)
        await self.server.login("alice")


class PostgresDeadlineTests(DeadlineMixin, ChatCase):
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    @inline
    async def setUp(self) -> None:
        from urllib.parse import urlsplit

        target = urlsplit(POSTGRES_DSN)
        self.proxy = FreezableProxy(target.hostname or "127.0.0.1", target.port or 5432)
        port = reactor.listenTCP(0, self.proxy, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        proxied = POSTGRES_DSN.replace(f"{target.hostname}:{target.port or 5432}", f"127.0.0.1:{port.getHost().port}")
        self.schema = await postgres_schema(self)
        db = Database.postgres(proxied, 1, 5, schema=self.schema, deadline=Deadline(reactor, DEADLINE, DEADLINE))
        self.server = await self.start_server(db=db)
        self.clients = []
        self.addCleanup(self._disconnect_clients)
        self.addCleanup(self.thaw)

    def freeze(self) -> None:
        self.proxy.freeze()

    def thaw(self) -> None:
        self.proxy.thaw()

    async def count_messages(self) -> int:
        import psycopg2

        conn = psycopg2.connect(POSTGRES_DSN, options=f"-c search_path={self.schema}")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM messages")
                return cur.fetchone()[0]
        finally:
            conn.close()


class SqliteDeadlineTests(DeadlineMixin, ChatCase):
    reads_frozen = False

    @inline
    async def test_reads_answer_at_once_while_another_process_holds_the_write_lock(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        sent = await alice.call("send_message", recipient_id=bob.id, content="acknowledged", type="text")
        self.assertEqual(sent["content"], "acknowledged")
        self.freeze()
        try:
            # The lock is held until thaw: a read that waited for it would fail at its deadline, so answers prove
            # the reads never wait (timing two round trips against half a second raced a loaded machine).
            history = await bob.call("get_chat_history", chat_id=alice.id)
            chats = await bob.call("get_chats")
            self.assertEqual([m["content"] for m in history["messages"]], ["acknowledged"], "an acked write is seen")
            self.assertEqual([c["last_message"]["content"] for c in chats], ["acknowledged"])
            answer = await alice.call("send_message", recipient_id=bob.id, content="while locked", type="text")
            self.assertEqual(answer, {"error": UNAVAILABLE, "code": "unavailable"}, "a write still meets its deadline")
        finally:
            self.thaw()

    @inline
    async def setUp(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(prefix="umoc-deadline-"), "umoc.sqlite3")
        db = Database.sqlite(self.path, Deadline(reactor, DEADLINE, DEADLINE))
        self.server = await self.start_server(db=db)
        self.clients = []
        self.addCleanup(self._disconnect_clients)
        self.locker: sqlite3.Connection | None = None
        self.addCleanup(self.thaw)

    def freeze(self) -> None:
        self.locker = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.locker.execute("BEGIN EXCLUSIVE")

    def thaw(self) -> None:
        if self.locker is not None:
            self.locker.execute("ROLLBACK")
            self.locker.close()
            self.locker = None

    async def count_messages(self) -> int:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        finally:
            conn.close()
