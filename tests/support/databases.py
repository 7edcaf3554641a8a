"""Migrated databases for tests, without migrating for every test.

SQLite: the first test in a process migrates a template file; every test
then gets a copy of it (``shutil.copyfile``).

PostgreSQL (when ``UMOC_TEST_POSTGRES`` is set): a test gets a schema of
its own, migrated when the process first needed it; when the test ends its
rows are deleted and its sequences restarted, and the schema goes back to
the process's pool for the next test.  Emptying a few small tables costs
far less than creating and migrating a schema, and cloning a database
(``CREATE DATABASE ... TEMPLATE``) costs more still: it copies the
template's system catalogs every time.  Schema names are random, so
parallel trial workers and other runs on the same server never meet; the
schemas are dropped when the process exits.  Without the variable the
PostgreSQL variants skip.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.trial import unittest

from tests.support.deferreds import eventually, inline
from umoc.storage import Storage
from umoc.storage.database import Database, Txn

__all__ = [
    "befriend",
    "no_other_transaction_older_than_the_prune",
    "NO_CLUSTER",
    "NO_POSTGRES",
    "NO_REDIS",
    "POSTGRES_DSN",
    "REDIS_URL",
    "DatabaseTestCase",
    "for_each_backend",
    "migrated_database",
    "postgres_schema",
    "reopenable_database",
    "TwoWritersTestCase",
    "database_before",
    "hold_writer",
    "seed_pair_txn",
    "unmigrated_database",
]

POSTGRES_DSN = os.environ.get("UMOC_TEST_POSTGRES", "")
REDIS_URL = os.environ.get("UMOC_TEST_REDIS", "")
NO_POSTGRES = "UMOC_TEST_POSTGRES is not set: no PostgreSQL to test against"
NO_REDIS = "UMOC_TEST_REDIS is not set: no Redis to test against"
#: The ``skip`` of tests that need both (several nodes): None when both are there.
NO_CLUSTER = NO_POSTGRES if not POSTGRES_DSN else NO_REDIS if not REDIS_URL else None

_sqlite_templates: list[str] = []
_free_schemas: list[str] = []
#: What each schema's ``schema_version`` held once migrated.
_migrated_versions: dict[str, list[int]] = {}


def _postgres(statement: str) -> None:
    """Run one statement on the DSN's database."""
    import psycopg2

    conn = psycopg2.connect(POSTGRES_DSN)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


async def _sqlite_template() -> str:
    """This process's migrated template file."""
    if not _sqlite_templates:
        folder = tempfile.mkdtemp(prefix="umoc-template-")
        atexit.register(shutil.rmtree, folder, True)
        path = os.path.join(folder, "template.sqlite3")
        db = Database.sqlite(path)
        try:
            await db.migrate()
        finally:
            db.close()  # checkpoints the WAL into the file, which is all that is copied
        _sqlite_templates.append(path)
    return _sqlite_templates[0]


async def _postgres_schema() -> str:
    """A migrated, empty schema no test is using."""
    if _free_schemas:
        return _free_schemas.pop()
    schema = "umoc_t_" + uuid.uuid4().hex[:16]
    _postgres(f"CREATE SCHEMA {schema}")
    atexit.register(_postgres, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    db = Database.postgres(POSTGRES_DSN, 1, 1, schema=schema)
    try:
        await db.migrate()
        versions = await db.run(
            "test.versions", lambda txn: txn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        )
    finally:
        db.close()
    _migrated_versions[schema] = [version for (version,) in versions]
    return schema


def _empty(schema: str) -> None:
    """Delete every row but the migration runner's and restart every sequence, as if freshly migrated; then reuse it.

    Replication role "replica" skips foreign key triggers, so the tables can
    be emptied in any order (the test DSN's role is a superuser).
    """
    import psycopg2

    conn = psycopg2.connect(POSTGRES_DSN)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT format('DELETE FROM %%I.%%I', schemaname, tablename) FROM pg_tables"
                " WHERE schemaname = %s"
                " AND tablename NOT IN ('schema_version', 'schema_migrations', 'schema_compat_version')"
                " UNION ALL SELECT format('SELECT setval(%%L, 1, false)', schemaname || '.' || sequencename)"
                " FROM pg_sequences WHERE schemaname = %s",
                (schema, schema),
            )
            statements = [row[0] for row in cur.fetchall()]
            cur.execute(f"SELECT array_agg(version ORDER BY version) FROM {schema}.schema_version")
            if cur.fetchone()[0] != _migrated_versions.get(schema):
                # The test changed the schema itself (a newer version, say): not reusable.
                cur.execute(f"DROP SCHEMA {schema} CASCADE")
                return
            cur.execute("SET LOCAL session_replication_role = replica")
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()
    _free_schemas.append(schema)


