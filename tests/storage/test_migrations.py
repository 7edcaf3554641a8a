"""Expand/contract migrations and the compatibility version, on both databases.

A release's node must run on the schema of the release after it unless a
migration there declared otherwise (contract), and must then refuse in one
line; releases up to 0.1.0, which know only ``schema_version``, must see
the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.trial import unittest

import umoc
from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, unmigrated_database
from tests.support.deferreds import inline
from umoc.storage.database import Database, SchemaTooNewError, Txn
from umoc.storage.engine.migrations import (
    LEGACY_LAST,
    Migration,
    SchemaState,
    _declared_compat,
    _load_migrations,
    _migrate_txn,
    schema_state_txn,
)


def _versions(table: str) -> Any:
    def read(txn: Txn) -> list[int]:
        return [int(row[0]) for row in txn.execute(f"SELECT version FROM {table} ORDER BY version").fetchall()]

    return read


def _next(code: list[Migration]) -> int:
    """A version for a migration after the code's (SQLite has no 018: its newest may be below LEGACY_LAST)."""
    return max(code[-1].version, LEGACY_LAST) + 1


def _legacy_runner_would_refuse(txn: Txn) -> bool:
    """What releases up to 0.1.0 check at start: any schema_version row past their newest migration."""
    return int(txn.scalar("SELECT MAX(version) FROM schema_version")) > LEGACY_LAST


class MigrationCompatTestsMixin:
    backend = "sqlite"

    async def migrated(self, extra: list[Migration], through: int | None = None) -> tuple[Database, list[Migration]]:
        """A database migrated by this code plus ``extra`` (only up to version ``through`` when given)."""
        db = unmigrated_database(self, self.backend, "compat")
        code = _load_migrations(db.dialect)
        applied = code if through is None else [m for m in code if m.version <= through]
        await db.run("test.migrate", _migrate_txn, applied + extra)
        return db, code

    @inline
    async def test_a_fresh_database_records_its_version_and_compat_version(self) -> None:
        db, code = await self.migrated([])
        newest = code[-1].version
        # The newest legacy migration, raised only by a later contract migration (expand ones keep it).
        compat = max([m.version for m in code if m.version <= LEGACY_LAST] + [m.compat for m in code if m.compat])
        self.assertEqual(await db.run("test", schema_state_txn), SchemaState(newest, compat))
        self.assertEqual(await db.run("test", _versions("schema_migrations")), [m.version for m in code])
        # The table releases up to 0.1.0 read holds their migrations, and the compatibility version once a
        # contract migration raised it past them (SQLite's 027), so that they refuse it.
        legacy = [m.version for m in code if m.version <= LEGACY_LAST]
        self.assertEqual(
            await db.run("test", _versions("schema_version")), legacy + ([compat] if compat > LEGACY_LAST else [])
        )

    @inline
    async def test_a_database_last_migrated_before_the_compat_version_keeps_its_record(self) -> None:
        db, code = await self.migrated([], through=LEGACY_LAST)  # as 0.1.0 migrated it: nothing newer

        def as_0_1_0_left_it(txn: Txn) -> None:
            txn.execute("DROP TABLE schema_migrations")
            txn.execute("DROP TABLE schema_compat_version")

        await db.run("test", as_0_1_0_left_it)
        self.assertEqual(await db.run("test.migrate", _migrate_txn, code), code[-1].version)
        self.assertEqual(await db.run("test", _versions("schema_migrations")), [m.version for m in code])

    @inline
    async def test_an_older_node_runs_on_a_schema_expanded_after_it(self) -> None:
        db, code = await self.migrated([])
        expand = Migration(_next(code), "CREATE TABLE compat_expanded (a INTEGER)", None)
        newer = await db.run("test.migrate", _migrate_txn, [*code, expand])
        self.assertEqual(newer, expand.version)
        # The rollback: the older code starts on it, applies nothing and says which version it runs on.
        self.assertEqual(await db.run("test.migrate", _migrate_txn, code), expand.version)
        self.assertEqual((await db.run("test", schema_state_txn)).version, expand.version)
        # Releases up to 0.1.0 run on it unless the code's own migrations contracted past them (SQLite's 027).
        contracted = any(m.compat is not None and m.compat > LEGACY_LAST for m in code)
        self.assertEqual(await db.run("test", _legacy_runner_would_refuse), contracted)

    @inline
    async def test_an_older_node_refuses_a_schema_contracted_past_it(self) -> None:
        db, code = await self.migrated([])
        contract = Migration(_next(code), "CREATE TABLE compat_contracted (a INTEGER)", _next(code))
        await db.run("test.migrate", _migrate_txn, [*code, contract])
        self.assertEqual(await db.run("test", schema_state_txn), SchemaState(contract.version, contract.version))
        with self.assertRaises(SchemaTooNewError) as caught:
            await db.run("test.migrate", _migrate_txn, code)
        message = str(caught.exception)
        self.assertEqual(len(message.splitlines()), 1)
        self.assertIn(f"needs code of schema version {contract.version} or newer", message)
        self.assertIn(f"(schema version {code[-1].version})", message)
        # Releases that know only schema_version refuse it too.
        self.assertTrue(await db.run("test", _legacy_runner_would_refuse))

    @inline
    async def test_a_contract_migration_keeping_the_previous_schema_lets_it_run(self) -> None:
        db, code = await self.migrated([])
        after = _next(code)
        expand = Migration(after, "CREATE TABLE compat_a (a INTEGER)", None)
        contract = Migration(after + 1, "DROP TABLE compat_a", after)
        await db.run("test.migrate", _migrate_txn, [*code, expand, contract])
        self.assertEqual(await db.run("test.migrate", _migrate_txn, [*code, expand]), after + 1)
        with self.assertRaises(SchemaTooNewError):
            await db.run("test.migrate", _migrate_txn, code)


