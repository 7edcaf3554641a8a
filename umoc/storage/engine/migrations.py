"""Migrations: numbered SQL files in ``storage/schema``, applied once each, recorded in a table.

Each version is one shared file, plus a ``.sqlite.sql`` / ``.postgres.sql``
file holding only what differs, applied after it.
"""

from __future__ import annotations

import re
from importlib import resources

from twisted.logger import Logger

from umoc.storage.engine.dialect import Dialect
from umoc.storage.engine.txn import Txn

log = Logger()


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer UMOC than this one."""


def _load_migrations(dialect: Dialect) -> list[tuple[int, str]]:
    """Each version's script: ``NNN_name.sql`` (what both databases run), then ``NNN_name.<dialect>.sql``.

    One pattern for the dialects' differences in the schema: a small one is a
    fragment filled in by `Dialect.schema_text` (``SERIAL_PK``,
    ``WITHOUT_ROWID``); a larger one (another index, a column only one
    dialect has, full-text search) goes in the version's per-dialect file,
    which holds only what differs and runs after the shared file.
    """
    folder = resources.files("umoc.storage") / "schema"
    shared: dict[int, str] = {}
    own: dict[int, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        name = entry.name
        if not name.endswith(".sql"):
            continue
        parts = name[:-4].split(".")
        version = int(parts[0].split("_", 1)[0])
        text = dialect.schema_text(entry.read_text(encoding="utf-8"))
        if len(parts) == 1:
            shared[version] = text
        elif parts[1] == dialect.name:
            own[version] = text
    scripts = {v: ";\n".join(t for t in (shared.get(v, ""), own.get(v, "")) if t.strip()) for v in {*shared, *own}}
    return sorted(scripts.items())


_TRIGGER_START = re.compile(r"\s*CREATE\s+TRIGGER\b", re.IGNORECASE)


_TRIGGER_END = re.compile(r"\bEND\s*$", re.IGNORECASE)


def _statements(script: str) -> list[str]:
    """The script's statements, split at ``;``, except inside a trigger's ``BEGIN ... END`` or a ``$$`` body.

    A ``CREATE TRIGGER`` statement runs until the piece that ends in ``END``;
    a function's body (PostgreSQL, between ``$$`` and ``$$``) runs to its
    closing ``$$``; schema files hold no ``;`` in string literals.
    """
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    statements: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending = f"{pending};{piece}" if pending else piece
        if _TRIGGER_START.match(pending) and not _TRIGGER_END.search(pending):
            continue
        if pending.count("$$") % 2:
            continue
        if pending.strip():
            statements.append(pending.strip())
        pending = ""
    if pending.strip():
        raise ValueError(f"unterminated trigger or function body in a schema file: {pending.strip()[:60]}")
    return statements


def _migrate_txn(txn: Txn, migrations: list[tuple[int, str]]) -> int:
    if txn.dialect.name == "postgres":
        # Two nodes starting together must not both migrate: one lock per schema, so databases
        # (or test schemas) that share a server never wait on each other's migrations.
        txn.execute("SELECT pg_advisory_xact_lock(727274, hashtext(current_schema()))")
    txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
    current = txn.scalar("SELECT MAX(version) FROM schema_version") or 0
    newest = migrations[-1][0] if migrations else 0
    if current > newest:
        raise SchemaTooNewError(f"database schema version {current} is newer than this UMOC's {newest}")
    for version, script in migrations:
        if version <= current:
            continue
        for statement in _statements(script):
            txn.execute(statement)
        txn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (version,))
        log.info("Applied schema migration {version}", version=version)
    return max(current, newest)
