"""The connection pool: adbapi's threads, each with its connection, guarded by deadlines.

A transaction past its `Deadline` is answered at once on the reactor; one
whose thread waits on a silent server has its connection's socket shut
down so the thread returns (`_GuardedPool`); PostgreSQL connections carry
TCP `Keepalives`.  `PoolHealth` is what the health checks read.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, cast

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from umoc.errors import UserError

T = TypeVar("T")
log = Logger()


class DatabaseUnavailableError(UserError):
    """The database did not answer within its deadline, or refused the connection.

    A `UserError`, so the client gets a clear ``error`` (HTTP 503) instead of a
    request that hangs; the transaction is rolled back, so nothing half-written
    stays.
    """

    status = 503

    def __init__(self) -> None:
        super().__init__("The database is unavailable; try again shortly", code="unavailable")


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


def _postgres_open(timeout_ms: int | None, conn: Any) -> None:
    """A new PostgreSQL connection: in autocommit mode (`_GuardedPool.explicit`), with the deadline's timeouts."""
    conn.autocommit = True
    if timeout_ms is not None:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = %s", (timeout_ms,))
            cur.execute("SET lock_timeout = %s", (timeout_ms,))


#: ``database.sqlite_synchronous`` -> the PRAGMA's value.
SQLITE_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


def _bind_as_is() -> None:
    """Tell `sqlite3` that None, bools and bytes bind as they are.

    `sqlite3` binds only exact ints, floats, strings and bytearrays without
    asking its adapter registry; for every other parameter (a NULL column, a
    flag, a blob) it asks the registry, then the ``PrepareProtocol`` type for
    ``__adapt__``, which raises and drops an AttributeError with its message
    formatted: about 3,000 instructions per such parameter, several in every
    message's insert.  Registered, each is one C call returning the same
    value (None, the int the bool is, the same bytes): what is bound does
    not change.  Process-wide, as `sqlite3`'s registry is.
    """
    as_null = cast("Callable[[None], None]", {}.get)  # {}.get(None) is None, without a Python call
    sqlite3.register_adapter(type(None), as_null)
    sqlite3.register_adapter(bool, int)
    sqlite3.register_adapter(bytes, bytes)  # bytes(b) is b itself


_bind_as_is()


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


class _Job:
    """One transaction on its way through a pool: what the deadline and the watchdog act on.

    It also carries the transaction itself (``fn``, its arguments, the
    caller's Deferred) to the pool thread and back: one object per
    transaction, not a closure per step (issue 25: a batch's fixed cost).
    """

    __slots__ = (
        "expired",
        "severed",
        "started",
        "sock",
        "desc",
        "fn",
        "args",
        "kwargs",
        "snapshot",
        "submitted",
        "due",
        "waited",
        "answered",
        "deferred",
    )

    def __init__(self) -> None:
        #: The caller was answered (deadline): the transaction must not start, or must roll back.
        self.expired = False
        #: Its connection's socket was shut down: the connection is discarded, never reused.
        self.severed = False
        #: `time.monotonic()` when a pool thread started it.
        self.started = 0.0
        #: A duplicate of the connection's socket, so a shutdown reaches that socket and no other.
        self.sock: socket.socket | None = None
        #: The transaction's name, function and arguments (`Database.run`'s), and whether it reads one snapshot.
        self.desc = ""
        self.fn: Callable[..., Any] | None = None
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self.snapshot = False
        #: `time.monotonic()` when it was asked for; the deadline's clock when it is due (`Database`).
        self.submitted = 0.0
        self.due = 0.0
        #: Seconds from its request until a pool thread with a connection ran it (None: none did).
        self.waited: float | None = None
        #: Its caller has been answered (by the deadline): its thread's outcome goes nowhere.
        self.answered = False
        #: What its caller waits on.
        self.deferred: defer.Deferred[Any] | None = None


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


#: ``psycopg2.extensions.TRANSACTION_STATUS_IDLE``: no transaction open on the server.
_IDLE = 0