class MigrationCompatSQLiteTests(MigrationCompatTestsMixin, unittest.TestCase):
    backend = "sqlite"


class MigrationCompatPostgresTests(MigrationCompatTestsMixin, unittest.TestCase):
    backend = "postgres"
    if not POSTGRES_DSN:
        skip = NO_POSTGRES


class DeclarationTests(unittest.TestCase):
    """The ``-- migration:`` line every migration after LEGACY_LAST carries."""

    def test_expand_and_contract(self) -> None:
        self.assertIsNone(_declared_compat(30, ["-- migration: expand\nCREATE TABLE t (a INTEGER);"]))
        self.assertEqual(_declared_compat(30, ["-- migration: contract, compat 29\nDROP TABLE t;"]), 29)

    def test_migrations_before_the_declarations_need_none(self) -> None:
        self.assertIsNone(_declared_compat(LEGACY_LAST, ["ALTER TABLE t DROP COLUMN c;"]))

    def test_a_later_migration_without_one_is_refused(self) -> None:
        with self.assertRaisesRegex(ValueError, "declares neither"):
            _declared_compat(LEGACY_LAST + 1, ["CREATE TABLE t (a INTEGER);"])

    def test_a_contract_cannot_need_code_newer_than_itself(self) -> None:
        with self.assertRaisesRegex(ValueError, "newer than itself"):
            _declared_compat(30, ["-- migration: contract, compat 31"])

    def test_the_dialect_files_must_agree(self) -> None:
        with self.assertRaisesRegex(ValueError, "more than one kind"):
            _declared_compat(30, ["-- migration: expand", "-- migration: contract, compat 30"])

    def test_every_shipped_migration_is_loaded_with_its_declaration(self) -> None:
        from umoc.storage.engine.dialect import POSTGRES, SQLITE

        for dialect in (SQLITE, POSTGRES):
            versions = [m.version for m in _load_migrations(dialect)]
            self.assertEqual(versions, sorted(set(versions)))


class CompatibilityTableTests(unittest.TestCase):
    """The CHANGELOG's compatibility table keeps up with the migrations this release ships."""

    def test_this_releases_row_names_its_schema_and_compatibility_versions(self) -> None:
        from umoc.storage.engine.dialect import POSTGRES

        changelog = (Path(__file__).resolve().parents[2] / "docs" / "CHANGELOG.md").read_text(encoding="utf-8")
        self.assertRegex(changelog, rf"(?m)^## {re.escape(umoc.__version__)} - \d{{4}}-\d{{2}}-\d{{2}}$")
        row = re.search(rf"(?m)^\| {re.escape(umoc.__version__)} \| (.*)$", changelog)
        assert row is not None, f"no row for {umoc.__version__} in the CHANGELOG's compatibility table"
        schema, compat = [cell.strip() for cell in row.group(1).split("|")[:2]]
        everything = _load_migrations(POSTGRES)
        # Migrations after the release (on the way to the next one) are named under Unreleased, each an expand:
        # the released row stays what the release shipped.
        unreleased = changelog.split("## Unreleased", 1)[1].split("\n## ", 1)[0]
        migrations = [m for m in everything if m.version <= int(schema)]
        for newer in everything[len(migrations) :]:
            self.assertIn(f"Migration {newer.version:03d} (expand", unreleased, "named under Unreleased")
        legacy = [m.version for m in migrations if m.version <= LEGACY_LAST]
        expected_compat = max(legacy + [m.compat for m in migrations if m.compat is not None])
        self.assertEqual(schema, f"{migrations[-1].version:03d}")
        self.assertEqual(compat.split()[0], f"{expected_compat:03d}")
