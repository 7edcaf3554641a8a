"""The databases a benchmark runs on: SQLite in a temporary directory, then PostgreSQL in a throwaway schema.

Every ``bench_*.py`` that measures storage runs the same work on both, and
must leave nothing behind: the PostgreSQL schema is dropped afterwards,
whatever happened.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any, Awaitable, Callable

from umoc.storage.database import Database

__all__ = ["CountingCursor", "new_schema_name", "on_each_database", "postgres_schema"]


class CountingCursor:
    """A driver cursor that counts the statements sent through it (each a round trip on PostgreSQL)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.statements = 0

    def execute(self, *args: Any) -> Any:
        self.statements += 1
        return self._cursor.execute(*args)

    def executemany(self, *args: Any) -> Any:
        self.statements += 1
        return self._cursor.executemany(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def new_schema_name() -> str:
    return "umoc_bench_" + uuid.uuid4().hex[:12]


def postgres_schema(
    dsn: str, max_connections: int = 5, schema: str | None = None
) -> tuple[Database, Callable[[], None]]:
    """A `Database` in a new, empty schema on ``dsn`` (``schema``, or a fresh name), and the function that drops it."""
    import psycopg2

    schema = schema or new_schema_name()
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()

    return Database.postgres(dsn, 1, max_connections, schema=schema), drop


async def on_each_database(
    bench: Callable[[str, Database], Awaitable[Any]], sqlite_only: bool = False, max_connections: int = 5
) -> None:
    """``bench(name, db)`` on a fresh SQLite file, then (when ``UMOC_TEST_POSTGRES`` is set) on PostgreSQL."""
    path = os.path.join(tempfile.mkdtemp(prefix="umoc-bench-"), "bench.sqlite3")
    await bench("SQLite", Database.sqlite(path))
    dsn = os.environ.get("UMOC_TEST_POSTGRES")
    if not dsn or sqlite_only:
        print("PostgreSQL: skipped" + ("" if dsn else " (UMOC_TEST_POSTGRES is not set)"))
        return
    db, drop = postgres_schema(dsn, max_connections)
    try:
        await bench("PostgreSQL", db)
    finally:
        drop()