def _end(raw: Any, statement: str) -> None:
    """``COMMIT`` or ``ROLLBACK`` through a plain cursor (not the pool's row cursor: nothing is fetched)."""
    import psycopg2.extensions

    with raw.cursor(cursor_factory=psycopg2.extensions.cursor) as cur:
        cur.execute(statement)


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

    A connection found lost, or on a server that refuses writes
    (``discard_errors``: PostgreSQL's ``read_only_sql_transaction``, a
    primary demoted or a standby reached), is discarded too, and so is every
    other connection opened before it, each at its next use rather than
    failing a request of its own: after a failover of a multi-host DSN
    (``target_session_attrs=read-write``) they all point at the old primary,
    and each new one is opened on the new primary.
    """

    #: Errors that mean this connection's server no longer takes writes: discard it and its siblings.
    discard_errors: tuple[type[BaseException], ...] = ()
    #: PostgreSQL: the connections are in autocommit mode (`_postgres_open`); a transaction's ``BEGIN`` goes
    #: ahead of its first statement, in that statement's round trip (`Txn.begin_ahead`), and the pool ends
    #: it with ``COMMIT`` or ``ROLLBACK``.  psycopg2 would send its ``BEGIN`` alone, a round trip of its own:
    #: one of a group-commit batch's three (issue 25).  A transaction that sent nothing sends nothing.
    explicit = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = threading.Lock()
        #: Transactions running in a pool thread now.
        self.jobs: set[_Job] = set()
        #: Per pool thread: its connection, the duplicate of that connection's socket, made once
        #: per connection (three system calls per transaction otherwise), closed with the connection,
        #: the `generation` the connection was opened in, and (`explicit`) its reused cursor.
        self._sockets: dict[int, tuple[Any, socket.socket | None, int, Any]] = {}
        #: Bumped when a connection is found lost or read-only: connections opened before are stale.
        self.generation = 0

    def submit(
        self, job: _Job, interaction: Callable[[_Job, Any], Any], done: Callable[[_Job, bool, Any], None]
    ) -> None:
        """``interaction(job, cursor)`` in a pool thread, then ``done(job, ok, result or Failure)`` on the reactor.

        No Deferred of its own and no callbacks: the caller keeps its own
        (`Database`), and the outcome crosses back in one ``callFromThread``.
        """
        self.threadpool.callInThreadWithCallback(None, self._submitted, job, interaction, done)

    def _submitted(
        self, job: _Job, interaction: Callable[[_Job, Any], Any], done: Callable[[_Job, bool, Any], None]
    ) -> None:
        try:
            result, ok = self._run_job(job, interaction), True
        except BaseException:  # noqa: BLE001 - every outcome, an error too, goes to the caller
            result, ok = Failure(), False
        self._reactor.callFromThread(done, job, ok, result)

    def _run_job(self, job: _Job, interaction: Callable[[_Job, Any], T]) -> T:
        if job.expired:  # answered while it waited for a thread: nobody wants it
            raise DatabaseUnavailableError()
        raw = self.connect()
        if self._stale(raw):
            # Opened before a sibling was found lost: open a new one, on the new primary.
            self.disconnect(raw)
            raw = self.connect()
        try:
            sock, cursor = self._guarded(raw)
        except BaseException:
            self._discard(raw)  # no cursor from it: lost; the thread's next transaction opens a new one
            raise
        with self._guard:
            job.started = time.monotonic()
            job.sock = sock
            self.jobs.add(job)
        try:
            if job.expired:  # the deadline passed while the connection opened
                raise DatabaseUnavailableError()
            if cursor is None:
                cursor = raw.cursor()  # SQLite: a cursor per transaction, closed (its statement reset) before the end
                try:
                    result = interaction(job, cursor)
                finally:
                    cursor.close()
                raw.commit()
            else:
                result = interaction(job, cursor)
                if raw.info.transaction_status != _IDLE:
                    cursor.execute("COMMIT")
            return result
        except BaseException as exc:
            lost = bool(getattr(raw, "closed", False)) or isinstance(exc, self.discard_errors)
            if lost:
                self._outdate(raw)
            if job.severed or lost:
                self._discard(raw)  # cut loose, lost or read-only: the thread's next transaction opens a new one
            else:
                try:
                    self._rollback(raw)
                except BaseException:  # noqa: BLE001 - as adbapi does: the error raised below matters more
                    log.failure("Rollback failed")
            raise
        finally:
            with self._guard:
                self.jobs.discard(job)
                job.sock = None

    def _rollback(self, raw: Any) -> None:
        """Undo the transaction: the driver's rollback, or (`explicit`) ``ROLLBACK`` (failing that: dropped)."""
        if not self.explicit:
            raw.rollback()
        elif raw.info.transaction_status != _IDLE:
            try:
                _end(raw, "ROLLBACK")
            except BaseException:
                self._discard(raw)  # as adbapi's rollback does: the thread's next transaction opens a new one
                raise

    def _guarded(self, raw: Any) -> tuple[socket.socket | None, Any]:
        """The calling thread's connection's socket duplicate and (`explicit`) its cursor, made when it is new.

        One cursor per connection on PostgreSQL, reused by every transaction
        (rows are fetched whole on the client, so nothing of one transaction
        is left in it for the next); SQLite's are made per transaction.
        """
        tid = self.threadID()
        cached = self._sockets.get(tid)
        if cached is not None and cached[0] is raw:
            return cached[1], cached[3]
        sock = _socket_of(raw)
        cursor = raw.cursor() if self.explicit else None
        with self._guard:
            old = self._sockets.get(tid)
            self._sockets[tid] = (raw, sock, self.generation, cursor)
        if old is not None and old[1] is not None:
            old[1].close()
        return sock, cursor

    def _stale(self, raw: Any) -> bool:
        """Whether the calling thread's connection was opened before one was found lost or read-only."""
        cached = self._sockets.get(self.threadID())
        return cached is not None and cached[0] is raw and cached[2] < self.generation

    def _outdate(self, raw: Any) -> None:
        """``raw`` was found lost or read-only: every connection opened up to now is stale (once per generation)."""
        cached = self._sockets.get(self.threadID())
        with self._guard:
            if cached is None or cached[0] is not raw or cached[2] == self.generation:
                self.generation += 1

    def _close(self, conn: Any) -> None:
        """adbapi closes a connection (discarded, or the pool closing): its socket duplicate goes with it."""
        with self._guard:
            gone = [tid for tid, (raw, *_) in self._sockets.items() if raw is conn]
            socks = [self._sockets.pop(tid)[1] for tid in gone]
        for sock in socks:
            if sock is not None:
                sock.close()
        super()._close(conn)

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

    def running_jobs(self) -> list[_Job]:
        """The transactions running in a pool thread now (a copy, taken under the lock: threads change the set)."""
        with self._guard:
            return list(self.jobs)
