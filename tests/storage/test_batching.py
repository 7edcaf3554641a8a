"""Group commit: writes waiting together share a transaction, each with its own outcome."""

from __future__ import annotations

import uuid

from twisted.internet import defer

from tests.support.databases import DatabaseTestCase, for_each_backend
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
        seen: list[tuple[str, bool, float | None]] = []
        self.db.observe = lambda name, ok, seconds, waited: seen.append((name, ok, waited))
        self.addCleanup(setattr, self.db, "observe", None)
        sent = await self.post(a, b, "one")
        await defer.DeferredList([self.post(a, b, "two"), self.post(a, stranger, "refused")], consumeErrors=True)
        await self.storage.messages.delete(Actor.user(a, "a"), Deletion(sent[0].id), T0)
        writes = [(name, ok) for name, ok, waited in seen if name != "batch"]
        self.assertEqual(
            sorted(writes),
            [("messages.delete", True), ("messages.post", False), ("messages.post", True), ("messages.post", True)],
        )
        # A write's own series has no pool wait (its batch's has): it is timed from request to result.
        self.assertTrue(all(waited is None for name, _, waited in seen if name != "batch"))
        self.assertIn("batch", [name for name, _, _ in seen])


for_each_backend(GroupCommitTestsMixin, DatabaseTestCase, globals())
