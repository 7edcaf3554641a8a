"""`ReadRouter`: which database answers a read, and the feed read on a replica up to a covered snapshot.

The rule is tested on two real SQLite databases standing for the primary and
the replica (each says which it is), the replica's measured position set by
hand (`ReadRouter.poll` needs a real standby: ``tests/e2e/test_read_replica.py``);
the feed's window on PostgreSQL, where one transaction is still running
when the covered snapshot is taken.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from tests.storage.test_feed import T0, OutOfOrderCommitTests
from tests.support.databases import POSTGRES_DSN, TwoWritersTestCase, migrated_database
from tests.support.deferreds import inline
from umoc.errors import RefusedError
from umoc.storage.database import Database, Txn
from umoc.storage.feed import FeedStore, _covers, _snapshot
from umoc.storage.replica import ReadRouter, _Sample, parse_lsn


def _which_txn(txn: Txn) -> str:
    return str(txn.scalar("SELECT side FROM which"))


def _refuse_txn(txn: Txn) -> str:
    raise RefusedError("Unknown chat", code="not_found")


def _primary_only_txn(txn: Txn) -> str:
    return str(txn.scalar("SELECT side FROM only_on_primary"))


class ReadRouterTests(unittest.TestCase):
    @inline
    async def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(100)
        self.primary, self.replica = await migrated_database(self, "sqlite"), await migrated_database(self, "sqlite")
        for db, side in ((self.primary, "primary"), (self.replica, "replica")):
            await db.run("test.which", _mark, side)
        await self.primary.run(
            "test.only", lambda txn: txn.execute("CREATE TABLE only_on_primary AS SELECT 'p' AS side")
        )
        self.reads = ReadRouter(self.primary, self.replica, self.clock, max_lag=5.0)

    def cover(self, at: float) -> None:
        self.reads.covered = _Sample(at, "1:1:", 0)

    @inline
    async def test_nothing_goes_to_the_replica_before_its_position_is_measured(self) -> None:
        self.assertEqual(await self.reads.read("t", 1, _which_txn), "primary")
        self.assertFalse(self.reads.serves(1))

    @inline
    async def test_a_writer_reads_the_primary_until_the_replica_has_a_later_measure(self) -> None:
        self.cover(self.clock.seconds())
        self.clock.advance(1)
        self.reads.wrote(1)
        self.assertEqual(await self.reads.read("t", 1, _which_txn), "primary")
        self.assertEqual(await self.reads.read("t", 2, _which_txn), "replica")
        self.cover(self.clock.seconds())  # measured at the same instant: not known to be after the write
        self.assertEqual(await self.reads.read("t", 1, _which_txn), "primary")
        self.clock.advance(0.5)
        self.cover(self.clock.seconds())
        self.assertEqual(await self.reads.read("t", 1, _which_txn), "replica")

    @inline
    async def test_a_replica_behind_by_more_than_the_bound_is_not_read(self) -> None:
        self.assertEqual(self.reads.lag(), float("inf"))
        self.cover(self.clock.seconds())
        self.clock.advance(5)
        self.assertEqual(self.reads.lag(), 5.0)
        self.assertEqual(await self.reads.read("t", 1, _which_txn), "replica")
        self.clock.advance(0.1)
        self.assertEqual(await self.reads.read("t", 1, _which_txn), "primary")

    @inline
    async def test_a_failing_replica_read_is_answered_by_the_primary_and_a_refusal_is_kept(self) -> None:
        self.cover(self.clock.seconds())
        self.assertEqual(await self.reads.read("t", 1, _primary_only_txn), "p")
        with self.assertRaises(RefusedError):
            await self.reads.read("t", 1, _refuse_txn)
        self.assertEqual(self.reads.served, {"replica": 1, "primary": 1})

    @inline
    async def test_without_a_replica_everything_reads_the_primary_and_writes_are_not_remembered(self) -> None:
        alone = ReadRouter(self.primary, None, self.clock)
        alone.wrote(1)
        self.assertEqual(await alone.read("t", 1, _which_txn), "primary")
        self.assertEqual(alone._writes, {})
        self.assertEqual(alone.served, {"replica": 0, "primary": 0})
        self.assertFalse(alone.replicated)

    def test_positions_compare_as_postgresql_orders_them(self) -> None:
        self.assertLess(parse_lsn("0/FFFFFFFF"), parse_lsn("1/0"))
        self.assertLess(parse_lsn("0/30011B8"), parse_lsn("0/3001200"))


def _mark(txn: Txn, side: str) -> None:
    txn.execute("CREATE TABLE which (side TEXT)")
    txn.execute("INSERT INTO which (side) VALUES (?)", (side,))


class CoversTests(unittest.TestCase):
    def test_a_later_snapshot_covers_an_earlier_one_and_not_the_other_way(self) -> None:
        earlier, later = _snapshot("10:14:10,12"), _snapshot("12:20:12,18")
        self.assertTrue(_covers(later, earlier))
        self.assertFalse(_covers(earlier, later))
        self.assertTrue(_covers(earlier, earlier))

    def test_a_transaction_running_in_the_outer_one_but_visible_in_the_inner_one_is_not_covered(self) -> None:
        self.assertFalse(_covers(_snapshot("10:14:10,11"), _snapshot("10:14:10")))


class ReplicaFeedTests(TwoWritersTestCase):
    """PostgreSQL: the feed on a "replica" (a second pool on the same schema) reads up to the covered snapshot."""

    @inline
    async def test_a_transaction_running_at_the_covered_snapshot_is_read_later_never_skipped(self) -> None:
        bob = (await self.storage.users.create("bob", "x", T0)).id
        others = [(await self.storage.users.create(name, "x", T0)).id for name in ("slow", "fast")]
        cursor = await self.storage.feed.position()
        slow, fast = self.conns
        OutOfOrderCommitTests.write(self, slow, bob, others[0])  # type: ignore[arg-type]
        OutOfOrderCommitTests.write(self, fast, bob, others[1])  # type: ignore[arg-type]
        fast.commit()
        covered = await self.db.run("test.snapshot", lambda txn: str(txn.scalar("SELECT pg_current_snapshot()")))
        slow.commit()  # committed, and so on the replica, but running in the covered snapshot

        clock = task.Clock()
        replica = Database.postgres(POSTGRES_DSN, 1, 2, schema=self.schema)
        self.addCleanup(replica.close)
        reads = ReadRouter(self.db, replica, clock)
        reads.covered = _Sample(clock.seconds(), covered, 0)
        feed = FeedStore(self.db, reads)
        page = await feed.read(bob, cursor, 10)
        self.assertEqual([c.actor_id for c in page.changes], [others[1]])
        self.assertEqual(reads.served, {"replica": 1, "primary": 0})

        # Past the covered snapshot: the primary answers (and a cursor of its own is one the replica lacks).
        reads.covered = None
        again = await feed.read(bob, page.cursor, 10)
        self.assertEqual([c.actor_id for c in again.changes], [others[0]])
        reads.covered = _Sample(clock.seconds(), covered, 0)
        last = await feed.read(bob, again.cursor, 10)
        self.assertEqual(last.changes, [])
        self.assertEqual(reads.served, {"replica": 1, "primary": 2})
