"""The database: one `Database` over the engine's pool, dialect and migrations, with group commit.

The stores (``umoc.storage.*``) import what they need from here: `Txn`,
`Row`, ``in_clause``, `Database`; the pieces live in ``umoc.storage.engine``
(dialect, transaction, pool, migrations) and ``umoc.storage.batching``.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from umoc.metrics import TransactionMetrics
from umoc.storage.batching import BatchWriter, Together
from umoc.storage.engine.dialect import POSTGRES, SQLITE, Dialect
from umoc.storage.engine.members import MemberCache
from umoc.storage.engine.migrations import (
    SchemaState,
    SchemaStatus,
    SchemaTooNewError,
    _load_migrations,
    _migrate_txn,
    _status_txn,
    schema_state_txn,
)
from umoc.storage.engine.pool import (
    SQLITE_READERS,
    DatabaseUnavailableError,
    Deadline,
    Keepalives,
    PoolHealth,
    _GuardedPool,
    _Job,
    _postgres_open,
    _sqlite_open,
    _sqlite_open_reader,
)
from umoc.storage.engine.txn import (
    IntegrityError,
    Row,
    Rules,
    Txn,
    _named_row_cursor,
    in_clause,
    newest_first_txn,
    values_rows,
)

__all__ = [
    "Database",
    "DatabaseUnavailableError",
    "Deadline",
    "Dialect",
    "IntegrityError",
    "Keepalives",
    "PoolHealth",
    "Row",
    "Rules",
    "SchemaState",
    "SchemaStatus",
    "SchemaTooNewError",
    "Txn",
    "in_clause",
    "newest_first_txn",
    "values_rows",
]

T = TypeVar("T")


log = Logger()


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


class _Deadlines:
    """Every running transaction's deadline on one timer, not a `DelayedCall` (``addTimeout``) each.

    Transactions are added in the order they are asked for, all with the same
    deadline, so the first one still running is the next due: the timer is
    set for it, moved on when it fires, and left alone when a transaction
    ends (unless none runs any more: then cancelled, leaving the reactor
    clean).  Under load, with batches of several lanes and reads overlapping,
    a transaction costs a dict entry instead of a timer.
    """

    __slots__ = ("_clock", "_seconds", "_expire", "_jobs", "_call", "_firing")

    def __init__(self, deadline: Deadline | None, expire: Callable[[_Job], None]) -> None:
        self._clock = deadline.clock if deadline is not None else None
        self._seconds = deadline.seconds if deadline is not None else 0.0
        self._expire = expire
        #: Running transactions, oldest (next due) first: a dict keeps insertion order.
        self._jobs: dict[_Job, None] = {}
        self._call: Any = None
        #: Expiring transactions: their callers' callbacks may ask for new ones, which must not set a timer too.
        self._firing = False

    def add(self, job: _Job) -> None:
        clock = self._clock
        assert clock is not None
        job.due = clock.seconds() + self._seconds
        self._jobs[job] = None
        if self._call is None and not self._firing:
            self._call = clock.callLater(self._seconds, self._fire)

    def discard(self, job: _Job) -> None:
        jobs = self._jobs
        jobs.pop(job, None)
        if not jobs and self._call is not None:
            self._call.cancel()
            self._call = None

    def overdue(self) -> bool:
        """Whether the oldest running transaction is past its deadline (the reactor was too busy to fire it)."""
        if not self._jobs:
            return False
        assert self._clock is not None
        return next(iter(self._jobs)).due <= self._clock.seconds()

    def _fire(self) -> None:
        self._call = None
        jobs = self._jobs
        clock = self._clock
        assert clock is not None
        now = clock.seconds()
        self._firing = True
        try:
            while jobs:
                job = next(iter(jobs))
                if job.due > now:
                    break
                del jobs[job]
                self._expire(job)
        finally:
            self._firing = False
        if jobs and self._call is None:
            self._call = clock.callLater(max(0.0, next(iter(jobs)).due - now), self._fire)


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
        #: The server's rules every transaction sees as ``txn.rules`` (`umoc.storage.open_storage` sets them).
        self.rules = Rules()
        #: Groups' members as last read, for every transaction of this database (`umoc.storage.engine.members`).
        self.members = MemberCache()
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
        #: PostgreSQL's autocommit connections: each transaction's ``BEGIN`` goes with its first statement.
        self._explicit = pool.explicit
        #: Every transaction's deadline, on one timer (`_Deadlines`).
        self._deadlines = _Deadlines(deadline, self._expired)
        #: Transactions answered by their deadline whose thread has not returned yet: while there are any,
        #: each new transaction first looks for sockets to shut down (`_sever_overdue`).
        self._cut = 0

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
        server_ms = None
        if deadline is not None:
            kwargs["connect_timeout"] = max(1, int(deadline.connect_seconds))
            # A little under the reactor's deadline, so the server usually gives up first and frees the thread.
            # Set per connection, not through "options", which would replace any the DSN carries.
            server_ms = max(100, int(deadline.seconds * 900))
        kwargs["cp_openfun"] = functools.partial(_postgres_open, server_ms)
        pool = _GuardedPool(
            "psycopg2", dsn, cp_min=minimum, cp_max=maximum, cp_reconnect=True, cp_noisy=False, **kwargs
        )
        # A server that refuses writes (a primary demoted, a standby reached) is no primary: the connection is
        # discarded (and those opened with it) so the next ones find the new primary through the DSN's
        # target_session_attrs=read-write, and the caller hears "unavailable, try again".
        read_only = psycopg2.errors.ReadOnlySqlTransaction
        pool.discard_errors = (read_only,)
        # Autocommit connections, each transaction's BEGIN sent with its first statement (`_GuardedPool.explicit`).
        pool.explicit = True
        unavailable = (psycopg2.OperationalError, psycopg2.InterfaceError, psycopg2.errors.QueryCanceled, read_only)
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
        path = cls.sqlite_path(dsn, data_dir)
        if path is None:
            return cls.postgres(dsn, minimum, maximum, deadline=deadline, keepalives=keepalives)
        return cls.sqlite(path, deadline, sqlite_synchronous)

    @staticmethod
    def sqlite_path(dsn: str, data_dir: Path) -> Path | None:
        """The SQLite file ``database.dsn`` names (``<data_dir>/umoc.sqlite3`` when empty); None for PostgreSQL.

        One answer for the server and ``umoc-admin``, which must find the
        same file (and refuse, rather than create, one that is not there).
        """
        if dsn.startswith(("postgresql://", "postgres://")):
            return None
        path = dsn[len("sqlite:") :] if dsn.startswith("sqlite:") else ""
        return Path(path) if path else data_dir / "umoc.sqlite3"

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
        # Every transaction (a group-commit batch too) pays what follows, so it is one `_Job` carrying the
        # call to the thread and back, one Deferred, one shared deadline timer: no closures, no callbacks.
        if self._cut or self._deadlines.overdue():
            self._sever_overdue()
        job = _Job()
        job.desc = desc
        job.fn = fn
        job.args = args
        job.kwargs = kwargs
        job.snapshot = snapshot
        job.submitted = time.monotonic()
        d: defer.Deferred[T] = defer.Deferred()
        job.deferred = d
        if self.deadline is not None:
            self._deadlines.add(job)
        pool.submit(job, self._interaction, self._completed)
        return d

    def _interaction(self, job: _Job, cursor: Any) -> Any:
        """In the pool thread: ``job``'s function in a `Txn` over ``cursor``."""
        job.waited = time.monotonic() - job.submitted
        if job.snapshot:
            # sqlite3 opens no transaction for a SELECT: without one each statement
            # would see its own snapshot. The commit ends it.
            cursor.execute("BEGIN")
        txn = Txn(cursor, self.dialect, self._integrity_errors, self.rules, self.members)
        if self._explicit:
            txn.begin_ahead()
        result = job.fn(txn, *job.args, **job.kwargs)  # type: ignore[misc]
        if job.expired:
            raise DatabaseUnavailableError()  # the caller was told it failed: roll back
        return result

    def _completed(self, job: _Job, ok: bool, result: Any) -> None:
        """On the reactor: ``job``'s thread is done; answer its caller, unless the deadline already did."""
        if job.answered:
            self._cut -= 1  # the deadline answered it; its thread has now returned
            return
        job.answered = True
        if self.deadline is not None:
            self._deadlines.discard(job)
        if ok:
            self._failures.recovered()
        else:
            result = self._unavailable(result, job.desc)
        self.transactions.done(job.desc, ok, time.monotonic() - job.submitted, job.waited)
        d = job.deferred
        job.deferred = job.fn = None
        job.args = ()
        assert d is not None
        if ok:
            d.callback(result)
        else:
            d.errback(result)

    def _expired(self, job: _Job) -> None:
        """On the reactor: ``job`` is past its deadline; its caller hears `DatabaseUnavailableError` now.

        It must not start, or must roll back (``expired``); a thread waiting on a
        silent server has its socket shut down so it returns.
        """
        job.expired = True
        job.answered = True
        self._cut += 1  # until its thread returns (`_completed`)
        (self._read_pool if job.snapshot else self._pool).sever(job)
        failure = self._unavailable(Failure(DatabaseUnavailableError()), job.desc)
        self.transactions.done(job.desc, False, time.monotonic() - job.submitted, job.waited)
        d = job.deferred
        job.deferred = None
        assert d is not None
        d.errback(failure)

    def write(
        self, desc: str, key: int, fn: Callable[..., T], *args: Any, together: Together | None = None
    ) -> defer.Deferred[T]:
        """Run ``fn(txn, *args)`` in the next group-commit batch of ``key``'s lane.

        ``desc`` names the write (``"messages.post"``) as `run`'s names a
        transaction: the batch is observed as ``"batch"``, and each write in it
        under its own name, from its request to its result.

        Like `run`, but the writes waiting at the same moment share one
        transaction (one fsync), each under its own savepoint so each caller
        gets its own result or error; it fires after the commit.  Writes with
        the same ``key`` (a chat) go through one lane, in order.

        ``together(txn, [args, ...])`` writes all the writes of a batch that
        name it at once (`BatchWriter.run`); ``fn`` stays the write of one.
        """
        return self.writer.run(desc, key, fn, *args, together=together)

    def _unavailable(self, failure: Failure, desc: str) -> Failure:
        """``failure``, or `DatabaseUnavailableError` (logged, once per interval) if the database is not there."""
        if failure.check(DatabaseUnavailableError) or (
            self._unavailable_errors and failure.check(*self._unavailable_errors)
        ):
            # The driver's first line: psycopg2's messages end in a newline and a hint.
            why = (failure.getErrorMessage() or "").strip().splitlines()
            self._failures.failed(desc, why[0].strip() if why else failure.type.__name__)  # type: ignore[union-attr]
            exc = DatabaseUnavailableError()
            exc.__cause__ = failure.value
            return Failure(exc)
        return failure

    def watch(self) -> PoolHealth:
        """The watchdog, run by the health checks (and, without building a report, before every transaction).

        A transaction still running past its deadline (one started late, or
        whose shutdown came before it reached the network) gets its socket
        shut down now; the result counts the threads that stayed busy
        `Deadline.stuck_seconds` longer all the same.
        """
        stuck = self._sever_overdue()
        return PoolHealth(self._pool.max, len(self._pool.running_jobs()), stuck)

    def _sever_overdue(self) -> int:
        """Shut down the sockets of transactions past their deadline; how many writer threads are stuck.

        Runs before every transaction, on the reactor: with nothing running
        (the common case between batches) it touches no lock.
        """
        stuck = 0
        if self.deadline is None:
            return stuck
        now = time.monotonic()
        overdue = self.deadline.seconds
        for pool in (self._pool, self._read_pool) if self._read_pool is not self._pool else (self._pool,):
            if not pool.jobs:
                continue
            for job in pool.running_jobs():
                age = now - job.started
                if age > overdue:
                    pool.sever(job)
                    if pool is self._pool and age > overdue + self.deadline.stuck_seconds:
                        stuck += 1
        return stuck

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
            self._sever_overdue()
            self._pool.close()
            if self._read_pool is not self._pool:
                self._read_pool.close()

    # -- migrations -------------------------------------------------------

    def migrate(self) -> defer.Deferred[int]:
        """Apply the numbered files in ``storage/schema`` not yet applied; return the schema version.

        Raises `SchemaTooNewError` when the database's compatibility version
        is above this code's newest migration; on a newer schema that is
        still compatible it applies nothing and returns the database's version.
        """
        return self.run("migrate", _migrate_txn, _load_migrations(self.dialect))

    def schema_state(self) -> defer.Deferred[SchemaState]:
        """The schema version and compatibility version, read without migrating anything."""
        return self.run("schema_state", schema_state_txn)

    def schema_status(self) -> defer.Deferred[SchemaStatus]:
        """The applied version and the pending migrations, changing nothing (no table is created)."""
        return self.read("schema_status", _status_txn, _load_migrations(self.dialect))

    async def pending_migrations(self) -> tuple[int, ...]:
        """The versions `migrate` would apply now, in order."""
        return (await self.schema_status()).pending
