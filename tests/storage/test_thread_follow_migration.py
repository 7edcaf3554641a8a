"""Migration 028 on both databases: thread follows 0.3.0 wrote in the user's own stream move out of it."""

from __future__ import annotations

from twisted.trial import unittest

from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, database_before
from tests.support.deferreds import inline
from umoc.storage.database import Txn, _load_migrations

T0 = 1_700_000_000.0


class ThreadFollowMigrationTestsMixin:
    backend = "sqlite"

    @inline
    async def test_thread_follows_leave_the_users_stream_and_nothing_else_moves(self) -> None:
        db = await database_before(self, self.backend, 28)

        # Rows as a schema-027 server wrote them: a follow in user 1's own stream, and a contact change there.
        def seed(txn: Txn) -> None:
            for kind, data in (("thread_follow", '{"following":true,"thread_id":"t"}'), ("contact", None)):
                txn.execute(
                    "INSERT INTO changes (user_id, kind, actor_id, data, created_at) VALUES (1, ?, 1, ?, ?)",
                    (kind, data, T0),
                )

        await db.run("test.seed", seed)
        self.assertEqual(await db.migrate(), _load_migrations(db.dialect)[-1][0])
        rows = await db.run(
            "test.read",
            lambda txn: txn.execute("SELECT kind, user_id, actor_id FROM changes ORDER BY id").fetchall(),
        )
        self.assertEqual([tuple(r) for r in rows], [("thread_follow", None, 1), ("contact", 1, 1)])


class ThreadFollowMigrationSQLiteTests(ThreadFollowMigrationTestsMixin, unittest.TestCase):
    backend = "sqlite"


class ThreadFollowMigrationPostgresTests(ThreadFollowMigrationTestsMixin, unittest.TestCase):
    backend = "postgres"
    if not POSTGRES_DSN:
        skip = NO_POSTGRES
