"""Storage of users and sessions, on both databases."""

from __future__ import annotations

from tests.support.databases import DatabaseTestCase, for_each_backend
from tests.support.deferreds import inline
from umoc.records.sessions import NewSession
from umoc.storage.users import UsernameTakenError


class UserStoreTestsMixin:
    @inline
    async def test_usernames_are_unique_case_insensitively(self) -> None:
        await self.storage.users.create("Alice", "h", 1.0)
        with self.assertRaises(UsernameTakenError):
            await self.storage.users.create("alice", "h", 2.0)
        user = await self.storage.users.by_username("ALICE")
        self.assertEqual(user.username, "Alice")

    @inline
    async def test_sessions_beyond_the_limit_revoke_the_oldest(self) -> None:
        user = await self.storage.users.create("alice", "h", 1.0)
        revoked = []
        for i in range(5):
            revoked += await self.storage.users.create_session(
                NewSession(user.id, f"s{i}", "digest", 10.0 + i, 100.0), 3
            )
        self.assertEqual(revoked, ["s0", "s1"])
        self.assertIsNone(await self.storage.users.session("s0"))
        self.assertEqual((await self.storage.users.session("s4")).user_id, user.id)

    @inline
    async def test_expired_sessions_are_deleted_and_reported(self) -> None:
        user = await self.storage.users.create("alice", "h", 1.0)
        await self.storage.users.create_session(NewSession(user.id, "old", "d", 1.0, 50.0), 3)
        await self.storage.users.create_session(NewSession(user.id, "new", "d", 2.0, 500.0), 3)
        self.assertEqual(await self.storage.users.delete_expired_sessions(100.0), [("old", user.id)])
        self.assertIsNone(await self.storage.users.session("old"))
        self.assertIsNotNone(await self.storage.users.session("new"))


for_each_backend(UserStoreTestsMixin, DatabaseTestCase, globals())
