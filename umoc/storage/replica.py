"""Which database answers a read: the replica (``database.read_dsn``) when it is safe, else the primary.

The one place the rule lives.  History, search, ``sync`` and exports ask
`ReadRouter.read` with the user they read for; everything else (sessions,
permission checks, anything read before a write) keeps `Database.read` on
the primary.

How far the replica has got is measured, not guessed (`ReadRouter.poll`,
once a second)::

    t0 = now (reactor clock)
    primary:  SELECT pg_current_snapshot(), pg_current_wal_insert_lsn()   -> (S, L)
    replica:  SELECT pg_last_wal_replay_lsn()                             -> R
    once R >= L: every transaction committed before t0 is visible on the replica,
                 and S (a snapshot of the primary) is one the replica covers

The newest sample so reached is `covered`: ``(t0, S)``.  A read goes to the
replica only when

* a sample has been reached less than ``read_max_lag`` ago (a replica that
  stopped replaying, or that does not answer, is left alone within that
  bound, and at once when its poll fails);
* its user wrote nothing since that sample's ``t0`` (`wrote`, called once a
  write has committed): read-your-writes with no fixed window, a user's reads
  return to the replica as soon as it has replayed their last write;
* for ``sync {cursor}``, the cursor's snapshot is one ``S`` covers (the feed
  reads the window up to ``S`` on the replica, never the replica's own
  snapshot: on a standby ``pg_current_snapshot()`` lists no transaction in
  progress, so it would call visible what the standby has not replayed);
  otherwise `ReplicaBehindError` sends the read to the primary.

A read the replica fails (an outage, a query cancelled by a recovery
conflict) is run again on the primary: the replica only ever saves work.
Writes are remembered per node: a user's own later reads on this node see
their writes; another node (a second device elsewhere) may read the replica
up to ``read_max_lag`` behind.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from umoc.errors import UserError
from umoc.storage.database import Database, DatabaseUnavailableError, Txn

__all__ = ["ReplicaBehindError", "ReadRouter", "parse_lsn"]

T = TypeVar("T")
log = Logger()


class ReplicaBehindError(UserError):
    """The replica has not replayed what a ``sync`` cursor has seen: the read goes to the primary instead."""

    def __init__(self) -> None:
        super().__init__("Invalid 'cursor': not a cursor from this server", code="invalid_argument")


def parse_lsn(text: str) -> int:
    """PostgreSQL's ``pg_lsn`` text (``"0/30011B8"``) as a number that compares as the positions do."""
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True, slots=True)
class _Sample:
    #: Reactor time just before the primary was asked: every commit acknowledged before it is in ``snapshot``.
    at: float
    snapshot: str
    lsn: int


def _primary_position_txn(txn: Txn) -> tuple[str, int]:
    # The statement's snapshot is taken before the position is read: the position is past every commit in it.
    row = txn.execute("SELECT pg_current_snapshot()::text AS snap, pg_current_wal_insert_lsn()::text AS lsn").fetchone()
    assert row is not None
    return str(row["snap"]), parse_lsn(str(row["lsn"]))


def _replayed_txn(txn: Txn) -> int | None:
    """How far the replica has replayed; None when it is not replaying (not a standby, or promoted)."""
    row = txn.execute("SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS lsn").fetchone()
    if row is None or not row["standby"] or row["lsn"] is None:
        return None
    return parse_lsn(str(row["lsn"]))


