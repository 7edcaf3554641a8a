"""Storage of users and sessions, and migrations, on both databases."""

from __future__ import annotations

import os
import stat

from twisted.trial import unittest

from tests.support import DatabaseTestCase, for_each_backend, inline
from umoc.storage.database import Database, SchemaTooNewError, _migrate_txn
from umoc.storage.users import UsernameTakenError


class UserStoreTestsMixin:
    @inline
    async def test_migrating_twice_changes_nothing(self) -> None:
        self.assertEqual(await self.db.migrate(), await self.db.migrate())

    @inline
    async def test_schema_newer_than_the_code_is_refused(self) -> None:
        sql = "INSERT INTO schema_version (version, applied_at) VALUES (999, 0)"
        await self.db.run("test", lambda t: t.execute(sql))
        with self.assertRaises(SchemaTooNewError):
            await self.db.run("test", _migrate_txn, [(1, "")])

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
            revoked += await self.storage.users.create_session(user.id, f"s{i}", "digest", 10.0 + i, 100.0, 3)
        self.assertEqual(revoked, ["s0", "s1"])
        self.assertIsNone(await self.storage.users.session("s0"))
        self.assertEqual((await self.storage.users.session("s4")).user_id, user.id)

    @inline
    async def test_expired_sessions_are_deleted_and_reported(self) -> None:
        user = await self.storage.users.create("alice", "h", 1.0)
        await self.storage.users.create_session(user.id, "old", "d", 1.0, 50.0, 3)
        await self.storage.users.create_session(user.id, "new", "d", 2.0, 500.0, 3)
        self.assertEqual(await self.storage.users.delete_expired_sessions(100.0), [("old", user.id)])
        self.assertIsNone(await self.storage.users.session("old"))
        self.assertIsNotNone(await self.storage.users.session("new"))

    @inline
    async def test_percent_signs_in_values_survive_placeholder_conversion(self) -> None:
        await self.storage.users.create("pct", "100%?done", 1.0)
        creds = await self.storage.users.credentials("pct")
        self.assertEqual(creds[2], "100%?done")


for_each_backend(UserStoreTestsMixin, DatabaseTestCase, globals())


class SqliteFileModeTests(unittest.TestCase):
    @inline
    async def test_data_directory_is_0700_and_database_files_0600(self) -> None:
        old_umask = os.umask(0o022)
        self.addCleanup(os.umask, old_umask)
        data_dir = os.path.join(self.mktemp(), "data")
        db = Database.sqlite(os.path.join(data_dir, "umoc.sqlite3"))
        self.addCleanup(db.close)
        await db.migrate()
        self.assertEqual(stat.S_IMODE(os.stat(data_dir).st_mode), 0o700)
        for name in os.listdir(data_dir):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(data_dir, name)).st_mode), 0o600, name)
