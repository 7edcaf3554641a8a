"""Migration 016 on both databases: the delivery times already kept move to ``message_deliveries``, reads stay read."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

from twisted.trial import unittest

from tests.support.databases import NO_POSTGRES, POSTGRES_DSN
from tests.support.deferreds import inline
from umoc.storage.database import Database, Txn, _load_migrations, _migrate_txn

T0 = 1_700_000_000.0


class ReadStateMigrationTestsMixin:
    backend = "sqlite"

    async def database(self) -> Database:
        if self.backend == "sqlite":
            folder = tempfile.mkdtemp(prefix="umoc-016-")
            self.addCleanup(shutil.rmtree, folder, True)  # type: ignore[attr-defined]
            db = Database.sqlite(os.path.join(folder, "umoc.sqlite3"))
        else:
            import psycopg2

            schema = "umoc_016_" + uuid.uuid4().hex[:12]

            def run(statement: str) -> None:
                conn = psycopg2.connect(POSTGRES_DSN)
                with conn, conn.cursor() as cur:
                    cur.execute(statement)
                conn.close()

            run(f"CREATE SCHEMA {schema}")
            self.addCleanup(run, f"DROP SCHEMA {schema} CASCADE")  # type: ignore[attr-defined]
            db = Database.postgres(POSTGRES_DSN, 1, 2, schema=schema)
        self.addCleanup(db.close)  # type: ignore[attr-defined]
        return db

    @inline
    async def test_first_delivery_times_of_direct_messages_become_rows_and_reads_stay_read(self) -> None:
        db = await self.database()
        migrations = _load_migrations(db.dialect)
        await db.run("test.migrate", _migrate_txn, [m for m in migrations if m[0] < 16])
        delivered, pending = str(uuid.uuid4()), str(uuid.uuid4())

        # Rows as a schema-15 server wrote them.
        def seed(txn: Txn) -> None:
            for user_id, name in ((1, "alice"), (2, "bob")):
                txn.execute(
                    "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, 'x', ?)",
                    (user_id, name, T0),
                )
            txn.execute(
                "INSERT INTO chats (id, is_group, user_lo, user_hi, created_at, last_activity)"
                " VALUES (1, 0, 1, 2, ?, ?)",
                (T0, T0),
            )
            for seq, message_id, delivered_at in ((1, delivered, T0 + 5), (2, pending, None)):
                txn.execute(
                    "INSERT INTO messages (seq, id, chat_id, sender_id, recipient_id, is_group, type, content,"
                    " created_at, delivered_at) VALUES (?, ?, 1, 1, 2, 0, 'text', 'hi', ?, ?)",
                    (seq, message_id, T0, delivered_at),
                )
            txn.execute("INSERT INTO message_reads (message_seq, user_id, read_at) VALUES (1, 2, ?)", (T0 + 9,))

        await db.run("test.seed", seed)
        self.assertEqual(await db.migrate(), migrations[-1][0])

        def read(txn: Txn) -> tuple[list[tuple[int, int, float]], list[int]]:
            deliveries = txn.execute("SELECT message_seq, user_id, delivered_at FROM message_deliveries").fetchall()
            reads = txn.execute("SELECT marked_unread FROM message_reads").fetchall()
            return (
                [(int(r["message_seq"]), int(r["user_id"]), float(r["delivered_at"])) for r in deliveries],
                [int(r["marked_unread"]) for r in reads],
            )

        self.assertEqual(await db.run("test.read", read), ([(1, 2, T0 + 5)], [0]))


class ReadStateMigrationSQLiteTests(ReadStateMigrationTestsMixin, unittest.TestCase):
    backend = "sqlite"


class ReadStateMigrationPostgresTests(ReadStateMigrationTestsMixin, unittest.TestCase):
    backend = "postgres"
    if not POSTGRES_DSN:
        skip = NO_POSTGRES
