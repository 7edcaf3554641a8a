"""Migration 020 on both databases: existing groups get roles (creator owner, others member)."""

from __future__ import annotations

from twisted.trial import unittest

from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, database_before
from tests.support.deferreds import inline
from umoc.storage.database import Txn, _load_migrations

T0 = 1_700_000_000.0


class GroupRolesMigrationTestsMixin:
    backend = "sqlite"

    @inline
    async def test_the_creator_is_owner_others_members_and_an_orphaned_groups_admin_is_owner(self) -> None:
        db = await database_before(self, self.backend, 20)

        # Group 10: alice (1) created it and is its admin; group 11: alice left, bob (2) was promoted admin.
        def seed(txn: Txn) -> None:
            for user_id, name in ((1, "alice"), (2, "bob"), (3, "carol")):
                txn.execute(
                    "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, 'x', ?)",
                    (user_id, name, T0),
                )
            for group_id in (10, 11):
                txn.execute(
                    "INSERT INTO chats (id, is_group, name, created_by, created_at, member_count, last_activity)"
                    " VALUES (?, 1, 'g', 1, ?, 3, ?)",
                    (group_id, T0, T0),
                )
            rows = [(10, 1, 1, T0), (10, 2, 0, T0 + 1), (10, 3, 0, T0 + 2), (11, 3, 0, T0), (11, 2, 1, T0 + 1)]
            for group_id, user_id, is_admin, joined in rows:
                txn.execute(
                    "INSERT INTO user_chats (user_id, chat_id, is_group, is_admin, joined_at) VALUES (?, ?, 1, ?, ?)",
                    (user_id, group_id, is_admin, joined),
                )

        await db.run("test.seed", seed)
        self.assertEqual(await db.migrate(), _load_migrations(db.dialect)[-1][0])

        def read(txn: Txn) -> list[tuple[int, int, str, int]]:
            rows = txn.execute(
                "SELECT chat_id, user_id, role, is_admin FROM user_chats ORDER BY chat_id, user_id"
            ).fetchall()
            return [(int(r["chat_id"]), int(r["user_id"]), r["role"], int(r["is_admin"])) for r in rows]

        self.assertEqual(
            await db.run("test.read", read),
            [
                (10, 1, "owner", 1),
                (10, 2, "member", 0),
                (10, 3, "member", 0),
                (11, 2, "owner", 1),
                (11, 3, "member", 0),
            ],
        )


class GroupRolesMigrationSQLiteTests(GroupRolesMigrationTestsMixin, unittest.TestCase):
    backend = "sqlite"


class GroupRolesMigrationPostgresTests(GroupRolesMigrationTestsMixin, unittest.TestCase):
    backend = "postgres"
    if not POSTGRES_DSN:
        skip = NO_POSTGRES
