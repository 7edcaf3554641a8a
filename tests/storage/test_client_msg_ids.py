"""``client_msg_id`` in the message write path: the unique index decides, in a batch and between nodes.

On both databases (PostgreSQL when ``UMOC_TEST_POSTGRES`` is set): a second
post with a key the sender used raises `KeyTakenError` carrying the first
message and stores nothing; in a group-commit batch it fails alone; a key
older than the window is taken off its old row; and two `Database` objects
on one database (two nodes), racing through ``MessageStore.post`` with one
key, store one row.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from twisted.internet import defer, threads

from tests.support.databases import POSTGRES_DSN, DatabaseTestCase, for_each_backend, reopenable_database
from tests.support.deferreds import inline
from umoc.records import Actor
from umoc.records.messages import NewMessage
from umoc.storage import Storage
from umoc.storage.batching import BatchWriter
from umoc.storage.messages import KeyTakenError

T0 = 1_710_072_000.0
DAY = 86_400.0


class ClientMsgIdStorageTestsMixin:
    async def friends(self, storage: Storage | None = None) -> tuple[int, int]:
        storage = storage or self.storage
        a = (await storage.users.create("alice", "x", T0)).id
        b = (await storage.users.create("bob", "x", T0)).id
        await storage.contacts.request(a, "bob", T0)
        await storage.contacts.accept(b, a, T0)
        return a, b

    def post(
        self, sender: int, recipient: int, content: str, key: str | None, now: float = T0, storage: Any = None
    ) -> defer.Deferred[Any]:
        new = NewMessage(recipient, False, content, client_msg_id=key)
        return (storage or self.storage).messages.post(Actor.user(sender, "n"), new, str(uuid.uuid4()), now, now - DAY)

    async def stored(self) -> list[tuple[Any, ...]]:
        rows = await self.db.run(
            "t", lambda txn: txn.execute("SELECT id, content, client_msg_id FROM messages ORDER BY seq").fetchall()
        )
        return [tuple(r) for r in rows]

    @inline
    async def test_a_second_post_with_the_key_stores_nothing_and_carries_the_first(self) -> None:
        a, b = await self.friends()
        first, _ = await self.post(a, b, "hello", "k-1")
        with self.assertRaises(KeyTakenError) as raised:
            await self.post(a, b, "hello again", "k-1", T0 + 5)
        original = raised.exception.original
        self.assertEqual((original.id, original.content, original.sender_id), (first.id, "hello", a))
        self.assertEqual(original.sender_username, "alice", "as new_message shows it")
        self.assertEqual(await self.stored(), [(first.id, "hello", "k-1")])
        history = await self.storage.messages.history(b, a, False, 1, 10)
        self.assertEqual(history.total_messages, 1, "no counter moved")

    @inline
    async def test_keys_are_per_sender_and_messages_without_a_key_never_meet(self) -> None:
        a, b = await self.friends()
        await self.post(a, b, "one", "same")
        await self.post(b, a, "two", "same")
        await self.post(a, b, "three", None)
        await self.post(a, b, "four", None)
        self.assertEqual([r[2] for r in await self.stored()], ["same", "same", None, None])

    @inline
    async def test_a_key_older_than_the_window_is_taken_off_its_old_message(self) -> None:
        a, b = await self.friends()
        old, _ = await self.post(a, b, "yesterday", "k")
        later = T0 + DAY + 1
        new, _ = await self.post(a, b, "today", "k", later)
        self.assertNotEqual(new.id, old.id)
        # The index stays honest: one row holds the key, the newest.
        self.assertEqual(await self.stored(), [(old.id, "yesterday", None), (new.id, "today", "k")])
        with self.assertRaises(KeyTakenError) as raised:
            await self.post(a, b, "today", "k", later + 1)
        self.assertEqual(raised.exception.original.id, new.id)

    @inline
    async def test_a_retry_in_a_batch_fails_alone_and_the_others_commit(self) -> None:
        a, b = await self.friends()
        # One lane: everything after the first goes in one batch.
        writer = self.db.writer = BatchWriter(self.db.run)
        sends = [self.post(a, b, "first", None)]
        sends += [self.post(a, b, "keyed", "k"), self.post(b, a, "other", None), self.post(a, b, "keyed", "k")]
        results = await defer.DeferredList(sends, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, True, True, False])
        results[3][1].trap(KeyTakenError)
        self.assertEqual(results[3][1].value.original.id, results[1][1][0].id, "the batch's own first one")
        self.assertEqual(writer.batches, 2)
        self.assertEqual([r[1] for r in await self.stored()], ["first", "keyed", "other"])

    @inline
    async def test_a_retry_the_next_day_moves_no_streak(self) -> None:
        a, b = await self.friends()
        await self.post(a, b, "hi", "k")
        await self.post(b, a, "hi", None)
        before = await self.db.run("t", lambda txn: txn.execute("SELECT * FROM contacts ORDER BY owner_id").fetchall())
        with self.assertRaises(KeyTakenError):
            await self.post(a, b, "hi", "k", T0 + DAY / 2 + 3600)  # within the window, on the next UTC day
        after = await self.db.run("t", lambda txn: txn.execute("SELECT * FROM contacts ORDER BY owner_id").fetchall())
        self.assertEqual([tuple(r) for r in after], [tuple(r) for r in before])

    @inline
    async def test_two_nodes_racing_on_one_key_store_one_row(self) -> None:
        """Two `Database` objects on one database, each posting through its own group commit."""
        open_db = await reopenable_database(self, self.backend)
        one, two = open_db(), open_db()
        self.addCleanup(one.close)
        self.addCleanup(two.close)
        node_one, node_two = Storage(one), Storage(two)
        a, b = await self.friends(node_one)
        for round_ in range(5):
            key = f"race-{round_}"
            release = await self.hold_senders(one, a, b)
            sends = [
                self.post(a, b, "same", key, T0 + round_, node_one),
                self.post(a, b, "same", key, T0 + round_, node_two),
            ]
            if release is not None:
                await self.both_waiting()
                release()
            results = await defer.DeferredList(sends, consumeErrors=True)
            won = [r for ok, r in results if ok]
            lost = [r for ok, r in results if not ok]
            self.assertEqual((len(won), len(lost)), (1, 1), results)
            lost[0].trap(KeyTakenError)
            self.assertEqual(lost[0].value.original.id, won[0][0].id, "the loser answers the winner's message")
        rows = await one.run("t", lambda txn: txn.execute("SELECT client_msg_id FROM messages").fetchall())
        self.assertEqual(sorted(r[0] for r in rows), [f"race-{i}" for i in range(5)])

    async def hold_senders(self, db: Any, a: int, b: int) -> Any:
        """PostgreSQL: lock the pair's contact rows from a third connection, so both posts wait and then race.

        Returns the function that lets them go (None on SQLite, whose one
        writer at a time makes the two posts take turns anyway).
        """
        if self.backend != "postgres":
            return None
        import psycopg2

        schema = await db.run("t", lambda txn: txn.scalar("SELECT current_schema()"))
        conn = psycopg2.connect(POSTGRES_DSN, options=f"-c search_path={schema}")
        cur = conn.cursor()
        cur.execute("SELECT * FROM contacts WHERE owner_id IN (%s, %s) FOR UPDATE", (a, b))
        self.holder = conn.get_backend_pid()
        done = threading.Event()

        def release() -> None:
            conn.commit()
            conn.close()
            done.set()

        self.addCleanup(lambda: done.is_set() or release())
        return release

    async def both_waiting(self) -> None:
        """Until two backends wait on the contact rows' holder (each post held at its FOR KEY SHARE).

        By whom they wait for, not by their statements' text: on PostgreSQL a
        batch of direct messages is one call of a function (migration 018).
        """
        import psycopg2

        def waiting() -> int:
            conn = psycopg2.connect(POSTGRES_DSN)
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND %s = ANY(pg_blocking_pids(pid)) AND datname = current_database()",
                        (self.holder,),
                    )
                    return int(cur.fetchone()[0])
            finally:
                conn.close()

        deadline = time.monotonic() + 10
        while await threads.deferToThread(waiting) < 2:
            if time.monotonic() > deadline:
                self.fail("the two posts never both waited on the contact rows")
            await threads.deferToThread(time.sleep, 0.02)


for_each_backend(ClientMsgIdStorageTestsMixin, DatabaseTestCase, globals())
