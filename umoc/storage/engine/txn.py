"""One transaction as the stores see it: `Txn` over a DB-API cursor, and rows read by column name.

Rows are read by column name (``row["unread"]``) on both databases: SQLite
connections use `sqlite3.Row`, PostgreSQL ones `_named_row_cursor`.  Both
also index by position, which `Txn.scalar` relies on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

from umoc.storage.engine.dialect import Dialect, _to_format_style
from umoc.storage.engine.members import MemberCache


class Row(Protocol):
    """A fetched row: ``row["column"]`` (the column's name or its ``AS`` alias) or ``row[0]``.

    `sqlite3.Row` on SQLite, a tuple subclass on PostgreSQL.  A name two
    selected columns share reads the first of them; alias one instead.
    """

    def __getitem__(self, key: str | int, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def keys(self) -> list[str]: ...


class IntegrityError(Exception):
    """A unique or foreign key constraint failed, whatever the driver."""


@dataclass(frozen=True, slots=True)
class Rules:
    """The server's own rules the stores apply inside their transactions (``txn.rules``), from its configuration.

    Set once on the `Database` (`umoc.storage.open_storage`), as its dialect
    is: no transaction function takes them as parameters.  The defaults are
    the configuration's.
    """

    #: ``contacts.require_friendship``: a direct message, and adding a member, need both users to be friends
    #: (False: only that no block separates them).
    require_friendship: bool = True
    #: ``groups.public_creation: admins``: only server administrators (``users.is_admin``) make a group public.
    public_admins_only: bool = False
    #: ``uploads.allowed_types.image``: what a group's picture may be.
    image_types: tuple[str, ...] = ("image/jpeg", "image/png", "image/gif", "image/webp")


class Txn:
    """A cursor that speaks ``?`` SQL on both databases; what `*_txn` functions receive."""

    __slots__ = ("_cursor", "dialect", "_integrity_errors", "locked", "_ahead", "rules", "members")

    def __init__(
        self,
        cursor: Any,
        dialect: Dialect,
        integrity_errors: tuple[type[BaseException], ...],
        rules: Rules | None = None,
        members: MemberCache | None = None,
    ) -> None:
        self._cursor = cursor
        self.dialect = dialect
        #: The server's rules (`Rules`): the defaults unless the database was given others.
        self.rules = rules if rules is not None else Rules()
        #: The database's groups' members as last read (`umoc.storage.engine.members`), kept across its
        #: transactions; None (a bare connection: the bench's plain loop, a migration) reads them each time.
        self.members = members
        self._integrity_errors = integrity_errors
        #: What this transaction read under a lock it still holds (a group's members while its chat row is
        #: locked), so the next write of the same batch need not read it again.  Emptied by
        #: `rollback_to`, since a savepoint's rollback may release the lock.
        self.locked: dict[Any, Any] = {}
        #: Savepoints not sent yet: on PostgreSQL they go with the next statement, in its round trip.
        self._ahead: list[str] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Txn:
        if self.dialect.paramstyle_format:
            sql = _to_format_style(sql)
            if self._ahead:
                sql = "; ".join((*self._ahead, sql))
                self._ahead.clear()
        try:
            self._cursor.execute(sql, tuple(params))
        except self._integrity_errors as exc:
            raise IntegrityError(str(exc)) from exc
        return self

    def execute_each(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run statements whose results nobody reads, in order: on PostgreSQL in one round trip.

        psycopg2 binds parameters on the client, so the statements go as one
        ``;``-separated text (values still bound, never formatted in by hand);
        SQLite's driver takes one statement per call, which costs no round trip.
        """
        if not self.dialect.paramstyle_format:
            for sql, params in statements:
                self.execute(sql, params)
            return
        self.execute("; ".join(sql for sql, _ in statements), [p for _, params in statements for p in params])

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Txn:
        if self._ahead:
            self._cursor.execute("; ".join(self._ahead))  # alone: executemany would repeat it per row
            self._ahead.clear()
        if self.dialect.paramstyle_format:
            sql = _to_format_style(sql)
        try:
            self._cursor.executemany(sql, [tuple(r) for r in rows])
        except self._integrity_errors as exc:
            raise IntegrityError(str(exc)) from exc
        return self

    def savepoint(self, savepoint: str) -> None:
        """``SAVEPOINT``: on PostgreSQL sent ahead of the next statement, in its round trip, not one of its own."""
        if self.dialect.paramstyle_format:
            self._ahead.append(f"SAVEPOINT {savepoint}")
        else:
            self.execute(f"SAVEPOINT {savepoint}")

    def rollback_to(self, savepoint: str) -> None:
        """``ROLLBACK TO`` and ``RELEASE`` a savepoint; forget what was read under locks taken after it."""
        self.locked.clear()
        ahead = f"SAVEPOINT {savepoint}"
        if ahead in self._ahead:
            # Never sent: nothing was run since, so nothing to undo.
            del self._ahead[self._ahead.index(ahead) :]
            return
        self.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
        self.execute(f"RELEASE SAVEPOINT {savepoint}")

    def restart(self) -> None:
        """Roll the whole transaction back and begin a new one (SQLite): what a savepoint at its start would undo.

        Forgets what was read under locks, as `rollback_to` does.
        """
        self.locked.clear()
        self._ahead.clear()
        self._cursor.execute("ROLLBACK")
        self.begin()

    def begin_ahead(self) -> None:
        """PostgreSQL in autocommit mode (`_GuardedPool.explicit`): ``BEGIN`` goes with the first statement."""
        self._ahead.append("BEGIN")

    def begin(self) -> None:
        """Open the (writing) transaction now, not at the first write.

        SQLite (through `sqlite3`) opens it lazily; a ``SAVEPOINT`` outside one
        would start its own transaction and commit at its ``RELEASE``; ``IMMEDIATE``
        takes the write lock first (waiting ``busy_timeout``), so reads before
        the first write never meet a busy upgrade.
        PostgreSQL is always inside one (psycopg2's, or `begin_ahead`'s).
        """
        if self.dialect.name == "sqlite" and not self._cursor.connection.in_transaction:
            self._cursor.execute("BEGIN IMMEDIATE")

    def fetchone(self) -> Row | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Row]:
        return self._cursor.fetchall()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


