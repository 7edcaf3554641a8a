"""Reads off the writer: on SQLite `Database.read` runs on WAL readers, never behind a write."""

from __future__ import annotations

import sqlite3
import threading
import uuid

from twisted.internet import threads

from tests.support.databases import DatabaseTestCase, for_each_backend
from tests.support.deferreds import inline
from umoc.records import Actor
from umoc.records.messages import NewMessage
from umoc.storage.database import DatabaseUnavailableError, Txn

T0 = 1_710_072_000.0


class ReadsTestsMixin:
    async def friends(self) -> tuple[int, int]:
        a = (await self.storage.users.create("a", "x", T0)).id
        b = (await self.storage.users.create("b", "x", T0)).id
        await self.storage.contacts.request(a, "b", T0)
        await self.storage.contacts.accept(b, a, T0)
        return a, b

    @inline
    async def test_a_read_sees_every_write_acknowledged_before_it(self) -> None:
        a, b = await self.friends()
        for i in range(5):
            await self.storage.messages.post(
                Actor.user(a, "a"), NewMessage(b, False, f"m{i}"), str(uuid.uuid4()), T0 + i
            )
            history = await self.storage.messages.history(b, a, False, 1, 10)
            self.assertEqual(history.total_messages, i + 1, "the acknowledged message is there at once")
        self.assertEqual({e.id: e.unread_count for e in await self.storage.messages.chat_list(b)}, {a: 5})

    @inline
    async def test_a_read_answers_while_a_write_transaction_is_open(self) -> None:
        a, b = await self.friends()
        if self.backend == "postgres":
            self.skipTest("PostgreSQL reads share the pool with writes (they never wait on row locks)")
        inside, release = threading.Event(), threading.Event()

        def long_write(txn: Txn) -> None:
            txn.begin()
            txn.execute("UPDATE users SET last_seen = ? WHERE id = ?", (T0, a))
            inside.set()
            release.wait(10)

        writing = self.db.run("t", long_write)
        await threads.deferToThread(inside.wait, 10)
        try:
            contacts = await self.storage.contacts.list(a)
            self.assertEqual([c.username for c in contacts], ["b"], "the read did not wait for the writer")
            self.assertIsNone((await self.storage.users.by_id(a)).last_seen, "and sees no uncommitted write")
        finally:
            release.set()
        await writing
        self.assertEqual((await self.storage.users.by_id(a)).last_seen, T0)

    @inline
    async def test_a_sqlite_reader_cannot_write(self) -> None:
        if self.backend == "postgres":
            self.skipTest("on PostgreSQL `read` runs on the same pool as writes")
        with self.assertRaises(DatabaseUnavailableError) as caught:  # the driver's OperationalError, wrapped
            await self.db.read("t", lambda txn: txn.execute("UPDATE users SET last_seen = 1"))
        self.assertIsInstance(caught.exception.__cause__, sqlite3.OperationalError)
        self.assertIn("readonly", str(caught.exception.__cause__))


for_each_backend(ReadsTestsMixin, DatabaseTestCase, globals())
