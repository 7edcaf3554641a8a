"""The database layer: migrations and SQL placeholders on both databases, SQLite file modes."""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.trial import unittest

from tests.support.databases import DatabaseTestCase, for_each_backend
from tests.support.deferreds import inline
from umoc.storage.database import Database, SchemaTooNewError
from umoc.storage.engine.migrations import Migration, _migrate_txn, _statements


class DatabaseTestsMixin:
    @inline
    async def test_migrating_twice_changes_nothing(self) -> None:
        self.assertEqual(await self.db.migrate(), await self.db.migrate())

    @inline
    async def test_schema_newer_than_the_code_is_refused(self) -> None:
        sql = "INSERT INTO schema_version (version, applied_at) VALUES (999, 0)"
        await self.db.run("test", lambda t: t.execute(sql))
        with self.assertRaises(SchemaTooNewError):
            await self.db.run("test", _migrate_txn, [Migration(1, "", None)])

    @inline
    async def test_percent_signs_in_values_survive_placeholder_conversion(self) -> None:
        await self.storage.users.create("pct", "100%?done", 1.0)
        creds = await self.storage.users.credentials("pct")
        self.assertEqual(creds[2], "100%?done")

    @inline
    async def test_a_transaction_is_one_transaction_and_ends_committed_or_undone(self) -> None:
        # PostgreSQL's connections are in autocommit mode, the BEGIN sent with the first statement (issue 25):
        # the statements after it are still one transaction, a failed one leaves nothing and no transaction open.
        await self.db.run("test", lambda t: t.execute("CREATE TABLE t_tx (n INTEGER)"))

        def fails(txn: Any) -> None:
            txn.execute("INSERT INTO t_tx (n) VALUES (1)")
            raise ValueError("undo")

        for _ in range(3):  # more than once, so a pool connection is reused after a failure
            with self.assertRaises(ValueError):
                await self.db.run("test", fails)
            await self.db.run("test", lambda t: t.execute("INSERT INTO t_tx (n) VALUES (2)"))
        self.assertEqual(await self.db.read("test", lambda t: t.scalar("SELECT sum(n) FROM t_tx")), 6)
        self.assertIsNone(await self.db.run("test", lambda t: None))  # nothing sent: nothing to end
        if self.db.dialect.name == "postgres":
            ids = await self.db.run(
                "test", lambda t: [t.scalar("SELECT txid_current()"), t.scalar("SELECT txid_current()")]
            )
            self.assertEqual(ids[0], ids[1], "both statements in one transaction")


for_each_backend(DatabaseTestsMixin, DatabaseTestCase, globals())


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


class StatementSplitTests(unittest.TestCase):
    """Schema files are split at ``;``, but a trigger's body stays one statement."""

    def test_a_trigger_body_is_not_split(self) -> None:
        script = (
            "-- a comment; with a semicolon\n"
            "CREATE TABLE t (a INTEGER);\n"
            "create trigger t_ins AFTER INSERT ON t BEGIN\n"
            "    INSERT INTO u VALUES (new.a);\n"
            "    INSERT INTO v VALUES (new.a);\n"
            "END;\n"
            "CREATE INDEX t_a ON t (a)\n"
        )
        self.assertEqual(
            _statements(script),
            [
                "CREATE TABLE t (a INTEGER)",
                "create trigger t_ins AFTER INSERT ON t BEGIN\n    INSERT INTO u VALUES (new.a);\n"
                "    INSERT INTO v VALUES (new.a);\nEND",
                "CREATE INDEX t_a ON t (a)",
            ],
        )

    def test_an_unterminated_trigger_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            _statements("CREATE TRIGGER x AFTER INSERT ON t BEGIN INSERT INTO u VALUES (1);")
