"""Acked means durable: SQLite fsyncs every commit unless told otherwise."""

from __future__ import annotations

import os
import tempfile

from twisted.trial import unittest

from tests.support.deferreds import inline
from umoc.config import parse_config
from umoc.storage.database import Database


class SQLiteSynchronousTests(unittest.TestCase):
    def _open(self, **kwargs: str) -> Database:
        db = Database.sqlite(os.path.join(tempfile.mkdtemp(prefix="umoc-test-"), "umoc.sqlite3"), **kwargs)
        self.addCleanup(db.close)
        return db

    @inline
    async def test_every_commit_is_fsynced_by_default(self) -> None:
        db = self._open()
        # PRAGMA synchronous: 2 is FULL, 1 is NORMAL.
        self.assertEqual(await db.run("t", lambda txn: txn.scalar("PRAGMA synchronous")), 2)

    @inline
    async def test_normal_is_chosen_by_config(self) -> None:
        db = self._open(synchronous="normal")
        self.assertEqual(await db.run("t", lambda txn: txn.scalar("PRAGMA synchronous")), 1)

    def test_config_default_is_full_and_other_values_are_refused(self) -> None:
        self.assertEqual(parse_config({}).database.sqlite_synchronous, "full")
        self.assertEqual(
            parse_config({"database": {"sqlite_synchronous": "normal"}}).database.sqlite_synchronous, "normal"
        )
        with self.assertRaises(Exception) as caught:
            parse_config({"database": {"sqlite_synchronous": "off"}})
        self.assertIn("database.sqlite_synchronous", str(caught.exception))
