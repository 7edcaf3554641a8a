"""Migrated databases for tests, copied from a template migrated once per run.

SQLite: the first test in a process migrates a template file; every test
then gets a copy of it (``shutil.copyfile``).

PostgreSQL (when ``UMOC_TEST_POSTGRES`` is set), as Synapse's tests do: the
first test in a process creates a template database next to the one the
DSN names and migrates it, then every test gets its own
``CREATE DATABASE ... TEMPLATE``, dropped when the test ends.  Names are
random, so parallel trial workers and other runs on the same server never
meet; the template is dropped when the process exits.  Without the
variable the PostgreSQL variants skip.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import urllib.parse
import uuid
from typing import Any, Callable

from twisted.internet import threads
from twisted.trial import unittest

from tests.support.deferreds import inline
from umoc.storage import Storage
from umoc.storage.database import Database

__all__ = [
    "NO_POSTGRES", "NO_REDIS", "POSTGRES_DSN", "REDIS_URL", "DatabaseTestCase", "for_each_backend",
    "migrated_database", "reopenable_database",
]

POSTGRES_DSN = os.environ.get("UMOC_TEST_POSTGRES", "")
REDIS_URL = os.environ.get("UMOC_TEST_REDIS", "")
NO_POSTGRES = "UMOC_TEST_POSTGRES is not set: no PostgreSQL to test against"
NO_REDIS = "UMOC_TEST_REDIS is not set: no Redis to test against"

_templates: dict[str, str] = {}


def postgres_dsn(database: str) -> str:
    """``UMOC_TEST_POSTGRES`` with another database name."""
    parts = urllib.parse.urlsplit(POSTGRES_DSN)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def _postgres_admin(statement: str) -> None:
    """Run CREATE/DROP DATABASE on the DSN's own database (they cannot run in a transaction)."""
    import psycopg2

    conn = psycopg2.connect(POSTGRES_DSN)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


async def _template(backend: str) -> str:
    """The migrated template of this process: a file path (SQLite) or a database name (PostgreSQL)."""
    if backend in _templates:
        return _templates[backend]
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="umoc-template-")
        atexit.register(shutil.rmtree, folder, True)
        template = os.path.join(folder, "template.sqlite3")
        db = Database.sqlite(template)
    elif backend == "postgres":
        template = "umoc_template_" + uuid.uuid4().hex[:16]
        _postgres_admin(f"CREATE DATABASE {template}")
        atexit.register(_postgres_admin, f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
        db = Database.postgres(postgres_dsn(template), 1, 1)
    else:
        raise ValueError(backend)
    try:
        await db.migrate()
    finally:
        # Closing checkpoints SQLite's WAL into the file, and a PostgreSQL
        # template must have no connection open while it is copied.
        db.close()
    _templates[backend] = template
    return template


async def reopenable_database(test: unittest.TestCase, backend: str) -> Callable[[], Database]:
    """A factory of `Database` objects that all open the same migrated data, removed when the test ends.

    For restart tests, and for several nodes sharing one database.
    """
    template = await _template(backend)
    if backend == "sqlite":
        path = os.path.join(tempfile.mkdtemp(prefix="umoc-test-"), "umoc.sqlite3")
        shutil.copyfile(template, path)
        test.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        return lambda: Database.sqlite(path)
    name = "umoc_t_" + uuid.uuid4().hex[:16]
    _postgres_admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    test.addCleanup(threads.deferToThread, _postgres_admin, f"DROP DATABASE {name} WITH (FORCE)")
    return lambda: Database.postgres(postgres_dsn(name), 1, 5)


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
