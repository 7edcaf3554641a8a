"""Migrations: numbered SQL files in ``storage/schema``, applied once each, recorded in tables.

Each version is one shared file, plus a ``.sqlite.sql`` / ``.postgres.sql``
file holding only what differs, applied after it.

Expand and contract (the operator guide's "Upgrades and migrations"): every
migration after `LEGACY_LAST` declares, in a comment line of its files, what
it does to the release before it::

    -- migration: expand                  adds only what older code ignores
    -- migration: contract, compat 23     drops or changes something; code
                                          older than schema 23 must not run

The database records two numbers, as Synapse's ``schema_version`` and
``schema_compat_version`` do: its schema version (the newest migration
applied, one row per migration in ``schema_migrations``) and its
*compatibility version*, the oldest code schema version that may still run on
it (``schema_compat_version``).  A node whose newest migration (its code's
schema version) is below the compatibility version refuses to start with one
line; a node older than the schema but not below the compatibility version
runs on it unchanged, which is what rolling back one release is.

Releases up to 0.1.0 (commit 35c7136, migrations up to 018) know only the
table ``schema_version`` and refuse any row in it newer than their own
migrations.  That table is kept for them: it holds the migrations up to
`LEGACY_LAST` and, once a contract migration raises the compatibility
version past `LEGACY_LAST`, a row with that version, so those nodes then
refuse too, as they should.  Before 0.2.0 no migration was declared, so the
compatibility version starts at the newest of those (each was, for the
runner of its time, one no older code could run on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

from twisted.logger import Logger

import umoc
from umoc.storage.engine.dialect import Dialect
from umoc.storage.engine.txn import Txn

__all__ = ["LEGACY_LAST", "Migration", "SchemaState", "SchemaStatus", "SchemaTooNewError", "schema_state_txn"]

log = Logger()

#: The newest migration of the releases that know only ``schema_version`` (0.1.0 up to commit 35c7136).
LEGACY_LAST = 18

_DECLARATION = re.compile(r"^--\s*migration:\s*(.*?)\s*$", re.MULTILINE)
_KINDS = re.compile(r"^(?:expand|contract,\s*compat\s+(\d+))$")


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer UMOC that this one cannot run with."""


class Migration(NamedTuple):
    """One schema version as this dialect runs it."""

    version: int
    script: str
    #: None for an expand migration (or one from before the declarations); else the compatibility
    #: version it sets: the oldest code schema version that may run once it is applied.
    compat: int | None