async def postgres_schema(test: unittest.TestCase) -> str:
    """A migrated schema of this test's own, emptied for the next test when this one ends.

    For code that is given a DSN or a schema rather than a `Database`.
    """
    schema = await _postgres_schema()
    test.addCleanup(threads.deferToThread, _empty, schema)
    return schema


async def reopenable_database(test: unittest.TestCase, backend: str) -> Callable[[], Database]:
    """A factory of `Database` objects that all open the same migrated data, given up when the test ends.

    For restart tests, and for several nodes sharing one database.
    """
    if backend == "sqlite":
        template = await _sqlite_template()
        path = os.path.join(tempfile.mkdtemp(prefix="umoc-test-"), "umoc.sqlite3")
        shutil.copyfile(template, path)
        test.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        return lambda: Database.sqlite(path)
    if backend == "postgres":
        schema = await postgres_schema(test)
        return lambda: Database.postgres(POSTGRES_DSN, 1, 5, schema=schema)
    raise ValueError(backend)


async def migrated_database(test: unittest.TestCase, backend: str) -> Database:
    """A database of its own for this test, already migrated, removed when the test ends."""
    return (await reopenable_database(test, backend))()


class DatabaseTestCase(unittest.TestCase):
    """A migrated database per test; subclasses set ``backend``."""

    backend = "sqlite"

    @inline
    async def setUp(self) -> None:
        self.db = await migrated_database(self, self.backend)
        self.addCleanup(self.db.close)
        self.storage = Storage(self.db)


def for_each_backend(mixin: type, base: type, module_globals: dict[str, Any]) -> None:
    """Define ``<Mixin>SQLite`` and ``<Mixin>Postgres`` test classes from one mixin."""
    name = mixin.__name__.removesuffix("Mixin").removesuffix("Tests") + "Tests"
    sqlite_cls = type(name + "SQLite", (mixin, base), {"backend": "sqlite", "__module__": module_globals["__name__"]})
    attrs: dict[str, Any] = {"backend": "postgres", "__module__": module_globals["__name__"]}
    if not POSTGRES_DSN:
        attrs["skip"] = NO_POSTGRES
    postgres_cls = type(name + "Postgres", (mixin, base), attrs)
    module_globals[sqlite_cls.__name__] = sqlite_cls
    module_globals[postgres_cls.__name__] = postgres_cls


def unmigrated_database(test: Any, backend: str, label: str) -> Database:
    """A database of its own for ``test``, not migrated (a migration test applies versions itself).

    SQLite: a file in a new folder; PostgreSQL: a new schema.  Both are
    removed, and the database closed, when the test ends.
    """
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"umoc-{label}-")
        test.addCleanup(shutil.rmtree, folder, True)
        db = Database.sqlite(os.path.join(folder, "umoc.sqlite3"))
    else:
        schema = f"umoc_{label}_" + uuid.uuid4().hex[:12]
        _postgres(f"CREATE SCHEMA {schema}")
        test.addCleanup(_postgres, f"DROP SCHEMA {schema} CASCADE")
        db = Database.postgres(POSTGRES_DSN, 1, 2, schema=schema)
    test.addCleanup(db.close)
    return db


