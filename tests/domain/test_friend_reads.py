"""`FriendReads` and `ArrivalReads`: what users going on- or offline together need is read in one round trip,
on both databases; `ArrivalStore.depart` writes ``last_seen`` and reads the friends in one transaction."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from tests.support.databases import DatabaseTestCase, for_each_backend
from tests.support.deferreds import inline
from umoc.domain.status import ArrivalReads, FriendReads


class FriendReadsTestsMixin:
    storage: Any

    async def users(self) -> list[int]:
        """alice, bob, carol, dan: alice friends with bob and carol; carol only asked by dan."""
        ids = [(await self.storage.users.create(name, "h", 1.0)).id for name in ("alice", "bob", "carol", "dan")]
        alice, bob, carol, _ = ids
        for friend, name in ((bob, "bob"), (carol, "carol")):
            await self.storage.contacts.request(alice, name, 2.0)
            await self.storage.contacts.accept(friend, alice, 3.0)
        await self.storage.contacts.request(ids[3], "carol", 4.0)
        return ids

    def count_reads(self, store: Any, method: str) -> list[list[int]]:
        """The users of each call of ``store.method`` from now on, sorted (the method still runs)."""
        reads: list[list[int]] = []
        read = getattr(store, method)

        def counted(user_ids: list[int]) -> Any:
            reads.append(sorted(user_ids))
            return read(user_ids)

        setattr(store, method, counted)
        return reads

    @inline
    async def test_friends_of_several_users_come_from_one_read_each_as_friend_ids_says(self) -> None:
        ids = await self.users()
        reads = self.count_reads(self.storage.contacts, "friend_ids_of")
        reader = FriendReads(self.storage)
        got = await defer.gatherResults([reader.get(user_id) for user_id in (*ids, ids[0])])
        expected = [sorted(await self.storage.contacts.friend_ids(user_id)) for user_id in (*ids, ids[0])]
        self.assertEqual([sorted(friends) for friends in got], expected)
        self.assertEqual(expected[0], sorted(ids[1:3]))
        # The first asks alone; the others, asked while it was read, share the next read.
        self.assertEqual(reads, [[ids[0]], sorted(ids)])

    @inline
    async def test_a_failed_read_fails_its_callers_and_the_next_callers_read_again(self) -> None:
        ids = await self.users()
        friend_ids_of = self.storage.contacts.friend_ids_of
        self.storage.contacts.friend_ids_of = lambda user_ids: defer.fail(RuntimeError("database away"))
        reader = FriendReads(self.storage)
        with self.assertRaises(RuntimeError):
            await reader.get(ids[0])
        self.storage.contacts.friend_ids_of = friend_ids_of
        self.assertEqual(sorted(await reader.get(ids[0])), sorted(ids[1:3]))

    @inline
    async def test_arrivals_read_the_feed_position_and_each_users_friends_in_one_read_per_burst(self) -> None:
        ids = await self.users()
        reads = self.count_reads(self.storage.arrivals, "arrive")
        reader = ArrivalReads(self.storage)
        got = await defer.gatherResults([reader.get(user_id) for user_id in ids])
        for (cursor, _), user_id in zip(got, ids, strict=True):
            # Where the feed stood (PostgreSQL's snapshot names other tests' transactions too): nothing since.
            self.assertEqual((await self.storage.feed.read(user_id, cursor, 10)).changes, [])
        expected = [sorted(await self.storage.contacts.friend_ids(user_id)) for user_id in ids]
        self.assertEqual([sorted(friends) for _, friends in got], expected)
        self.assertEqual(reads, [[ids[0]], sorted(ids[1:])])

    @inline
    async def test_an_arrivals_cursor_is_before_every_change_made_after_it(self) -> None:
        ids = await self.users()
        cursor, _ = await ArrivalReads(self.storage).get(ids[0])
        await self.storage.contacts.request(ids[1], "carol", 5.0)
        page = await self.storage.feed.read(ids[1], cursor, 10)
        self.assertEqual(len(page.changes), 1)  # bob's request, and nothing from before the arrival

    @inline
    async def test_depart_writes_last_seen_and_answers_the_friends_in_one_transaction(self) -> None:
        ids = await self.users()
        writer = self.storage.db.writer
        batches, items = writer.batches, writer.items
        friends = await self.storage.arrivals.depart(ids[0], 1234.5)
        self.assertEqual(sorted(friends), sorted(ids[1:3]))
        self.assertEqual((writer.batches - batches, writer.items - items), (1, 1))  # one group commit, one write
        self.assertEqual((await self.storage.users.by_id(ids[0])).last_seen, 1234.5)


for_each_backend(FriendReadsTestsMixin, DatabaseTestCase, globals())
