"""One adbapi connection pool over SQLite or PostgreSQL, and the migrations.

SQL everywhere in ``umoc.storage`` is written once, with ``?`` placeholders;
`Txn` converts it for psycopg2 in this one place.  The few differences that
cannot be hidden that way are capability flags on `Dialect`, never
``isinstance`` checks in query modules.

Rows are read by column name (``row["unread"]``) on both databases: SQLite
connections use `sqlite3.Row`, PostgreSQL ones `_named_row_cursor`.  Both
also index by position, which `Txn.scalar` relies on.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from umoc.errors import UserError
from umoc.metrics import TransactionMetrics
from umoc.storage.batching import BatchWriter

__all__ = [
    "Database",
    "DatabaseUnavailableError",
    "Deadline",
    "Dialect",
    "IntegrityError",
    "Keepalives",
    "PoolHealth",
    "Row",
    "SchemaTooNewError",
    "Txn",
]

T = TypeVar("T")
log = Logger()


class Row(Protocol):
    """A fetched row: ``row["column"]`` (the column's name or its ``AS`` alias) or ``row[0]``.

    `sqlite3.Row` on SQLite, a tuple subclass on PostgreSQL.  A name two
    selected columns share reads the first of them; alias one instead.
    """

    def __getitem__(self, key: str | int, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def keys(self) -> list[str]: ...


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer UMOC than this one."""


class IntegrityError(Exception):
    """A unique or foreign key constraint failed, whatever the driver."""


class DatabaseUnavailableError(UserError):
    """The database did not answer within its deadline, or refused the connection.

    A `UserError`, so the client gets a clear ``error`` (HTTP 503) instead of a
    request that hangs; the transaction is rolled back, so nothing half-written
    stays.
    """

    status = 503

    def __init__(self) -> None:
        super().__init__("The database is unavailable; try again shortly")


@dataclass(frozen=True)
class Deadline:
    """How long a transaction may take, measured on the reactor's clock.

    The reactor-side deadline answers the caller even when the database
    thread is stuck (a frozen server, a pool with no free connection, a
    locked SQLite file); PostgreSQL also gets ``statement_timeout`` and
    ``lock_timeout`` a little shorter, so it usually gives up first and
    frees the thread.
    """

    clock: IReactorTime
    seconds: float
    connect_seconds: float = 5.0
    #: A pool thread still busy this long after its transaction's deadline (its socket was shut down and
    #: it did not return) counts as stuck; when every thread is, the node is wedged (see `PoolHealth`).
    stuck_seconds: float = 30.0


@dataclass(frozen=True)
class Keepalives:
    """TCP settings of every PostgreSQL connection: the kernel notices a server that vanished.

    Without them a connection whose peer went silent (a partition, a
    dropped NAT entry, a host powered off) waits in libpq's ``poll()``
    forever.  Keepalive probes start after ``idle`` seconds of silence,
    ``count`` unanswered ones ``interval`` apart end the connection;
    ``user_timeout`` ends it when data sent stays unacknowledged that long
    (0: the system's default).  libpq ignores them on Unix-domain sockets.
    """

    idle: float = 10.0
    interval: float = 5.0
    count: int = 3
    user_timeout: float = 10.0

    def connect_kwargs(self) -> dict[str, Any]:
        """libpq's connection parameters (whole seconds; ``tcp_user_timeout`` in milliseconds)."""
        return {
            "keepalives": 1,
            "keepalives_idle": max(1, round(self.idle)),
            "keepalives_interval": max(1, round(self.interval)),
            "keepalives_count": max(1, self.count),
            "tcp_user_timeout": max(0, round(self.user_timeout * 1000)),
        }


@dataclass(frozen=True)
class PoolHealth:
    """What the watchdog saw of the connection pool `Database.run` uses."""

    #: Threads (each with its connection) the pool may run at once.
    threads: int
    #: Transactions running in them now.
    busy: int
    #: Threads still busy `Deadline.stuck_seconds` after their transaction's deadline.
    stuck: int

    @property
    def wedged(self) -> bool:
        """Every thread is stuck: no transaction can run until the process restarts."""
        return self.threads > 0 and self.stuck >= self.threads


@dataclass(frozen=True)
class Dialect:
    """What differs between the two databases, as data."""

    name: str
    #: Appended to a SELECT that must lock the rows it reads (PostgreSQL only).
    for_update: str
    #: Text that stands for SERIAL_PK in schema files.
    serial_pk: str
    paramstyle_format: bool
    #: Appended to a SELECT whose rows must not be deleted or locked FOR UPDATE until the
    #: transaction ends, while others may still read, share-lock and update them (PostgreSQL only).
    for_key_share: str = ""
    #: A statement taking a transaction-scoped lock on two integers (PostgreSQL only; SQLite
    #: serialises every writer anyway).
    pair_lock: str = ""
    #: Whether a ``WITH`` may hold an INSERT that runs with the statement (PostgreSQL only):
    #: a second write without a second round trip.
    writes_in_with: bool = False
    #: Whether ids from a sequence grow in commit order (SQLite: one writer); else the change
    #: feed orders by transaction snapshots (``umoc.storage.feed``).
    commit_ordered_ids: bool = True
    #: Text that stands for WITHOUT_ROWID after a table definition in schema files (SQLite only).
    without_rowid: str = ""

    def schema_text(self, text: str) -> str:
        """A schema file with its dialect fragments filled in (the small differences; see `_load_migrations`)."""
        return text.replace("SERIAL_PK", self.serial_pk).replace("WITHOUT_ROWID", self.without_rowid)


SQLITE = Dialect("sqlite", "", "INTEGER PRIMARY KEY AUTOINCREMENT", False, without_rowid=" WITHOUT ROWID")
POSTGRES = Dialect(
    "postgres",
    " FOR UPDATE",
    "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    True,
    for_key_share=" FOR KEY SHARE",
    pair_lock="SELECT pg_advisory_xact_lock(?, ?)",
    writes_in_with=True,
    commit_ordered_ids=False,
)


@functools.lru_cache(maxsize=1024)
def _to_format_style(sql: str) -> str:
    """``?`` placeholders -> psycopg2's ``%s`` (literal ``%`` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Txn:
    """A cursor that speaks ``?`` SQL on both databases; what `*_txn` functions receive."""

    __slots__ = ("_cursor", "dialect", "_integrity_errors", "locked")

    def __init__(self, cursor: Any, dialect: Dialect, integrity_errors: tuple[type[BaseException], ...]) -> None:
        self._cursor = cursor
        self.dialect = dialect
        self._integrity_errors = integrity_errors
        #: What this transaction read under a lock it still holds (a group's members while its chat row is
        #: locked), so the next write of the same batch need not read it again.  Emptied by
        #: `rollback_to`, since a savepoint's rollback may release the lock.
        self.locked: dict[Any, Any] = {}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Txn:
        if self.dialect.paramstyle_format:
            sql = _to_format_style(sql)
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
        if self.dialect.paramstyle_format:
            sql = _to_format_style(sql)
        try:
            self._cursor.executemany(sql, [tuple(r) for r in rows])
        except self._integrity_errors as exc:
            raise IntegrityError(str(exc)) from exc
        return self

    def rollback_to(self, savepoint: str) -> None:
        """``ROLLBACK TO`` and ``RELEASE`` a savepoint; forget what was read under locks taken after it."""
        self.locked.clear()
        self.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
        self.execute(f"RELEASE SAVEPOINT {savepoint}")

    def begin(self) -> None:
        """Open the (writing) transaction now, not at the first write.

        SQLite (through `sqlite3`) opens it lazily; a ``SAVEPOINT`` outside one
        would start its own transaction and commit at its ``RELEASE``; ``IMMEDIATE``
        takes the write lock first (waiting ``busy_timeout``), so reads before
        the first write never meet a busy upgrade.
        psycopg2 is always inside one.
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


def _postgres_open(timeout_ms: int, conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", (timeout_ms,))
        cur.execute("SET lock_timeout = %s", (timeout_ms,))
    conn.commit()


#: ``database.sqlite_synchronous`` -> the PRAGMA's value.
SQLITE_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


def _sqlite_open(synchronous: str, conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit is fsync'd before the caller hears of it, so an ack means durable.
    conn.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS[synchronous]}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")


def _sqlite_open_reader(conn: sqlite3.Connection) -> None:
    """A WAL reader: it sees every committed transaction and never takes the write lock."""
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA query_only=ON")
    conn.execute("PRAGMA busy_timeout=5000")


#: Reader connections beside SQLite's one writer: one per core of the machine this was measured on.
SQLITE_READERS = 2


class _FailureLog:
    """One log line per interval while the database keeps failing, with a count, not one per request."""

    INTERVAL = 10.0

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._count = 0
        self._last_logged: float | None = None

    def failed(self, desc: str, why: str) -> None:
        self._count += 1
        now = self._now()
        if self._last_logged is None or now - self._last_logged >= self.INTERVAL:
            log.warn(
                "Database unavailable ({why}); {count} failed transactions so far, the latest {desc}",
                why=why,
                count=self._count,
                desc=desc,
            )
            self._last_logged = now

    def recovered(self) -> None:
        if self._count:
            log.info("Database available again after {count} failed transactions", count=self._count)
            self._count = 0
            self._last_logged = None


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


class _Job:
    """One transaction on its way through a pool: what the deadline and the watchdog act on."""

    __slots__ = ("expired", "severed", "started", "sock")

    def __init__(self) -> None:
        #: The caller was answered (deadline): the transaction must not start, or must roll back.
        self.expired = False
        #: Its connection's socket was shut down: the connection is discarded, never reused.
        self.severed = False
        #: `time.monotonic()` when a pool thread started it.
        self.started = 0.0
        #: A duplicate of the connection's socket, so a shutdown reaches that socket and no other.
        self.sock: socket.socket | None = None


def _socket_of(raw: Any) -> socket.socket | None:
    """A duplicate of a DB-API connection's socket (psycopg2's ``fileno()``); None for SQLite.

    A duplicate, not the number: should libpq close its descriptor and the
    number be reused, shutting ours down still reaches this connection only.
    """
    fileno = getattr(raw, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = os.dup(fileno())
    except Exception:  # noqa: BLE001 - a closed connection has no socket to guard
        return None
    try:
        return socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return None


class _GuardedPool(adbapi.ConnectionPool):
    """adbapi's pool, knowing which connection each transaction runs on, so it can cut it loose.

    adbapi gives each pool thread one connection.  A transaction whose
    deadline passed while its thread waits on the network (a server that
    went silent: libpq's ``poll()`` has no timeout of its own) gets its
    connection's socket shut down: ``poll()`` returns, libpq reports the
    connection lost, the thread rolls back and returns, and the connection is
    discarded; the thread's next transaction opens a new one.  A cancel
    request is not sent: it would need a new connection to the same silent
    server, and ``statement_timeout`` already ends the query on a server
    that is alive.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = threading.Lock()
        #: Transactions running in a pool thread now.
        self.jobs: set[_Job] = set()

    def run_job(self, job: _Job, interaction: Callable[[Any], T]) -> defer.Deferred[T]:
        from twisted.internet import threads

        return threads.deferToThreadPool(self._reactor, self.threadpool, self._run_job, job, interaction)

    def _run_job(self, job: _Job, interaction: Callable[[Any], T]) -> T:
        if job.expired:  # answered while it waited for a thread: nobody wants it
            raise DatabaseUnavailableError()
        conn = self.connectionFactory(self)
        trans = self.transactionFactory(self, conn)
        raw = conn._connection
        sock = _socket_of(raw)
        with self._guard:
            job.started = time.monotonic()
            job.sock = sock
            self.jobs.add(job)
        try:
            if job.expired:  # the deadline passed while the connection opened
                raise DatabaseUnavailableError()
            result = interaction(trans)
            trans.close()
            conn.commit()
            return result
        except BaseException:
            if job.severed or getattr(raw, "closed", False):
                self._discard(raw)  # cut loose or lost: the thread's next transaction opens a new one
            else:
                try:
                    conn.rollback()
                except BaseException:  # noqa: BLE001 - as adbapi does: the error raised below matters more
                    log.failure("Rollback failed")
            raise
        finally:
            with self._guard:
                self.jobs.discard(job)
                job.sock = None
            if sock is not None:
                sock.close()

    def _discard(self, raw: Any) -> None:
        """Close the calling thread's broken connection and forget it (quietly: the caller hears why)."""
        try:
            self.disconnect(raw)
        except Exception:  # noqa: BLE001 - already gone
            self.connections.pop(self.threadID(), None)

    def sever(self, job: _Job) -> bool:
        """Shut down the socket of the connection ``job`` runs on, so its thread returns; from any thread."""
        with self._guard:
            if job not in self.jobs or job.severed:
                return False
            job.severed = True
            if job.sock is not None:
                try:
                    job.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return True


class Database:
    """The connection pool; everything runs through `run` in adbapi's threads."""

    def __init__(
        self,
        pool: _GuardedPool,
        dialect: Dialect,
        integrity_errors: tuple[type[BaseException], ...],
        unavailable_errors: tuple[type[BaseException], ...] = (),
        deadline: Deadline | None = None,
        write_lanes: int = 1,
        retry_errors: tuple[type[BaseException], ...] = (),
        read_pool: _GuardedPool | None = None,
    ) -> None:
        self._pool = pool
        #: Where `read` runs: SQLite's WAL readers, or the one pool on PostgreSQL.
        self._read_pool = read_pool if read_pool is not None else pool
        self.dialect = dialect
        self._integrity_errors = integrity_errors
        #: Driver errors that mean "the database is not there right now", not "this query is wrong".
        self._unavailable_errors = unavailable_errors
        self.deadline = deadline
        #: Told ``(desc, ok, seconds, waited)`` after every transaction; ``waited`` is the time until
        #: a pool thread with a connection ran it, None if none did.  The node's `Metrics` shows them.
        self.transactions = TransactionMetrics()
        self._closed = False
        self._failures = _FailureLog(deadline.clock.seconds if deadline is not None else time.monotonic)
        #: Group commit for the hot writes (messages, deletes, reads): see `write`.
        self.writer = BatchWriter(self.run, write_lanes, retry_errors, unavailable_errors, self.transactions.done)

    @classmethod
    def sqlite(cls, path: str | Path, deadline: Deadline | None = None, synchronous: str = "full") -> Database:
        """One writing connection (SQLite serialises writers anyway, and one avoids lock waits)
        and `SQLITE_READERS` WAL readers for `read`: reads never queue behind the writer.

        ``synchronous`` is ``"full"`` (every commit fsync'd: what is acknowledged
        survives a power loss) or ``"normal"`` (fsync at checkpoints only).

        The directory is made 0700 and the file 0600 (SQLite gives its WAL and
        shared-memory files the database file's mode): chats are private.
        """
        path = Path(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        pool = _GuardedPool(
            "sqlite3",
            str(path),
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=functools.partial(_sqlite_open, synchronous),
            cp_noisy=False,
        )
        readers = _GuardedPool(
            "sqlite3",
            str(path),
            check_same_thread=False,
            cp_min=1,
            cp_max=SQLITE_READERS,
            cp_openfun=_sqlite_open_reader,
            cp_noisy=False,
        )
        return cls(pool, SQLITE, (sqlite3.IntegrityError,), (sqlite3.OperationalError,), deadline, read_pool=readers)

    @classmethod
    def postgres(
        cls,
        dsn: str,
        minimum: int = 1,
        maximum: int = 5,
        schema: str | None = None,
        deadline: Deadline | None = None,
        keepalives: Keepalives = Keepalives(),
    ) -> Database:
        """``schema`` puts every table in one schema: how tests keep runs apart."""
        import psycopg2
        import psycopg2.errors

        # Passed on to psycopg2.connect: rows readable by column name, like sqlite3.Row; TCP keepalives.
        kwargs: dict[str, Any] = {"cursor_factory": _named_row_cursor(), **keepalives.connect_kwargs()}
        if schema:
            kwargs["options"] = f"-c search_path={schema}"
        if deadline is not None:
            kwargs["connect_timeout"] = max(1, int(deadline.connect_seconds))
            # A little under the reactor's deadline, so the server usually gives up first and frees the thread.
            # Set per connection, not through "options", which would replace any the DSN carries.
            server_ms = max(100, int(deadline.seconds * 900))
            kwargs["cp_openfun"] = functools.partial(_postgres_open, server_ms)
        pool = _GuardedPool(
            "psycopg2", dsn, cp_min=minimum, cp_max=maximum, cp_reconnect=True, cp_noisy=False, **kwargs
        )
        unavailable = (psycopg2.OperationalError, psycopg2.InterfaceError, psycopg2.errors.QueryCanceled)
        # Batches on every connection but one, left for reads.
        lanes = max(1, maximum - 1)
        retry = (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure)
        return cls(pool, POSTGRES, (psycopg2.IntegrityError,), unavailable, deadline, lanes, retry)

    @classmethod
    def from_dsn(
        cls,
        dsn: str,
        data_dir: Path,
        minimum: int = 1,
        maximum: int = 5,
        deadline: Deadline | None = None,
        sqlite_synchronous: str = "full",
        keepalives: Keepalives = Keepalives(),
    ) -> Database:
        if dsn.startswith(("postgresql://", "postgres://")):
            return cls.postgres(dsn, minimum, maximum, deadline=deadline, keepalives=keepalives)
        path = dsn[len("sqlite:") :] if dsn.startswith("sqlite:") else ""
        return cls.sqlite(Path(path) if path else data_dir / "umoc.sqlite3", deadline, sqlite_synchronous)

    def run(self, desc: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        """Run ``fn(txn, *args)`` in one transaction in a pool thread.

        ``desc`` names the transaction (``"messages.post"``), as Synapse's
        ``runInteraction(desc, fn)`` does: the label for metrics and slow
        transaction logs.  ``fn`` must be safe to retry: adbapi rolls back on
        any exception.

        Past the `Deadline` (or when the driver says the database is not
        there) the result is `DatabaseUnavailableError`; a transaction whose
        caller has been answered so is rolled back, never committed, and one
        still waiting on the network then has its connection's socket shut
        down, so its thread returns (`_GuardedPool`).
        """
        return self._run_in(self._pool, False, desc, fn, args, kwargs)

    def read(self, desc: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        """`run` for a transaction that only reads: on SQLite, on a WAL reader connection.

        It never waits for the writer (a group commit in progress, another
        process holding the write lock), and sees every transaction committed
        before it starts: every write acknowledged to a client, since acks
        follow the commit.  Its statements share one snapshot.  ``fn`` must not
        write (the reader is ``query_only``).  On PostgreSQL, the same pool as `run`.
        """
        return self._run_in(self._read_pool, self._read_pool is not self._pool, desc, fn, args, kwargs)

    def _run_in(
        self,
        pool: _GuardedPool,
        snapshot: bool,
        desc: str,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> defer.Deferred[T]:
        self.watch()
        job = _Job()
        observe = self.transactions.done
        started = time.monotonic()
        waited: list[float] = []

        def interaction(cursor: Any) -> T:
            waited.append(time.monotonic() - started)
            if snapshot:
                # sqlite3 opens no transaction for a SELECT: without one each statement
                # would see its own snapshot. adbapi's commit ends it.
                cursor.execute("BEGIN")
            result = fn(Txn(cursor, self.dialect, self._integrity_errors), *args, **kwargs)
            if job.expired:
                raise DatabaseUnavailableError()  # the caller was told it failed: roll back
            return result

        d = pool.run_job(job, interaction)
        if self.deadline is not None:

            def timed_out(result: Any, timeout: float) -> Any:
                job.expired = True
                pool.sever(job)  # a thread waiting on a silent server returns
                raise DatabaseUnavailableError()

            d.addTimeout(self.deadline.seconds, self.deadline.clock, onTimeoutCancel=timed_out)
        d.addCallbacks(self._answered, self._failed, errbackArgs=(desc,))

        def done(result: Any) -> Any:
            ok = not isinstance(result, Failure)
            observe(desc, ok, time.monotonic() - started, waited[0] if waited else None)
            return result

        d.addBoth(done)
        return d

    def write(self, desc: str, key: int, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """Run ``fn(txn, *args)`` in the next group-commit batch of ``key``'s lane.

        ``desc`` names the write (``"messages.post"``) as `run`'s names a
        transaction: the batch is observed as ``"batch"``, and each write in it
        under its own name, from its request to its result.

        Like `run`, but the writes waiting at the same moment share one
        transaction (one fsync), each under its own savepoint so each caller
        gets its own result or error; it fires after the commit.  Writes with
        the same ``key`` (a chat) go through one lane, in order.
        """
        return self.writer.run(desc, key, fn, *args)

    def _answered(self, result: T) -> T:
        self._failures.recovered()
        return result

    def _failed(self, failure: Any, desc: str) -> Any:
        if failure.check(DatabaseUnavailableError) or (
            self._unavailable_errors and failure.check(*self._unavailable_errors)
        ):
            # The driver's first line: psycopg2's messages end in a newline and a hint.
            why = (failure.getErrorMessage() or "").strip().splitlines()
            self._failures.failed(desc, why[0].strip() if why else failure.type.__name__)
            raise DatabaseUnavailableError() from failure.value
        return failure

    def watch(self) -> PoolHealth:
        """The watchdog, run before every transaction and by the health checks.

        A transaction still running past its deadline (one started late, or
        whose shutdown came before it reached the network) gets its socket
        shut down now; the result counts the threads that stayed busy
        `Deadline.stuck_seconds` longer all the same.
        """
        stuck = 0
        if self.deadline is not None:
            now = time.monotonic()
            overdue = self.deadline.seconds
            for pool in {self._pool, self._read_pool}:
                for job in list(pool.jobs):
                    age = now - job.started
                    if age > overdue:
                        pool.sever(job)
                        if pool is self._pool and age > overdue + self.deadline.stuck_seconds:
                            stuck += 1
        return PoolHealth(self._pool.max, len(self._pool.jobs), stuck)

    def close(self) -> None:
        """Idempotent: a service stopped by hand (a restart test) is stopped again at cleanup.

        Closing the pool waits for its threads, so transactions already past
        their deadline (a silent server) have their sockets shut down first
        (`watch`); the others finish, bounded by ``statement_timeout`` and the
        TCP timeouts, rather than being cut and logged as failures of whatever
        was still running at shutdown.
        """
        if not self._closed:
            self._closed = True
            self.watch()
            self._pool.close()
            if self._read_pool is not self._pool:
                self._read_pool.close()

    # -- migrations -------------------------------------------------------

    def migrate(self) -> defer.Deferred[int]:
        """Apply the numbered files in ``storage/schema`` not yet applied; return the version."""
        return self.run("migrate", _migrate_txn, _load_migrations(self.dialect))


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
    """The script's statements, split at ``;``, except inside a trigger's ``BEGIN ... END``.

    A ``CREATE TRIGGER`` statement runs until the piece that ends in ``END``;
    schema files hold no ``;`` in string literals.
    """
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    statements: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending = f"{pending};{piece}" if pending else piece
        if _TRIGGER_START.match(pending) and not _TRIGGER_END.search(pending):
            continue
        if pending.strip():
            statements.append(pending.strip())
        pending = ""
    if pending.strip():
        raise ValueError(f"unterminated trigger in a schema file: {pending.strip()[:60]}")
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


def in_clause(values: Sequence[Any]) -> str:
    """``(?,?,?)`` for a bound ``IN`` list; callers pass the values as parameters."""
    if not values:
        raise ValueError("an IN list needs at least one value")
    return f"({_placeholders(len(values))})"
