"""Copy a SQLite database into PostgreSQL (``umoc-admin port-db``).

Both databases are migrated to the same schema version first (the caller
runs `Database.migrate` on each), so their tables and columns match; then,
in one PostgreSQL transaction, every table's rows are copied in foreign-key
order (parents first), values converted where the dialects store them
differently (SQLite keeps booleans as 0/1), every identity sequence is set
past the largest id copied (else the first new user would collide with
user 1), and the row counts are compared.  Any failure rolls the whole copy
back: the target is either untouched or complete.

Idempotence: a target that already has rows is never written to.  When its
row counts equal the source's, the copy was done before and the run is a
no-op (``already_copied``); otherwise it is refused with both counts.

Blocking (sqlite3 and psycopg2 directly): run it in a thread.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import extras, sql

from umoc.storage.database import Keepalives

__all__ = ["PortRefusedError", "PortReport", "port_sqlite_to_postgres"]

#: Rows sent to PostgreSQL per INSERT.
BATCH = 1000
#: Tables that are not data: the migration runner's own, written by each database's migrations.
_SKIP = {"schema_version", "schema_migrations", "schema_compat_version"}


class PortRefusedError(Exception):
    """The copy cannot (or must not) be made; nothing was written."""


@dataclass
class PortReport:
    """What a port did, table by table."""

    #: Rows per table in the source (and, after a copy, in the target).
    rows: dict[str, int] = field(default_factory=dict)
    #: True when the target already held exactly these rows: nothing was done.
    already_copied: bool = False
    #: ``table.column`` of each identity sequence set, with the next value it will give.
    sequences: dict[str, int] = field(default_factory=dict)


def _source_tables(conn: sqlite3.Connection) -> list[str]:
    """The data tables: not the migration record, not SQLite's own, not a full-text index.

    A virtual table (the FTS5 index ``messages_fts``) and its shadow tables
    (``messages_fts_data``, ``_idx``, ...) are SQLite's index of rows copied
    anyway; PostgreSQL's migrations build its own (``search_vector``).
    """
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    virtual = [name for name, ddl in rows if (ddl or "").lstrip().upper().startswith("CREATE VIRTUAL TABLE")]
    return [
        name
        for name, _ddl in rows
        if name not in _SKIP and name not in virtual and not any(name.startswith(v + "_") for v in virtual)
    ]


def _parents(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[2] for row in conn.execute(f'PRAGMA foreign_key_list("{table}")').fetchall()} - {table}


def _in_dependency_order(conn: sqlite3.Connection, tables: list[str]) -> list[str]:
    """Parents before children, so every foreign key points at a row already copied."""
    ordered: list[str] = []
    seen: set[str] = set()

    def visit(table: str, path: tuple[str, ...]) -> None:
        if table in seen or table in path or table not in tables:
            return
        for parent in sorted(_parents(conn, table)):
            visit(parent, (*path, table))
        seen.add(table)
        ordered.append(table)

    for table in tables:
        visit(table, ())
    return ordered


def _target_columns(cur: Any, table: str) -> dict[str, tuple[str, bool]]:
    """Column name -> (data type, is an identity/serial column) in the target's current schema."""
    cur.execute(
        "SELECT column_name, data_type, is_identity, column_default FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    )
    return {
        name: (data_type, is_identity == "YES" or str(default or "").startswith("nextval("))
        for name, data_type, is_identity, default in cur.fetchall()
    }


def _count(cur: Any, table: str) -> int:
    cur.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table)))
    return int(cur.fetchone()[0])


def port_sqlite_to_postgres(sqlite_path: str | Path, dsn: str) -> PortReport:
    """Copy every row of the SQLite database at ``sqlite_path`` into the PostgreSQL database ``dsn``.

    Raises `PortRefusedError` when the source is missing, the schemas
    differ, or the target holds other data.
    """
    path = Path(sqlite_path)
    if not path.is_file():
        raise PortRefusedError(f"no SQLite database at {path}")
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    # Keepalives: a server that vanishes mid-copy ends the run with an error instead of a hang.
    target = psycopg2.connect(dsn, **Keepalives().connect_kwargs())
    try:
        return _port(source, target)
    finally:
        source.close()
        target.close()


def _port(source: sqlite3.Connection, target: Any) -> PortReport:
    report = PortReport()
    tables = _in_dependency_order(source, _source_tables(source))
    with target:  # one transaction: committed at the end, rolled back on any error
        cur = target.cursor()
        columns: dict[str, dict[str, tuple[str, bool]]] = {}
        for table in tables:
            columns[table] = _target_columns(cur, table)
            if not columns[table]:
                raise PortRefusedError(f"table {table} is missing in the target: is it migrated to the same version?")
            report.rows[table] = int(source.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
        existing = {table: _count(cur, table) for table in tables}
        if any(existing.values()):
            if existing == report.rows:
                report.already_copied = True
                return report
            held = ", ".join(f"{t}: {n}" for t, n in existing.items() if n)
            raise PortRefusedError(f"the target database already holds data ({held}); nothing was copied")
        for table in tables:
            _copy_table(source, cur, table, columns[table])
        for table in tables:
            for column, (_type, identity) in columns[table].items():
                if identity:
                    report.sequences[f"{table}.{column}"] = _set_sequence(cur, table, column)
        copied = {table: _count(cur, table) for table in tables}
        if copied != report.rows:
            raise PortRefusedError(f"row counts differ after the copy ({copied} != {report.rows}); rolled back")
    return report


def _copy_table(source: sqlite3.Connection, cur: Any, table: str, target_columns: dict[str, tuple[str, bool]]) -> None:
    names = [row[1] for row in source.execute(f'PRAGMA table_info("{table}")').fetchall()]
    missing = [n for n in names if n not in target_columns]
    if missing:
        raise PortRefusedError(f"columns {table}.{', '.join(missing)} are missing in the target")
    booleans = [i for i, n in enumerate(names) if target_columns[n][0] == "boolean"]
    insert = sql.SQL("INSERT INTO {} ({}) VALUES %s").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(n) for n in names)
    )
    column_list = ", ".join(f'"{n}"' for n in names)
    rows = source.execute(f'SELECT {column_list} FROM "{table}"')
    while batch := rows.fetchmany(BATCH):
        if booleans:
            batch = [
                tuple(bool(v) if i in booleans and v is not None else v for i, v in enumerate(row)) for row in batch
            ]
        extras.execute_values(cur, insert.as_string(cur), batch, page_size=BATCH)


def _set_sequence(cur: Any, table: str, column: str) -> int:
    """Point the column's sequence past the largest value copied; the next value it will give."""
    cur.execute(sql.SQL("SELECT COALESCE(MAX({}), 0) FROM {}").format(sql.Identifier(column), sql.Identifier(table)))
    largest = int(cur.fetchone()[0])
    cur.execute(
        "SELECT setval(pg_get_serial_sequence(%s, %s), %s, %s)",
        (sql.Identifier(table).as_string(cur), column, max(largest, 1), largest > 0),
    )
    return largest + 1