class SchemaState(NamedTuple):
    """What a database's bookkeeping says, read by `schema_state_txn`."""

    #: The newest migration applied (0: none).
    version: int
    #: The oldest code schema version that may run on it.
    compat: int


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against this code's migrations, read without changing anything.

    For ``umoc-admin``, which acts only on a schema its code may run on and
    never migrates unless told to (`_status_txn`).
    """

    #: The newest migration applied; None when no migration was ever recorded (no bookkeeping table).
    current: int | None
    #: This code's schema version: its newest migration.
    newest: int
    #: The versions `Database.migrate` would apply, in order.
    pending: tuple[int, ...]
    #: The oldest code schema version that may run on the database (0 when nothing is recorded).
    compat: int = 0

    @property
    def up_to_date(self) -> bool:
        return self.current is not None and not self.pending and not self.too_new

    @property
    def too_new(self) -> bool:
        """Whether the schema was contracted past this code (a newer but compatible schema is not too new)."""
        return self.current is not None and self.compat > self.newest

    def refusal(self) -> str:
        """The one line a node prints when it refuses this schema."""
        return _refusal(SchemaState(self.current or 0, self.compat), self.newest)


def _declared_compat(version: int, texts: list[str]) -> int | None:
    """The compatibility version a migration's ``-- migration:`` line declares (None: expand).

    Required after `LEGACY_LAST`: a migration nobody classified could break
    the release before it, so loading refuses it rather than guessing.
    """
    found = {m.group(1) for text in texts for m in _DECLARATION.finditer(text)}
    if not found:
        if version <= LEGACY_LAST:
            return None
        raise ValueError(
            f"schema migration {version:03d} declares neither '-- migration: expand' nor "
            f"'-- migration: contract, compat N' (see the operator guide, \"Upgrades and migrations\")"
        )
    if len(found) > 1:
        raise ValueError(f"schema migration {version:03d} declares more than one kind: {sorted(found)}")
    match = _KINDS.match(found.pop())
    if match is None:
        raise ValueError(f"schema migration {version:03d}: expected 'expand' or 'contract, compat N'")
    if match.group(1) is None:
        return None
    compat = int(match.group(1))
    if compat > version:
        raise ValueError(f"schema migration {version:03d} cannot need code newer than itself (compat {compat})")
    return compat


def _load_migrations(dialect: Dialect) -> list[Migration]:
    """Each version's script: ``NNN_name.sql`` (what both databases run), then ``NNN_name.<dialect>.sql``.

    One pattern for the dialects' differences in the schema: a small one is a
    fragment filled in by `Dialect.schema_text` (``SERIAL_PK``,
    ``WITHOUT_ROWID``); a larger one (another index, a column only one
    dialect has, full-text search) goes in the version's per-dialect file,
    which holds only what differs and runs after the shared file.  A version
    with no file for this dialect does not exist for it.
    """
    folder = resources.files("umoc.storage") / "schema"
    shared: dict[int, str] = {}
    own: dict[int, str] = {}
    every: dict[int, list[str]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        name = entry.name
        if not name.endswith(".sql"):
            continue
        parts = name[:-4].split(".")
        version = int(parts[0].split("_", 1)[0])
        raw = entry.read_text(encoding="utf-8")
        every.setdefault(version, []).append(raw)
        text = dialect.schema_text(raw)
        if len(parts) == 1:
            shared[version] = text
        elif parts[1] == dialect.name:
            own[version] = text
    return [
        Migration(
            v,
            ";\n".join(t for t in (shared.get(v, ""), own.get(v, "")) if t.strip()),
            _declared_compat(v, every[v]),
        )
        for v in sorted({*shared, *own})
    ]


_TRIGGER_START = re.compile(r"\s*CREATE\s+TRIGGER\b", re.IGNORECASE)


_TRIGGER_BEGIN = re.compile(r"\bBEGIN\b", re.IGNORECASE)
_TRIGGER_END = re.compile(r"\bEND\s*$", re.IGNORECASE)


def _statements(script: str) -> list[str]:
    """The script's statements, split at ``;``, except inside a trigger's ``BEGIN ... END`` or a ``$$`` body.

    A ``CREATE TRIGGER`` statement with a body (SQLite's ``BEGIN ... END``)
    runs until the piece that ends in ``END`` (PostgreSQL's, which executes a
    function, ends at its ``;``);
    a function's body (PostgreSQL, between ``$$`` and ``$$``) runs to its
    closing ``$$``; schema files hold no ``;`` in string literals.
    """
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    statements: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending = f"{pending};{piece}" if pending else piece
        if _TRIGGER_START.match(pending) and _TRIGGER_BEGIN.search(pending) and not _TRIGGER_END.search(pending):
            continue
        if pending.count("$$") % 2:
            continue
        if pending.strip():
            statements.append(pending.strip())
        pending = ""
    if pending.strip():
        raise ValueError(f"unterminated trigger or function body in a schema file: {pending.strip()[:60]}")
    return statements


def _bookkeeping_txn(txn: Txn) -> None:
    """The tables the runner keeps (created by the runner, not by a migration: it reads them first)."""
    txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
    txn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
    )
    txn.execute(
        "CREATE TABLE IF NOT EXISTS schema_compat_version"
        " (lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE CHECK (lock = 'X'), compat_version INTEGER NOT NULL)"
    )
    if txn.scalar("SELECT COUNT(*) FROM schema_migrations") == 0:
        # Last migrated by a release that knew only schema_version (or new): its rows are the record.
        txn.execute(
            "INSERT INTO schema_migrations (version, applied_at) SELECT version, applied_at FROM schema_version"
            " WHERE version <= ?",
            (LEGACY_LAST,),
        )


def schema_state_txn(txn: Txn) -> SchemaState:
    """The database's schema version and compatibility version (both 0 for an empty database).

    Read-only: it expects the bookkeeping tables to exist only if something
    migrated the database, and reads ``schema_version`` alone otherwise.
    """
    tables = _tables_txn(txn)
    legacy = (txn.scalar("SELECT MAX(version) FROM schema_version") or 0) if "schema_version" in tables else 0
    version = legacy
    recorded = 0
    if "schema_migrations" in tables:
        version = max(version, txn.scalar("SELECT MAX(version) FROM schema_migrations") or 0)
    if "schema_compat_version" in tables:
        recorded = txn.scalar("SELECT MAX(compat_version) FROM schema_compat_version") or 0
    # schema_version's rows past LEGACY_LAST are compatibility versions; below it every version counted as one.
    return SchemaState(version, max(recorded, legacy))


def _tables_txn(txn: Txn) -> set[str]:
    if txn.dialect.name == "postgres":
        txn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    else:
        txn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row[0] for row in txn.fetchall()}


def _refusal(state: SchemaState, newest: int) -> str:
    return (
        f"the database's schema (version {state.version}) needs code of schema version {state.compat} or newer;"
        f" this is UMOC {umoc.__version__} (schema version {newest}): run a newer release"
        " (the CHANGELOG's compatibility table says which)"
    )


def _migrate_txn(txn: Txn, migrations: list[Migration]) -> int:
    """Check the compatibility version, then apply what is missing; the schema version after."""
    if txn.dialect.name == "postgres":
        # Two nodes starting together must not both migrate: one lock per schema, so databases
        # (or test schemas) that share a server never wait on each other's migrations.
        txn.execute("SELECT pg_advisory_xact_lock(727274, hashtext(current_schema()))")
    _bookkeeping_txn(txn)
    state = schema_state_txn(txn)
    newest = migrations[-1].version if migrations else 0
    if state.compat > newest:
        raise SchemaTooNewError(_refusal(state, newest))
    if state.version > newest:
        log.info(
            "Database schema version {version} is newer than this node's {newest}; it runs on it "
            "(code from schema version {compat} on may)",
            version=state.version,
            newest=newest,
            compat=state.compat,
        )
        return state.version
    compat = state.compat
    for migration in migrations:
        if migration.version <= state.version:
            continue
        for statement in _statements(migration.script):
            txn.execute(statement)
        txn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", (migration.version,))
        if migration.version <= LEGACY_LAST:
            txn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (migration.version,))
            compat = max(compat, migration.version)
        if migration.compat is not None and migration.compat > compat:
            compat = migration.compat
            if compat > LEGACY_LAST:  # releases up to 0.1.0 refuse it through schema_version
                txn.execute("DELETE FROM schema_version WHERE version > ?", (LEGACY_LAST,))
                txn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (compat,))
        log.info("Applied schema migration {version}", version=migration.version)
    if txn.scalar("SELECT MAX(compat_version) FROM schema_compat_version") != compat:
        txn.execute("DELETE FROM schema_compat_version")
        txn.execute("INSERT INTO schema_compat_version (compat_version) VALUES (?)", (compat,))
    return max(state.version, newest)


def _status_txn(txn: Txn, migrations: list[Migration]) -> SchemaStatus:
    """The applied version, the pending ones and the compatibility version; creates nothing.

    `_migrate_txn` would apply exactly ``pending`` (every migration past the
    schema version), so ``umoc-admin migrate --dry-run`` lists what ``migrate`` runs.
    """
    newest = migrations[-1].version if migrations else 0
    if not _tables_txn(txn) & {"schema_version", "schema_migrations"}:
        return SchemaStatus(None, newest, tuple(m.version for m in migrations))
    state = schema_state_txn(txn)
    pending = tuple(m.version for m in migrations if m.version > state.version)
    return SchemaStatus(state.version, newest, pending, state.compat)
