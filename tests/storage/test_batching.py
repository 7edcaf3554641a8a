"""Group commit: writes waiting together share a transaction, each with its own outcome."""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet import defer

from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, DatabaseTestCase, for_each_backend
from tests.support.deferreds import inline
from umoc.errors import RefusedError
from umoc.records import Actor
from umoc.records.messages import Deletion, NewMessage
from umoc.storage.batching import BatchWriter

T0 = 1_710_072_000.0


class GroupCommitTestsMixin:
    async def user(self, name: str) -> int:
        return (await self.storage.users.create(name, "x", T0)).id

    def post(self, sender: int, recipient: int, content: str) -> defer.Deferred:
        return self.storage.messages.post(
            Actor.user(sender, "n"), NewMessage(recipient, False, content), str(uuid.uuid4()), T0
        )

    @inline
    async def test_a_refused_message_in_a_batch_fails_alone_and_the_others_commit(self) -> None:
        a, b, stranger = await self.user("a"), await self.user("b"), await self.user("s")
        await self.storage.contacts.request(a, "b", T0)
        await self.storage.contacts.accept(b, a, T0)
        # One lane, so all go through the same queue (PostgreSQL spreads chats over several).
        writer = self.db.writer = BatchWriter(self.db.run)
        batches, items = writer.batches, writer.items
        # The first starts at once on the idle writer; the rest wait for it and go together.
        sends = [self.post(a, b, "first")]
        sends += [self.post(a, b, "ok1"), self.post(a, stranger, "refused"), self.post(b, a, "ok2")]
        results = await defer.DeferredList(sends, consumeErrors=True)
        self.assertEqual((writer.batches - batches, writer.items - items), (2, 4))
        self.assertEqual([ok for ok, _ in results], [True, True, False, True])
        results[2][1].trap(RefusedError)
        self.assertEqual(results[2][1].getErrorMessage(), "You can only send direct messages to your friends")
        stored = await self.db.run(
            "t", lambda txn: [r["content"] for r in txn.execute("SELECT content FROM messages ORDER BY seq").fetchall()]
        )
        self.assertEqual(stored, ["first", "ok1", "ok2"])
        history = await self.storage.messages.history(b, a, False, 1, 10)
        self.assertEqual(history.total_messages, 3)
        self.assertEqual({e.id: e.unread_count for e in await self.storage.messages.chat_list(b)}, {a: 2})

    @inline
    async def test_each_write_is_observed_under_its_own_name_beside_its_batch(self) -> None:
        a, b, stranger = await self.user("a"), await self.user("b"), await self.user("s")
        await self.storage.contacts.request(a, "b", T0)
        await self.storage.contacts.accept(b, a, T0)
        before, before_waits = self.counts(), self.pool_waits()
        sent = await self.post(a, b, "one")
        await defer.DeferredList([self.post(a, b, "two"), self.post(a, stranger, "refused")], consumeErrors=True)
        await self.storage.messages.delete(Actor.user(a, "a"), Deletion(sent[0].id), T0)
        after = self.counts()
        grew = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
        writes = {key: n for key, n in grew.items() if key[0] != "batch"}
        self.assertEqual(
            writes, {("messages.delete", "ok"): 1, ("messages.post", "error"): 1, ("messages.post", "ok"): 2}
        )
        self.assertIn(("batch", "ok"), grew, "the batches are observed too")
        # A write's own series has no pool wait (its batch's has): one pool wait per batch, none per write.
        self.assertLessEqual(self.pool_waits() - before_waits, grew[("batch", "ok")] + grew.get(("batch", "error"), 0))

    def counts(self) -> dict[tuple[str, str], float]:
        """Observations of the database's transaction histogram, by (transaction, outcome)."""
        return {
            (sample.labels["transaction"], sample.labels["outcome"]): sample.value
            for metric in self.db.transactions.seconds.collect()
            for sample in metric.samples
            if sample.name.endswith("_count")
        }

    def pool_waits(self) -> float:
        return sum(
            sample.value
            for metric in self.db.transactions.pool_wait.collect()
            for sample in metric.samples
            if sample.name.endswith("_count")
        )


for_each_backend(GroupCommitTestsMixin, DatabaseTestCase, globals())


class LanesPostgres(DatabaseTestCase):
    """PostgreSQL's write lanes: direct chats are spread over them, so batches of different chats run at once."""

    backend = "postgres"
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    user = GroupCommitTestsMixin.user
    post = GroupCommitTestsMixin.post

    @inline
    async def test_pairs_of_neighbouring_users_run_on_several_lanes_at_once(self) -> None:
        # Users who signed up one after the other, friends in pairs (as bench_app.py's): the old key
        # (31 * lo + hi) put every such pair on one of the four lanes, one batch at a time (issue 25).
        users = [await self.user(f"u{i}") for i in range(16)]
        for i, (a, b) in enumerate(zip(users[::2], users[1::2], strict=True)):
            await self.storage.contacts.request(a, f"u{2 * i + 1}", T0)
            await self.storage.contacts.accept(b, a, T0)
        writer = self.db.writer
        sends = [self.post(a, b, f"{a}->{b}") for a, b in zip(users[::2], users[1::2], strict=True)]
        self.assertGreaterEqual(writer.running, 3, "eight chats' first messages start on at least three lanes")
        await defer.gatherResults(sends)
        for a, b in zip(users[::2], users[1::2], strict=True):
            history = await self.storage.messages.history(b, a, False, 1, 10)
            self.assertEqual([m.content for m, _ in history.messages], [f"{a}->{b}"])

    @inline
    async def test_an_item_that_loses_a_deadlock_is_run_again_and_the_batch_commits(self) -> None:
        # psycopg2's deadlock is an OperationalError, one of the "database not there" errors that fail a whole
        # batch: it was never retried, and a deadlock between two lanes failed every write of its batch.
        import psycopg2.errors

        a, b = await self.user("a"), await self.user("b")
        tries = []

        def name_txn(txn: Any, user: int, name: str, lose: bool) -> str:
            tries.append(user)
            txn.execute("UPDATE users SET display_name = ? WHERE id = ?", (name, user))
            if lose and tries.count(user) == 1:
                raise psycopg2.errors.DeadlockDetected("deadlock detected")
            return name

        writer = self.db.writer
        batches = writer.batches
        plug = self.db.write("test.plug", 0, lambda txn: None)  # the next writes of lane 0 wait, then go in one batch
        sends = [
            self.db.write("test.name", 0, name_txn, a, "A", True),
            self.db.write("test.name", 0, name_txn, b, "B", False),
        ]
        await plug
        self.assertEqual(await defer.gatherResults(sends), ["A", "B"])
        self.assertEqual(writer.batches - batches, 2, "the plug's batch, then both writes in one")
        self.assertEqual(tries.count(a), 2, "in the batch (lost), then alone")
        names = await self.db.read("t", lambda t: t.execute("SELECT display_name FROM users ORDER BY id").fetchall())
        self.assertEqual([r[0] for r in names], ["A", "B"])