#: Row classes by column names: one per distinct select list, so a bounded few.
_row_classes: dict[tuple[str, ...], type[tuple[Any, ...]]] = {}


def _row_class(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    """A tuple that also reads ``row["name"]`` (the first column of that name, as `sqlite3.Row` does)."""
    cls = _row_classes.get(names)
    if cls is None:
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            index.setdefault(name, i)
        get = tuple.__getitem__

        def getitem(row: tuple[Any, ...], key: Any) -> Any:
            return get(row, index[key] if isinstance(key, str) else key)

        def keys(row: tuple[Any, ...]) -> list[str]:
            return list(names)

        namespace = {"__slots__": (), "__getitem__": getitem, "keys": keys}
        cls = _row_classes[names] = type("PostgresRow", (tuple,), namespace)
    return cls


@functools.lru_cache(maxsize=1)
def _named_row_cursor() -> type:
    """A psycopg2 cursor whose rows are `Row`s.

    Not ``psycopg2.extras.DictCursor``: its rows are built in Python, one
    ``__setitem__`` call per column, which doubled the fetch time of a
    1,000-row chat list.  Here psycopg2 builds plain tuples in C and each
    fetch wraps them, in C too, in a tuple subclass for its column names.
    """
    import psycopg2.extensions

    class NamedRowCursor(psycopg2.extensions.cursor):
        def _rows(self) -> type[tuple[Any, ...]]:
            # Only called after a fetch returned rows, so the statement had a select list.
            return _row_class(tuple(column[0] for column in self.description or ()))

        def fetchone(self) -> Any:
            row = super().fetchone()
            return None if row is None else self._rows()(row)

        def fetchmany(self, size: int | None = None) -> list[Any]:
            rows = super().fetchmany(self.arraysize if size is None else size)
            return list(map(self._rows(), rows)) if rows else rows

        def fetchall(self) -> list[Any]:
            rows = super().fetchall()
            return list(map(self._rows(), rows)) if rows else rows

        def __iter__(self) -> Any:
            return iter(self.fetchone, None)

    return NamedRowCursor


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


def in_clause(values: Sequence[Any]) -> str:
    """``(?,?,?)`` for a bound ``IN`` list; callers pass the values as parameters."""
    if not values:
        raise ValueError("an IN list needs at least one value")
    return f"({_placeholders(len(values))})"


@functools.lru_cache(maxsize=512)
def values_rows(count: int, width: int, last: str = "") -> str:
    """``(?, ?), (?, ?)``: ``count`` VALUES rows of ``width`` parameters each, then ``last`` (a constant) if given.

    Kept per shape: a batch writes its rows with the same text for the same
    count, so sqlite3's statement cache finds it, and the text is not built
    again for every batch.
    """
    row = "(" + ", ".join(["?"] * width + ([last] if last else [])) + ")"
    return ", ".join([row] * count)


def newest_first_txn(
    txn: Txn, table: str, columns: str, conditions: Sequence[tuple[str, Any]], limit: int
) -> list[Row]:
    """Rows of ``table`` newest first by ``id``: at most ``limit``, those matching every condition.

    Each condition is a fixed SQL clause with one placeholder and its value,
    so only which clauses appear varies, never what they say; ``table`` and
    ``columns`` are the caller's constants.  The listings page with an
    ``("id < ?", before)`` condition.
    """
    where = " WHERE " + " AND ".join(clause for clause, _ in conditions) if conditions else ""
    params = [value for _, value in conditions]
    params.append(limit)
    return txn.execute(f"SELECT {columns} FROM {table}{where} ORDER BY id DESC LIMIT ?", params).fetchall()
