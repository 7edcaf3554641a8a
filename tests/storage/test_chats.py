"""Chat storage on both databases: constant query counts, counters, streaks over fixed dates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer

from tests.support.databases import DatabaseTestCase, for_each_backend
from tests.support.deferreds import inline
from umoc.domain.notices import shapes
from umoc.errors import RefusedError
from umoc.records import Actor
from umoc.records.groups import NewGroup
from umoc.records.messages import Deletion, NewMessage, ReadReceipt
from umoc.storage.database import Txn
from umoc.timefmt import utc_day

T0 = datetime(2024, 3, 10, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0


class ChatStorageTestsMixin:
    async def user(self, name: str) -> int:
        return (await self.storage.users.create(name, "x", T0)).id

    async def friends(self, a: int, b: int, b_name: str) -> None:
        await self.storage.contacts.request(a, b_name, T0)
        await self.storage.contacts.accept(b, a, T0)

    async def post(self, sender: int, recipient: int, is_group: bool = False, now: float = T0, content: str = "x"):
        message, _ = await self.storage.messages.post(
            Actor.user(sender, "name"), NewMessage(recipient, is_group, content), str(uuid.uuid4()), now
        )
        return message

    def count_queries(self) -> list[str]:
        """Record every statement the stores run (the database still runs them all)."""
        seen: list[str] = []
        execute, executemany = Txn.execute, Txn.executemany

        def counting(txn: Txn, sql: str, params: Any = ()) -> Txn:
            seen.append(sql)
            return execute(txn, sql, params)

        def counting_many(txn: Txn, sql: str, rows: Any) -> Txn:
            seen.append(sql)
            return executemany(txn, sql, rows)

        self.patch(Txn, "execute", counting)
        self.patch(Txn, "executemany", counting_many)
        return seen

    @inline
    async def test_chat_list_and_history_cost_the_same_queries_for_few_or_many(self) -> None:
        me = await self.user("me")
        seen = self.count_queries()
        counts = []
        for n in (2, 25):
            peers = []
            for i in range(len(counts) * 100, len(counts) * 100 + n):
                peer = await self.user(f"peer{i}")
                await self.friends(me, peer, f"peer{i}")
                peers.append(peer)
            for k in range(n * 3):
                await self.post(peers[k % n], me, now=T0 + k)
            seen.clear()
            entries = await self.storage.messages.chat_list(me)
            list_queries = len(seen)
            seen.clear()
            history = await self.storage.messages.history(me, peers[0], False, 1, 20)
            counts.append((list_queries, len(seen)))
            self.assertGreaterEqual(len(entries), n)
            self.assertEqual(history.total_messages, 3)
        self.assertEqual(counts[0], counts[1])
        self.assertEqual(counts[0], (3, 3))

    @inline
    async def test_send_is_a_constant_number_of_statements_whatever_the_group_size(self) -> None:
        owner = await self.user("owner")
        seen = self.count_queries()
        sizes = []
        for n in (2, 20):
            members = []
            for i in range(n):
                name = f"m{n}_{i}"
                member = await self.user(name)
                await self.friends(owner, member, name)
                members.append(member)
            group = await self.storage.groups.create(owner, NewGroup("g", None, members), T0, 100)
            seen.clear()
            await self.post(owner, group, is_group=True)
            sizes.append(len(seen))
        self.assertEqual(sizes[0], sizes[1])

    @inline
    async def test_unread_counts_follow_sends_reads_and_deletes(self) -> None:
        a, b = await self.user("a"), await self.user("b")
        await self.friends(a, b, "b")
        m1, m2, m3 = [await self.post(a, b, now=T0 + i) for i in range(3)]

        async def unread() -> int:
            return (await self.storage.messages.chat_list(b))[0].unread_count

        self.assertEqual(await unread(), 3)
        await self.storage.messages.mark_read(b, ReadReceipt(a, (m1.id,)), T0 + 10)
        self.assertEqual(await unread(), 2)
        await self.storage.messages.delete(Actor.user(a, "a"), Deletion(m1.id), T0 + 11)  # already read: no change
        self.assertEqual(await unread(), 2)
        await self.storage.messages.delete(Actor.user(a, "a"), Deletion(m2.id), T0 + 12)  # unread: one fewer
        self.assertEqual(await unread(), 1)
        await self.storage.messages.mark_read(b, ReadReceipt(a, (m3.id, m3.id)), T0 + 13)
        self.assertEqual(await unread(), 0)
        entry = (await self.storage.messages.chat_list(b))[0]
        self.assertEqual(entry.last_message.id, m3.id)
        with self.assertRaises(RefusedError):
            await self.storage.messages.mark_read(a, ReadReceipt(a, (m3.id,)), T0)

    @inline
    async def test_streak_counts_consecutive_mutual_days_and_breaks_on_a_gap(self) -> None:
        a, b = await self.user("a"), await self.user("b")
        await self.friends(a, b, "b")
        for d in range(3):
            await self.post(a, b, now=T0 + d * DAY)
            await self.post(b, a, now=T0 + d * DAY + 60)
            await self.post(a, b, now=T0 + d * DAY + 120)
        contact = await self.storage.contacts.get(a, b)
        today = utc_day(T0 + 2 * DAY)
        self.assertEqual(contact.streak_on(today), (3, True))
        self.assertEqual(contact.streak_on(today + 1), (3, True))
        self.assertEqual(contact.streak_on(today + 2), (3, False))
        # Day 5 only a writes; day 6 both: a new run of one.
        await self.post(a, b, now=T0 + 5 * DAY)
        await self.post(b, a, now=T0 + 6 * DAY)
        await self.post(a, b, now=T0 + 6 * DAY + 1)
        contact = await self.storage.contacts.get(b, a)
        self.assertEqual(contact.streak_on(utc_day(T0 + 6 * DAY)), (1, True))

    @inline
    async def test_concurrent_sends_reads_and_deletes_keep_counters_exact(self) -> None:
        a, b, c = await self.user("a"), await self.user("b"), await self.user("c")
        await self.friends(a, b, "b")
        await self.friends(a, c, "c")
        group = await self.storage.groups.create(a, NewGroup("g", None, [b, c]), T0, 10)
        seed = [await self.post(s, r, g, now=T0) for s, r, g in ((a, b, False), (b, a, False), (c, group, True))]
        work = []
        for i in range(15):
            work.append(defer.ensureDeferred(self.post(a, b, now=T0 + i)))
            work.append(defer.ensureDeferred(self.post(b, a, now=T0 + i)))
            work.append(defer.ensureDeferred(self.post(b, group, is_group=True, now=T0 + i)))
        work.append(self.storage.messages.delete(Actor.user(a, "a"), Deletion(seed[0].id), T0 + 1))
        work.append(self.storage.messages.delete(Actor.user(c, "c"), Deletion(seed[2].id), T0 + 1))
        work.append(self.storage.messages.mark_read(a, ReadReceipt(b, (seed[1].id,)), T0 + 1))
        results = await defer.DeferredList(work, consumeErrors=True)
        self.assertEqual([r for ok, r in results if not ok], [])
        live = await self.db.run(
            "test",
            lambda t: t.execute(
                "SELECT c.id, c.message_count, (SELECT COUNT(*) FROM messages m WHERE m.chat_id = c.id"
                " AND m.deleted_at IS NULL), c.last_seq,"
                " (SELECT COALESCE(MAX(seq), 0) FROM messages m WHERE m.chat_id = c.id AND m.deleted_at IS NULL)"
                " FROM chats c"
            ).fetchall(),
        )
        for chat_id, counted, actual, last_seq, newest in live:
            self.assertEqual((counted, last_seq), (actual, newest), chat_id)
        unread = {(e.id, e.is_group): e.unread_count for e in await self.storage.messages.chat_list(a)}
        self.assertEqual((unread[b, False], unread[group, True]), (15, 15))

    @inline
    async def test_missed_since_covers_direct_and_group_messages_in_order(self) -> None:
        a, b, c = await self.user("a"), await self.user("b"), await self.user("c")
        await self.friends(a, b, "b")
        await self.friends(a, c, "c")
        group = await self.storage.groups.create(a, NewGroup("g", None, [b, c]), T0, 10)
        old = await self.post(a, b, now=T0)
        direct = await self.post(a, b, now=T0 + 10)
        grouped = await self.post(c, group, is_group=True, now=T0 + 20)
        elsewhere = await self.post(a, c, now=T0 + 30)
        missed = [shapes.new_message(m) for m in await self.storage.messages.missed_since(b, T0 + 5, 100)]
        self.assertEqual([m["message_id"] for m in missed], [direct.id, grouped.id])
        self.assertEqual(missed[1]["recipient_id"], group)
        self.assertNotIn(old.id, [m["message_id"] for m in missed])
        self.assertNotIn(elsewhere.id, [m["message_id"] for m in missed])

    @inline
    async def test_is_member_tracks_membership(self) -> None:
        a, b = await self.user("a"), await self.user("b")
        await self.friends(a, b, "b")
        group = await self.storage.groups.create(a, NewGroup("g", None, [b]), T0, 10)
        self.assertTrue(await self.storage.groups.is_member(group, b))
        await self.storage.groups.remove_member(group, a, b, T0)
        self.assertFalse(await self.storage.groups.is_member(group, b))
        self.assertFalse(await self.storage.groups.is_member(group + 1, a))


for_each_backend(ChatStorageTestsMixin, DatabaseTestCase, globals())