async def database_before(test: Any, backend: str, version: int) -> Database:
    """A database of its own for ``test``, migrated up to (not with) ``version``: for that migration's test."""
    from umoc.storage.engine.migrations import _load_migrations, _migrate_txn

    db = unmigrated_database(test, backend, f"v{version}")
    older = [m for m in _load_migrations(db.dialect) if m[0] < version]
    await db.run("test.migrate", _migrate_txn, older)
    return db


def seed_pair_txn(txn: Any, at: float) -> None:
    """Users 1 (alice) and 2 (bob) and their direct chat 1, in the columns every schema since 001 has."""
    for user_id, name in ((1, "alice"), (2, "bob")):
        txn.execute(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, 'x', ?)", (user_id, name, at)
        )
    txn.execute(
        "INSERT INTO chats (id, is_group, user_lo, user_hi, created_at, last_activity) VALUES (1, 0, 1, 2, ?, ?)",
        (at, at),
    )


async def hold_writer(
    test: Any, db: Database, postgres: bool, seconds: float
) -> tuple[threading.Event, defer.Deferred[Any]]:
    """A transaction that keeps new writes from committing until the event is set (or ``seconds``); with it,
    the transaction's Deferred.

    On SQLite it holds the one writer; on PostgreSQL it locks ``messages``
    against writes.  Released, and awaited, at cleanup.
    """
    held, release = threading.Event(), threading.Event()

    def hold(txn: Any) -> None:
        if postgres:
            txn.execute("LOCK TABLE messages IN SHARE MODE")
        held.set()
        release.wait(seconds)

    holding = db.run("test.hold", hold)
    test.addCleanup(lambda: (release.set(), holding)[1])
    await threads.deferToThread(held.wait, 10)
    return release, holding


class TwoWritersTestCase(unittest.TestCase):
    """PostgreSQL: a store on a schema of its own, and two raw connections to it that commit when a test says.

    For the feed's ordering: a transaction with the smaller id may commit
    after a reader went past a larger one.
    """

    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    @inline
    async def setUp(self) -> None:
        import psycopg2

        self.schema = schema = await postgres_schema(self)
        self.db = Database.postgres(POSTGRES_DSN, 1, 2, schema=schema)
        self.addCleanup(self.db.close)
        self.storage = Storage(self.db)
        self.conns = [psycopg2.connect(POSTGRES_DSN, options=f"-c search_path={schema}") for _ in range(2)]
        for conn in self.conns:
            self.addCleanup(conn.close)


async def no_other_transaction_older_than_the_prune(db: Any, allowed: int | None = None) -> bool:
    """PostgreSQL: wait until no transaction running anywhere on the server (but ``allowed``) is older than the
    newest change pruned; whether that came about.

    Another one (another test's, on the same server) in a fresh cursor's snapshot that ends before the cursor is
    read leaves it unsure whether it missed pruned changes: it is refused once, by design (`umoc.storage.feed`).
    A transaction starting later has a newer xid, so once this holds it goes on holding.
    """

    def none_older(txn: Any) -> bool:
        pruned = int(txn.scalar("SELECT through_xid FROM feed_pruned WHERE singleton = 1"))
        xip = txn.scalar("SELECT pg_current_snapshot()::text").split(":")[2]
        return all(int(x) == allowed or int(x) > pruned for x in xip.split(",") if x)

    return bool(await eventually(lambda: db.run("test", none_older), timeout=60))


async def befriend(db: Database, owner: int, others: list[int], at: float) -> None:
    """Make ``owner`` and each of ``others`` friends both ways, the rows put in directly (fast for hundreds)."""

    def txn_fn(txn: Txn) -> None:
        txn.executemany(
            "INSERT INTO contacts (owner_id, contact_id, status, requester_id, created_at, updated_at)"
            " VALUES (?, ?, 'FRIEND', ?, ?, ?)",
            [row for u in others for row in ((owner, u, owner, at, at), (u, owner, owner, at, at))],
        )

    await db.run("test.befriend", txn_fn)