class ReadRouter:
    """Sends the reads that may be a little behind to the replica when it is safe (module docstring)."""

    #: Seconds between two measures of the replica's position.
    INTERVAL = 1.0

    def __init__(
        self,
        primary: Database,
        replica: Database | None = None,
        clock: IReactorTime | None = None,
        max_lag: float = 5.0,
    ) -> None:
        self._primary = primary
        self._replica = replica
        self._clock = clock
        self._max_lag = max_lag
        #: Samples taken, oldest first, not yet reached by the replica.
        self._pending: deque[_Sample] = deque(maxlen=max(4, int(max_lag / self.INTERVAL) + 2))
        #: The newest sample the replica has reached (None: do not read from it).
        self.covered: _Sample | None = None
        #: User id -> reactor time their last write committed; dropped once the replica has it.
        self._writes: dict[int, float] = {}
        #: Reads answered by each side with a replica, for tests and ``umoc_replica_reads_total``.
        self.served = {"replica": 0, "primary": 0}
        self._unusable_logged = False

    @property
    def replicated(self) -> bool:
        """Whether a replica is configured at all."""
        return self._replica is not None

    def wrote(self, user_id: int) -> None:
        """``user_id``'s write has committed: their reads go to the primary until the replica has it."""
        if self._replica is not None and self._clock is not None:
            self._writes[user_id] = self._clock.seconds()

    def lag(self) -> float:
        """Seconds since the newest measure the replica has reached was taken; infinite when none is."""
        if self.covered is None or self._clock is None:
            return math.inf
        return max(0.0, self._clock.seconds() - self.covered.at)

    def serves(self, user_id: int) -> bool:
        """Whether ``user_id``'s next read goes to the replica (history, search, ``sync``, export)."""
        return self._replica is not None and self._replica_for(user_id) is not None

    def _replica_for(self, user_id: int) -> _Sample | None:
        """The covered sample when ``user_id``'s read may go to the replica, else None."""
        covered = self.covered
        if covered is None or self._clock is None:
            return None
        if self._clock.seconds() - covered.at > self._max_lag:
            return None
        written = self._writes.get(user_id)
        if written is not None and written >= covered.at:
            return None
        return covered

    def read(self, desc: str, user_id: int, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """``fn(txn, *args)`` for ``user_id``, on the replica when that is safe, else on the primary."""
        if self._replica is None:
            return self._primary.read(desc, fn, *args)
        if self._replica_for(user_id) is None:
            self.served["primary"] += 1
            return self._primary.read(desc, fn, *args)
        return self._on_replica(desc, fn, args, fn, args)

    def read_covered(self, desc: str, user_id: int, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """Like `read`, for ``fn(txn, covered, *args)``: ``covered`` is the primary snapshot the replica
        has replayed, or None on the primary; ``fn`` raises `ReplicaBehindError` for what it does not cover."""
        if self._replica is None:
            return self._primary.read(desc, fn, None, *args)
        covered = self._replica_for(user_id)
        if covered is None:
            self.served["primary"] += 1
            return self._primary.read(desc, fn, None, *args)
        return self._on_replica(desc, fn, (covered.snapshot, *args), fn, (None, *args))

    def _on_replica(
        self,
        desc: str,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        primary_fn: Callable[..., T],
        primary_args: tuple[Any, ...],
    ) -> defer.Deferred[T]:
        assert self._replica is not None

        def answered(result: T) -> T:
            self.served["replica"] += 1
            return result

        def failed(failure: Failure) -> Any:
            if failure.check(UserError) and not failure.check(ReplicaBehindError, DatabaseUnavailableError):
                self.served["replica"] += 1
                return failure  # the replica's answer: the request itself is refused
            if not failure.check(ReplicaBehindError):
                log.warn(
                    "Read {desc} failed on the replica, answered by the primary: {why}",
                    desc=desc,
                    why=failure.getErrorMessage(),
                )
            self.served["primary"] += 1
            return self._primary.read(desc, primary_fn, *primary_args)

        return self._replica.read(desc, fn, *args).addCallbacks(answered, failed)

    async def poll(self) -> None:
        """Measure how far the replica has replayed (module docstring); a replica that fails is not read."""
        if self._replica is None or self._clock is None:
            return
        at = self._clock.seconds()
        snapshot, lsn = await self._primary.run("replica.primary_position", _primary_position_txn)
        self._pending.append(_Sample(at, snapshot, lsn))
        try:
            replayed = await self._replica.run("replica.replayed", _replayed_txn)
        except Exception as exc:  # noqa: BLE001 - any failure: the replica is not read until it answers
            self._unusable(f"it did not answer: {str(exc) or type(exc).__name__}")
            return
        if replayed is None:
            self._unusable("it is not a standby replaying the primary (pg_is_in_recovery() is false)")
            return
        reached = None
        while self._pending and self._pending[0].lsn <= replayed:
            reached = self._pending.popleft()
        if reached is not None:
            self.covered = reached
            self._writes = {user: when for user, when in self._writes.items() if when >= reached.at}
            if self._unusable_logged:
                log.info("Reading from the replica (database.read_dsn) again")
                self._unusable_logged = False

    def _unusable(self, why: str) -> None:
        self.covered = None
        self._pending.clear()
        if not self._unusable_logged:
            log.warn("Not reading from the replica (database.read_dsn): {why}", why=why)
            self._unusable_logged = True

    def close(self) -> None:
        if self._replica is not None:
            self._replica.close()
