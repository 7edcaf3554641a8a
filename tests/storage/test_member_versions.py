"""A group's members kept by the node while ``chats.members_version`` holds (migration 030), on both databases.

The version must change with every change of membership, whoever writes it
(the stores, or a statement of another node or ``umoc-admin``, which the
triggers catch), and with nothing else; a batch posting to a group whose
version holds reads no member row; and what a send is allowed to do follows
every change at once.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.databases import DatabaseTestCase, befriend, for_each_backend
from tests.support.deferreds import inline
from umoc.errors import RefusedError
from umoc.records import Actor
from umoc.records.groups import Mute, NewGroup
from umoc.records.messages import Deletion, NewMessage
from umoc.storage.database import Txn
from umoc.storage.engine.members import GroupMembers, MemberCache
from umoc.storage.messages.write import group_members_txn, post_txn
from umoc.storage.targets import target_txn

T0 = 1_710_072_000.0


class MemberVersionTestsMixin:
    db: Any
    storage: Any

    async def group_of(self, size: int) -> tuple[int, list[int]]:
        """A group of ``size`` members, every one a friend of the first (the owner)."""
        users = [(await self.storage.users.create(f"m{i}", "x", T0)).id for i in range(size + 1)]
        owner = users[0]
        await befriend(self.db, owner, users[1:], T0)
        # The last user is left out: a friend of the owner to add later.
        group = await self.storage.groups.create(owner, NewGroup("g", None, users[1:size]), T0, 100)
        return group, users

    async def version(self, group: int) -> int:
        return int(
            await self.db.run(
                "test.version", lambda txn: txn.scalar("SELECT members_version FROM chats WHERE id = ?", (group,))
            )
        )

    async def members(self, group: int) -> tuple[list[int] | None, dict[Any, Any]]:
        """What a batch posting to the group finds: its members, and the standings kept with them."""

        def txn_fn(txn: Txn) -> tuple[list[int] | None, dict[Any, Any]]:
            members = group_members_txn(txn, group, lock=True)
            return members, dict(txn.locked.get(("group_standing", group), {}))

        return await self.db.write("test.members", group, txn_fn)

    async def post(self, group: int, sender: int) -> Any:
        return await self.storage.messages.post(
            Actor.user(sender, "name"), NewMessage(group, True, "hi"), str(uuid.uuid4()), T0 + 1
        )

    @inline
    async def test_the_version_changes_with_every_change_of_membership_and_with_nothing_else(self) -> None:
        group, users = await self.group_of(5)
        owner, newcomer = users[0], users[5]
        seen = [await self.version(group)]

        async def changed(what: str) -> None:
            now = await self.version(group)
            self.assertNotIn(now, seen, f"{what} changes the version")
            seen.append(now)

        async def unchanged(what: str) -> None:
            self.assertEqual(await self.version(group), seen[-1], f"{what} leaves the version")

        await self.post(group, users[1])
        await self.db.run(
            "test.read",
            lambda txn: txn.execute("UPDATE user_chats SET read_count = read_count + 1 WHERE chat_id = ?", (group,)),
        )
        await unchanged("a message, and a read")
        await self.storage.groups.add_member(group, owner, newcomer, T0 + 2, 100)
        await changed("a member added")
        await self.storage.groups.set_member_role(group, owner, users[1], "admin", T0 + 3)
        await changed("a role")
        await self.storage.moderation.mute(owner, Mute(group, users[2], 600), T0 + 4)
        await changed("a mute")
        await self.storage.groups.remove_member(group, owner, users[3], T0 + 5)
        await changed("a member removed")
        await self.storage.groups.remove_member(group, users[4], users[4], T0 + 6)
        await changed("a member leaving")
        # Another node or umoc-admin writing the row directly: the trigger catches it.
        await self.db.run(
            "test.raw",
            lambda txn: txn.execute(
                "UPDATE user_chats SET role = 'reader' WHERE chat_id = ? AND user_id = ?", (group, users[2])
            ),
        )
        await changed("a role written by any statement")

    @inline
    async def test_a_batch_reads_no_member_row_while_the_version_holds(self) -> None:
        group, users = await self.group_of(4)
        members, _ = await self.members(group)
        self.assertEqual(sorted(members or []), sorted(users[:4]))
        # Put something the database does not hold under the same version: it is what comes back,
        # so nothing was read.
        cache: MemberCache = self.db.members
        version = await self.version(group)
        cache.put(group, GroupMembers(version, (users[0], 999_999), {}))
        self.assertEqual(await self.members(group), ([users[0], 999_999], {}))
        # A change of membership by any statement: the members are read again.
        await self.db.run(
            "test.raw",
            lambda txn: txn.execute(
                "UPDATE user_chats SET role = 'moderator' WHERE chat_id = ? AND user_id = ?", (group, users[1])
            ),
        )
        members, standing = await self.members(group)
        self.assertEqual(sorted(members or []), sorted(users[:4]))
        self.assertEqual(standing[users[1]][0], "moderator")
        self.assertEqual(standing[users[0]][0], "owner")

    @inline
    async def test_a_send_takes_the_kept_members_while_the_version_holds(self) -> None:
        """The send's own path: SQLite's statements, PostgreSQL's batch function (told what the node keeps)."""
        group, users = await self.group_of(4)
        await self.post(group, users[1])
        cache: MemberCache = self.db.members
        kept = cache.peek(group)
        assert kept is not None
        self.assertEqual(kept.version, await self.version(group))
        self.assertEqual(sorted(kept.members), sorted(users[:4]))
        # Something the database does not hold, under the same version: the send's audience is it.
        cache.put(group, GroupMembers(kept.version, (*kept.members, 999_999), kept.standing))
        _, audience = await self.post(group, users[2])
        self.assertIn(999_999, audience)
        await self.storage.groups.set_member_role(group, users[0], users[3], "moderator", T0 + 3)
        _, audience = await self.post(group, users[2])
        self.assertEqual(sorted(audience), sorted(users[:4]))

    @inline
    async def test_an_events_audience_comes_from_the_kept_members_while_the_version_holds(self) -> None:
        """A reaction's, an edit's, a deletion's target (and typing): its members without a row per member."""
        group, users = await self.group_of(4)
        message, _ = await self.post(group, users[1])

        async def audiences() -> tuple[list[int], list[int]]:
            target = await self.db.read("test.target", target_txn, users[2], message.id)
            typing = await self.storage.groups.typing_audience(group, users[3], T0 + 2)
            return sorted(target.members), sorted(typing)

        members = sorted(users[:4])
        self.assertEqual(await audiences(), (members, [u for u in members if u != users[3]]))
        cache: MemberCache = self.db.members
        kept = cache.peek(group)
        assert kept is not None
        cache.put(group, GroupMembers(kept.version, (*kept.members, 999_999), kept.standing))
        target_members, typing = await audiences()
        self.assertIn(999_999, target_members)
        self.assertIn(999_999, typing)
        await self.storage.groups.remove_member(group, users[0], users[2], T0 + 3)
        self.assertEqual(
            await self.db.read("test.target", target_txn, users[1], message.id).addCallback(
                lambda t: sorted(t.members)
            ),
            sorted([users[0], users[1], users[3]]),
        )

    @inline
    async def test_a_deletions_audience_comes_from_the_kept_members_while_the_version_holds(self) -> None:
        group, users = await self.group_of(4)
        first, _ = await self.post(group, users[1])
        second, _ = await self.post(group, users[1])
        deleted = await self.storage.messages.delete(Actor.user(users[1], "name"), Deletion(first.id), T0 + 2)
        self.assertEqual(sorted(deleted.audience), sorted(users[:4]))
        cache: MemberCache = self.db.members
        kept = cache.peek(group)
        assert kept is not None
        cache.put(group, GroupMembers(kept.version, (*kept.members, 999_999), kept.standing))
        deleted = await self.storage.messages.delete(Actor.user(users[1], "name"), Deletion(second.id), T0 + 3)
        self.assertIn(999_999, deleted.audience)

    @inline
    async def test_a_send_follows_each_change_of_membership_at_once(self) -> None:
        group, users = await self.group_of(5)
        owner, newcomer = users[0], users[5]
        await self.post(group, users[1])  # the members are kept from here on
        with self.assertRaises(RefusedError):
            await self.post(group, newcomer)
        await self.storage.groups.add_member(group, owner, newcomer, T0 + 2, 100)
        await self.post(group, newcomer)
        await self.storage.groups.remove_member(group, owner, users[1], T0 + 3)
        with self.assertRaises(RefusedError):
            await self.post(group, users[1])
        await self.storage.moderation.mute(owner, Mute(group, users[2], 600), T0 + 4)
        with self.assertRaises(RefusedError):
            await self.post(group, users[2])
        await self.storage.groups.set_member_role(group, owner, users[3], "reader", T0 + 5)
        with self.assertRaises(RefusedError):
            await self.post(group, users[3])
        _, audience = await self.post(group, users[4])
        self.assertEqual(sorted(audience), sorted([owner, users[2], users[3], users[4], newcomer]))

    @inline
    async def test_a_plain_transaction_without_the_cache_reads_the_members(self) -> None:
        group, users = await self.group_of(3)

        def txn_fn(txn: Txn) -> list[int] | None:
            txn.members = None
            return group_members_txn(txn, group, lock=True)

        self.assertEqual(sorted(await self.db.write("test.members", group, txn_fn) or []), sorted(users[:3]))
        message, _ = await self.db.write(
            "test.post",
            group,
            post_txn,
            Actor.user(users[1], "name"),
            NewMessage(group, True, "hi"),
            str(uuid.uuid4()),
            T0 + 1,
        )
        self.assertEqual(message.chat_id, group)


class MemberCacheTests(DatabaseTestCase):
    """The cache's own bound: member ids in all, the least recently used group dropped first."""

    def test_it_keeps_at_most_its_bound_of_member_ids_dropping_the_least_recently_used(self) -> None:
        cache = MemberCache(max_members=10)
        cache.put(1, GroupMembers(7, tuple(range(4)), {}))
        cache.put(2, GroupMembers(8, tuple(range(4)), {}))
        self.assertIsNotNone(cache.get(1, 7))  # 1 used last
        cache.put(3, GroupMembers(9, tuple(range(4)), {}))
        self.assertIsNone(cache.get(2, 8), "the least recently used went")
        self.assertIsNotNone(cache.get(1, 7))
        self.assertIsNone(cache.get(1, 6), "another version is not it")
        cache.put(4, GroupMembers(1, tuple(range(11)), {}))
        self.assertIsNone(cache.get(4, 1), "a group larger than the bound is not kept")
        self.assertEqual(len(cache), 2)


for_each_backend(MemberVersionTestsMixin, DatabaseTestCase, globals())
