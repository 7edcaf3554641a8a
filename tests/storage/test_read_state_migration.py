"""Migration 016 on both databases: the delivery times already kept move to ``message_deliveries``, reads stay read."""

from __future__ import annotations

import uuid

from twisted.trial import unittest

from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, database_before, seed_pair_txn
from tests.support.deferreds import inline
from umoc.storage.database import Txn, _load_migrations

T0 = 1_700_000_000.0


class ReadStateMigrationTestsMixin:
    backend = "sqlite"

    @inline
    async def test_first_delivery_times_of_direct_messages_become_rows_and_reads_stay_read(self) -> None:
        db = await database_before(self, self.backend, 16)
        delivered, pending = str(uuid.uuid4()), str(uuid.uuid4())

        # Rows as a schema-15 server wrote them.
        def seed(txn: Txn) -> None:
            seed_pair_txn(txn, T0)
            for seq, message_id, delivered_at in ((1, delivered, T0 + 5), (2, pending, None)):
                txn.execute(
                    "INSERT INTO messages (seq, id, chat_id, sender_id, recipient_id, is_group, type, content,"
                    " created_at, delivered_at) VALUES (?, ?, 1, 1, 2, 0, 'text', 'hi', ?, ?)",
                    (seq, message_id, T0, delivered_at),
                )
            txn.execute("INSERT INTO message_reads (message_seq, user_id, read_at) VALUES (1, 2, ?)", (T0 + 9,))

        await db.run("test.seed", seed)
        self.assertEqual(await db.migrate(), _load_migrations(db.dialect)[-1][0])

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
