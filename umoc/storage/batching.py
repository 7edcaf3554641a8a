"""Group commit: the writes waiting at the same moment share one transaction and one fsync.

A `BatchWriter` keeps one queue per lane.  While a lane's transaction runs,
new writes wait in its queue; when it commits, everything queued becomes the
next transaction.  An idle lane starts at once, so a lone write waits for
nobody: batching costs no latency, it only appears under load.

Each write still gets its own outcome.  A batch first runs all its items
under one ``SAVEPOINT`` on PostgreSQL (sent with the batch's first
statement: no round trip of its own, and not released, as the commit
follows); on SQLite, where the batch is the whole transaction, under none
(a savepoint there journals every page the batch changes, into a temporary
file past 64 KiB): undoing it is rolling the transaction back and beginning
again.
Writes of one kind may also be written together: the batch's items naming
the same ``together`` function go to it in one call (on PostgreSQL, the
direct messages of a batch are one call of a PL/pgSQL function taking
arrays, whatever their number), which answers each item with its result or
the refusal of that item alone.  If any item raises (not friends,
blocked, unknown message), the batch goes back to that savepoint (or to its
start) and runs again with every item under its own savepoint: the refused one is rolled
back to its savepoint and answered with its error while the others commit.
Items are written to be safe to run again (as `Database.run` requires), and
refusals are rare, so the common batch pays for no per-item savepoints.
Nobody is answered before the commit, so an acknowledged write is durable.

SQLite has one lane (one writer anyway).  PostgreSQL has several, each a
pool connection: a write goes to the lane of its key (a direct chat's pair, a
group), so writes to one chat queue behind each other in one transaction
instead of waiting on each other's row locks across connections.  A
deadlock or serialization failure between lanes rolls the item back to its
savepoint and runs it again.

Each write is named (``"messages.post"``, ``"messages.delete"``): the batch
is one transaction, labelled ``"batch"`` in the transaction metric, and each
write in it is observed too, under its own name, from its request to its
result (queueing, the batch and the commit), so a slow send shows as a slow
``messages.post`` whatever it shared its batch with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure

__all__ = ["BatchWriter", "MAX_BATCH"]

#: Most writes in one transaction: bounds a transaction's length (and its deadline's share per write).
MAX_BATCH = 256
#: How often an item hit by a deadlock between lanes is tried again within its batch.
RETRIES = 3


#: ``observe(name, ok, seconds, waited)``: `TransactionMetrics.done`'s signature (``waited`` is None for a write).
Observe = Callable[[str, bool, float, "float | None"], None]


#: ``together(txn, [args of each item])``: the items' outcomes, in order, each a result or the exception
#: refusing that item alone (having written nothing); raising sends the batch item by item through ``fn``.
Together = Callable[[Any, list[tuple[Any, ...]]], list[Any]]


@dataclass(slots=True)
class _Item:
    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    started: float
    together: Together | None = None
    done: defer.Deferred[Any] = field(default_factory=defer.Deferred)


def _batch_txn(
    txn: Any,
    items: list[_Item],
    retry_errors: tuple[type[BaseException], ...],
    fatal_errors: tuple[type[BaseException], ...],
) -> list[Any]:
    """Each item's result, or its `Failure` (rolled back to its savepoint, or refused by its ``together``).

    ``fatal_errors`` (the database is not there, a deadline) fail the whole
    batch: `Database.run` then answers every caller and rolls back.  The
    savepoint (PostgreSQL) rides on the batch's first statement (`Txn.savepoint`)
    and is not released: the commit follows.  SQLite takes none
    (``Dialect.batch_savepoint``): the batch restarts its transaction instead.
    """
    txn.begin()
    undo = txn.dialect.batch_savepoint
    if undo:
        txn.savepoint("batch_all")
    try:
        return _all_txn(txn, items)
    except Exception as exc:
        # A deadlock is also a "fatal" driver error (psycopg2's are OperationalErrors): retried all the same.
        if isinstance(exc, fatal_errors) and not isinstance(exc, retry_errors):
            raise
        # Someone was refused (or lost a deadlock): undo the batch and run it item by item.
        if undo:
            txn.rollback_to("batch_all")
        else:
            txn.restart()  # the batch is the whole transaction (SQLite)
        return _one_by_one_txn(txn, items, retry_errors, fatal_errors)


def _all_txn(txn: Any, items: list[_Item]) -> list[Any]:
    """Every item in order; those sharing a ``together`` in one call of it, where the first of them stands."""
    outcomes: list[Any] = [None] * len(items)
    shared: dict[Together, list[int]] = {}
    for i, item in enumerate(items):
        if item.together is not None:
            shared.setdefault(item.together, []).append(i)
    for i, item in enumerate(items):
        if item.together is None:
            outcomes[i] = item.fn(txn, *item.args)
            continue
        members = shared.get(item.together)
        if members is None or members[0] != i:
            continue  # answered with the first of its kind
        results = item.together(txn, [items[j].args for j in members])
        for j, result in zip(members, results, strict=True):
            outcomes[j] = Failure(result) if isinstance(result, BaseException) else result
    return outcomes


def _one_by_one_txn(
    txn: Any,
    items: list[_Item],
    retry_errors: tuple[type[BaseException], ...],
    fatal_errors: tuple[type[BaseException], ...],
) -> list[Any]:
    """Run each item under its own savepoint; its result, or its `Failure` (rolled back to the savepoint)."""
    outcomes: list[Any] = []
    for item in items:
        for attempt in range(RETRIES + 1):
            txn.execute("SAVEPOINT batch_item")
            try:
                result = item.fn(txn, *item.args)
            except Exception as exc:  # each caller gets its own error; the batch goes on
                retry = isinstance(exc, retry_errors)
                if isinstance(exc, fatal_errors) and not (retry and attempt < RETRIES):
                    raise  # the database is not there, or a deadlock lost every time: the whole batch fails
                txn.rollback_to("batch_item")
                if retry and attempt < RETRIES:
                    continue
                outcomes.append(Failure(exc))
            else:
                txn.execute("RELEASE SAVEPOINT batch_item")
                outcomes.append(result)
            break
    return outcomes


class BatchWriter:
    """Coalesces ``run(fn, *args)`` calls into shared transactions on ``lanes`` connections.

    ``run_transaction(desc, fn, *args)`` is `Database.run`: the batch gets the
    database's deadline, failure logging and rollback.  ``observe`` is told
    each write's outcome (None: not observed).
    """

    def __init__(
        self,
        run_transaction: Callable[..., defer.Deferred[Any]],
        lanes: int = 1,
        retry_errors: tuple[type[BaseException], ...] = (),
        fatal_errors: tuple[type[BaseException], ...] = (),
        observe: Observe | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run_transaction
        #: The clock writes are timed by (a `Clock`'s ``seconds`` in tests).
        self._now = now
        self._observe = observe
        self._queues: list[list[_Item]] = [[] for _ in range(max(1, lanes))]
        self._busy = [False] * len(self._queues)
        #: Per lane, when the oldest write of its running batch was asked for (None: no batch running).
        self._running_since: list[float | None] = [None] * len(self._queues)
        self._retry_errors = retry_errors
        self._fatal_errors = fatal_errors
        #: Batches committed and items they carried: for tests and the bench.
        self.batches = 0
        self.items = 0

    def run(
        self, name: str, key: int, fn: Callable[..., Any], *args: Any, together: Together | None = None
    ) -> defer.Deferred[Any]:
        """``fn(txn, *args)`` in the next transaction of ``key``'s lane; fires after it commits.

        ``name`` labels the write in the metrics (a literal, as `Database.run`'s ``desc``).
        ``together``, when given, writes all the batch's items that name it in one call
        (one round trip on PostgreSQL); ``fn`` still writes the item when the batch
        goes item by item.
        """
        lane = key % len(self._queues)
        item = _Item(name, fn, args, self._now(), together)
        self._queues[lane].append(item)
        if not self._busy[lane]:
            self._start(lane)
        return item.done

    @property
    def running(self) -> int:
        """Lanes with a batch in the database now (PostgreSQL: transactions in flight at once)."""
        return sum(self._busy)

    def oldest_wait(self) -> float:
        """Seconds the oldest unanswered write of the most backed-up lane has waited so far (0: none waits).

        A lane's oldest is the first write of its running batch, else the
        first still queued; per lane that is O(1), whatever the queue's
        length.  It rises while the database falls behind (a batch that does
        not commit, a queue growing faster than batches drain it) and falls
        back to a batch's own time once the lane catches up.
        """
        now, oldest = self._now(), 0.0
        for lane, queue in enumerate(self._queues):
            since = self._running_since[lane]
            if since is None and queue:
                since = queue[0].started
            if since is not None and now - since > oldest:
                oldest = now - since
        return oldest

    def _start(self, lane: int) -> None:
        queue = self._queues[lane]
        batch, self._queues[lane] = queue[:MAX_BATCH], queue[MAX_BATCH:]
        self._busy[lane] = True
        self._running_since[lane] = batch[0].started
        d = self._run("batch", _batch_txn, batch, self._retry_errors, self._fatal_errors)
        d.addBoth(self._finished, lane, batch)

    def _finished(self, outcome: Any, lane: int, batch: list[_Item]) -> None:
        self._busy[lane] = False
        self._running_since[lane] = None
        if self._queues[lane]:
            self._start(lane)
        # One pass: each write observed and answered in turn (all observed at the same moment, the commit's).
        observe = self._observe
        now = self._now() if observe is not None else 0.0
        if isinstance(outcome, Failure):
            # The transaction as a whole failed (deadline, lost connection): nothing was committed.
            for item in batch:
                if observe is not None:
                    observe(item.name, False, now - item.started, None)
                item.done.errback(outcome)
            return
        self.batches += 1
        self.items += len(batch)
        for item, result in zip(batch, outcome, strict=True):
            if isinstance(result, Failure):
                if observe is not None:
                    observe(item.name, False, now - item.started, None)
                item.done.errback(result)
            else:
                if observe is not None:
                    observe(item.name, True, now - item.started, None)
                item.done.callback(result)
