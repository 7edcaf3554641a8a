"""The pool after the primary changed: read-only and lost connections are replaced, with their siblings (issue 33).

On the test PostgreSQL: a connection whose server refuses writes (here
``default_transaction_read_only``, as on a standby or a fenced old
primary) fails its transaction with `DatabaseUnavailableError` and is
replaced; one lost (its backend terminated, as when the primary goes away)
likewise; and every other connection opened before is replaced at its next
use instead of failing a request of its own.  The real promotion is in
``tests/e2e/test_pg_failover.py``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest

from tests.support.databases import NO_POSTGRES, POSTGRES_DSN
from tests.support.deferreds import inline
from umoc.storage.database import Database, DatabaseUnavailableError, Deadline


def backend_pid(txn: Any) -> int:
    return txn.scalar("SELECT pg_backend_pid()")


def write(txn: Any) -> None:
    txn.execute("CREATE TEMPORARY TABLE scratch (x INTEGER)")


def read_only_dsn() -> str:
    joiner = "&" if "?" in POSTGRES_DSN else "?"
    return POSTGRES_DSN + joiner + "options=-c%20default_transaction_read_only%3Don"


class PrimaryChangeTests(unittest.TestCase):
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    def database(self, dsn: str = POSTGRES_DSN) -> Database:
        db = Database.postgres(dsn, 1, 1, deadline=Deadline(reactor, 5.0, 5.0))
        self.addCleanup(db.close)
        return db

    @inline
    async def test_a_server_that_refuses_writes_fails_clearly_and_its_connection_is_replaced(self) -> None:
        db = self.database(read_only_dsn())
        before = await db.run("pid", backend_pid)
        with self.assertRaises(DatabaseUnavailableError):
            await db.run("write", write)
        self.assertNotEqual(await db.run("pid", backend_pid), before)
        self.assertEqual(db._pool.generation, 1)

    @inline
    async def test_a_lost_connection_is_replaced_and_outdates_the_others(self) -> None:
        db, other = self.database(), self.database()
        pid = await db.run("pid", backend_pid)
        await other.run("kill", lambda txn: txn.scalar("SELECT pg_terminate_backend(?)", (pid,)))
        with self.assertRaises(DatabaseUnavailableError):
            await db.run("pid", backend_pid)
        self.assertEqual(db._pool.generation, 1)
        self.assertNotEqual(await db.run("pid", backend_pid), pid)

    @inline
    async def test_connections_opened_before_a_loss_elsewhere_are_replaced_before_use(self) -> None:
        db = self.database()
        before = await db.run("pid", backend_pid)
        db._pool.generation += 1  # another thread's connection was found lost
        self.assertNotEqual(await db.run("pid", backend_pid), before, "the stale connection was not used")
        after = await db.run("pid", backend_pid)
        self.assertEqual(await db.run("pid", backend_pid), after, "and its replacement is kept")

    @inline
    async def test_an_ordinary_error_keeps_the_connection(self) -> None:
        db = self.database()
        before = await db.run("pid", backend_pid)
        import psycopg2.errors

        with self.assertRaises(psycopg2.errors.UndefinedColumn):
            await db.run("bad", lambda txn: txn.execute("SELECT no_such_column"))
        self.assertEqual(await db.run("pid", backend_pid), before)
        self.assertEqual(db._pool.generation, 0)
