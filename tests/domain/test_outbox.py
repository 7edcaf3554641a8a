"""The feed's consumers on a `Clock` over a real database (both dialects): order, stored positions, leases.

Deliveries are recorded by the test, which decides when each is done, so
it can check that the stored position never passes a row whose delivery is
not done, that a consumer started after a crash repeats exactly those rows
(never fewer), and that one node tails a consumer at a time, another
taking over once the holder's lease has expired.  The storage runs in
adbapi's threads: `settle` waits for it between clock steps.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from tests.support.databases import (
    NO_POSTGRES,
    POSTGRES_DSN,
    DatabaseTestCase,
    TwoWritersTestCase,
    for_each_backend,
)
from tests.support.deferreds import inline
from umoc.config import FeedConfig
from umoc.domain.outbox import FeedConsumer, Tail
from umoc.domain.webhooks import render, webhook_id
from umoc.records import Actor
from umoc.records.messages import Deletion, NewMessage
from umoc.storage import Storage
from umoc.storage.outbox import OutboxRow

T0 = 1_700_000_000.0
LEASE = 30.0
CONFIG = FeedConfig(consumer_poll_interval=1, consumer_lease=LEASE, consumer_batch=2, consumer_wake_delay=0)


class Recorder:
    """A consumer's ``deliver``: records each row; ``hold`` makes the next deliveries wait for the test."""

    def __init__(self) -> None:
        self.rows: list[OutboxRow] = []
        self.hold = False
        self.held: dict[int, defer.Deferred[None]] = {}

    def __call__(self, row: OutboxRow) -> defer.Deferred[None]:
        self.rows.append(row)
        if self.hold:
            d: defer.Deferred[None] = defer.Deferred()
            self.held[row.change_id] = d
            return d
        return defer.succeed(None)

    @property
    def ids(self) -> list[int]:
        return [row.change_id for row in self.rows]


class ConsumerHelpers:
    storage: Storage
    clock: Clock

    @inline
    async def setUp(self) -> None:
        await super().setUp()  # type: ignore[misc]
        self.clock = Clock()
        self.clock.advance(T0)
        self.consumers: list[FeedConsumer] = []

    def consumer(self, name: str = "webhooks") -> tuple[FeedConsumer, Recorder]:
        recorder = Recorder()
        tail = Tail(self.storage.outbox, CONFIG, f"node-{uuid.uuid4().hex[:6]}")
        consumer = FeedConsumer(name, tail, self.clock, ("registered", "message", "delete"), recorder)
        self.consumers.append(consumer)
        self.addCleanup(consumer.halt)  # type: ignore[attr-defined]
        return consumer, recorder

    async def settle(self) -> None:
        """Run what is due now (reads queued with callLater(0)) and wait for the storage, until quiet."""
        for _ in range(20):
            self.clock.advance(0)
            await defer.DeferredList([c.idle() for c in self.consumers])
            self.clock.advance(0)
            if not any(c._busy for c in self.consumers):
                return

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()

    async def users(self, *names: str) -> list[int]:
        return [(await self.storage.users.create(name, "not a hash", self.clock.seconds())).id for name in names]

    async def registered_ids(self) -> list[int]:
        """The ids of the ``registered`` changes, oldest first (straight from the table)."""
        return await self.storage.db.run(
            "test.ids",
            lambda txn: [
                int(r["id"])
                for r in txn.execute("SELECT id FROM changes WHERE kind = 'registered' ORDER BY id").fetchall()
            ],
        )


class ConsumerTestsMixin(ConsumerHelpers):
    @inline
    async def test_rows_after_the_first_claim_are_delivered_once_each_in_order_and_the_position_follows(self) -> None:
        await self.users("before")
        consumer, recorder = self.consumer()
        await consumer.start()
        self.assertTrue(consumer.holding)
        await self.users("a", "b", "c", "d", "e")
        consumer.wake()
        await self.settle()
        ids = (await self.registered_ids())[1:]
        self.assertEqual(recorder.ids, ids, "what came before the consumer's first claim is not its to deliver")
        self.assertEqual([r.change.actor_username for r in recorder.rows if r.change], ["a", "b", "c", "d", "e"])
        await self.advance(CONFIG.consumer_poll_interval * 3)
        self.assertEqual(recorder.ids, ids, "nothing twice")
        stored = await self.storage.outbox.position("webhooks")
        again = await self.storage.outbox.read(stored, consumer.kinds, 10)  # type: ignore[arg-type]
        self.assertEqual(again.rows, [], "the stored position is past every row delivered")

    @inline
    async def test_commits_within_the_wake_delay_share_one_read(self) -> None:
        recorder = Recorder()
        config = dataclasses.replace(CONFIG, consumer_batch=100, consumer_wake_delay=0.05)
        consumer = FeedConsumer(
            "webhooks", Tail(self.storage.outbox, config, "node-w"), self.clock, ("registered",), recorder
        )
        self.consumers.append(consumer)
        self.addCleanup(consumer.halt)  # type: ignore[attr-defined]
        await consumer.start()
        reads = []
        store_read = self.storage.outbox.read

        def counted(*args: Any) -> Any:
            reads.append(self.clock.seconds())
            return store_read(*args)

        self.storage.outbox.read = counted  # type: ignore[method-assign]
        self.addCleanup(setattr, self.storage.outbox, "read", store_read)  # type: ignore[attr-defined]
        await self.advance(0.1)  # past the delay after the read the claim made (the next poll is at 1 s)
        await self.users("a")
        consumer.wake()  # the first in a while: read at once
        await self.settle()
        self.assertEqual(len(reads), 1)
        for name in ("b", "c", "d"):
            await self.users(name)
            consumer.wake()  # within 50 ms of that read: put off
            await self.settle()
        self.assertEqual(len(reads), 1)
        self.assertEqual([r.change.actor_username for r in recorder.rows if r.change], ["a"])
        await self.advance(0.05)
        self.assertEqual(len(reads), 2, "the three commits, one read")
        self.assertEqual([r.change.actor_username for r in recorder.rows if r.change], ["a", "b", "c", "d"])

    @inline
    async def test_a_crash_repeats_the_rows_not_done_and_never_skips_one(self) -> None:
        first, recorder = self.consumer()
        await first.start()
        await self.users("a")
        first.wake()
        await self.settle()
        recorder.hold = True
        await self.users("b", "c", "d")
        first.wake()
        await self.settle()
        a, b, c, d = await self.registered_ids()
        self.assertEqual(recorder.ids, [a, b, c, d])
        # c and d are done, b is not: the position may pass a only.
        recorder.held[c].callback(None)
        recorder.held[d].callback(None)
        await self.advance(CONFIG.consumer_poll_interval * 12)  # renewals store the done position
        stored = await self.storage.outbox.position("webhooks")
        pending = await self.storage.outbox.read(stored, first.kinds, 10)  # type: ignore[arg-type]
        self.assertEqual([row.change_id for row in pending.rows], [b, c, d])
        # The node dies (no clean stop: its lease is not given up).  Another takes over after the lease.
        first.halt()
        second, again = self.consumer()
        await second.start()
        if self.storage.db.dialect.shared_by_nodes:
            self.assertFalse(second.holding, "the dead node's lease has not expired yet")
            await self.advance(LEASE + CONFIG.consumer_lease / 3)
        else:
            await self.settle()  # SQLite: one node, so the lease left behind was this node's own: taken at once
        self.assertTrue(second.holding)
        self.assertEqual(again.ids, [b, c, d], "at least once: b repeated with what followed it, a not")

    @inline
    async def test_reading_waits_past_four_batches_not_done_and_goes_on_as_they_finish(self) -> None:
        consumer, recorder = self.consumer()
        await consumer.start()
        recorder.hold = True
        await self.users(*(f"u{i}" for i in range(12)))
        consumer.wake()
        await self.settle()
        limit = 4 * CONFIG.consumer_batch
        read = len(recorder.ids)
        # It stops once four batches' rows are under way (the read that crosses the line is the last).
        self.assertTrue(limit <= read < limit + CONFIG.consumer_batch, read)
        await self.advance(CONFIG.consumer_poll_interval * 3)
        self.assertEqual(len(recorder.ids), read, "the poll reads nothing more either")
        for change_id in recorder.ids[:3]:
            recorder.held[change_id].callback(None)
        await self.settle()
        self.assertGreater(len(recorder.ids), read, "rows done: reading goes on")
        recorder.hold = False
        for held in list(recorder.held.values()):
            if not held.called:
                held.callback(None)
        await self.settle()
        self.assertEqual(recorder.ids, await self.registered_ids())

    @inline
    async def test_a_wake_while_pages_of_an_earlier_snapshot_remain_is_not_lost(self) -> None:
        """PostgreSQL pages a window in the snapshot its first page took: a commit after it is in the next one.

        A CI run caught this: the claim's read ran while users were being
        created, so its window held some of them; the wake after the rest
        started the window's next page, which cleared the wake, and the
        window's last page (not full) ended the reading 5 rows in.
        """
        consumer, recorder = self.consumer()
        await consumer.start()
        await self.settle()
        await self.users("a", "b", "c", "d", "e")
        consumer.wake()  # the first page (2 rows, full): its next page waits for the clock
        await defer.DeferredList([consumer.idle()])
        self.assertEqual(len(recorder.ids), 2)
        await self.users("f", "g", "h")
        consumer.wake()  # starts that next page at once (full again on PostgreSQL: c and d)
        await self.settle()
        self.assertEqual(recorder.ids, await self.registered_ids(), "the wake's rows too, without a poll")

    @inline
    async def test_rows_render_from_the_live_rows_a_deleted_message_is_not_sent(self) -> None:
        consumer, recorder = self.consumer()
        await consumer.start()
        alice, bob = await self.users("alice", "bob")
        await self.storage.contacts.request(alice, "bob", T0)
        await self.storage.contacts.accept(bob, alice, T0)
        kept_id, gone_id = str(uuid.uuid4()), str(uuid.uuid4())
        actor = Actor.user(alice, "alice")
        await self.storage.messages.post(actor, NewMessage(bob, False, "kept"), kept_id, T0)
        await self.storage.messages.post(actor, NewMessage(bob, False, "secret"), gone_id, T0)
        await self.storage.messages.delete(actor, Deletion(gone_id), T0)
        consumer.wake()
        await self.settle()
        rendered = [render(row) for row in recorder.rows]
        kinds = [r[0] for r in rendered if r is not None]
        self.assertEqual(kinds, ["user.registered", "user.registered", "message.created", "message.deleted"])
        created = next(r[1] for r in rendered if r is not None and r[0] == "message.created")
        self.assertEqual((created["message_id"], created["content"]), (kept_id, "kept"))
        self.assertNotIn("secret", repr(rendered))
        message_row = next(row for row in recorder.rows if row.kind == "message")
        self.assertEqual(message_row.audience, (bob,))
        # The webhook id: the change and the URL, nothing else.
        self.assertEqual(webhook_id(7, "https://a.example/hook"), webhook_id(7, "https://a.example/hook"))
        self.assertNotEqual(webhook_id(7, "https://a.example/hook"), webhook_id(8, "https://a.example/hook"))


for_each_backend(ConsumerTestsMixin, DatabaseTestCase, globals())


class LeaseTests(ConsumerHelpers, DatabaseTestCase):
    """Several nodes share PostgreSQL: one tails a consumer at a time (SQLite has one node, and no lease)."""

    backend = "postgres"
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    @inline
    async def test_one_node_tails_a_consumer_at_a_time_and_the_position_is_fenced(self) -> None:
        first, one = self.consumer()
        second, other = self.consumer()
        await first.start()
        await second.start()
        self.assertEqual((first.holding, second.holding), (True, False))
        for _ in range(3):
            await self.users(f"u{self.clock.seconds()}")
            first.wake()
            second.wake()
            await self.advance(LEASE / 2)  # the holder renews; the other keeps trying, in vain
        self.assertEqual((first.holding, second.holding), (True, False))
        self.assertEqual(len(one.ids), 3)
        self.assertEqual(other.ids, [])
        # The holder is paused past its lease (a stalled machine): the other takes over, and the stalled one,
        # when it comes back, can no longer move the position.
        first.halt()
        await self.advance(LEASE + LEASE / 3 + 1)
        self.assertTrue(second.holding)
        ok = await self.storage.outbox.advance("webhooks", first.holder, "bogus", self.clock.seconds(), LEASE)
        self.assertFalse(ok)
        self.assertNotEqual(await self.storage.outbox.position("webhooks"), "bogus")

    @inline
    async def test_a_clean_stop_gives_the_lease_up_to_the_next_claim(self) -> None:
        first, _ = self.consumer()
        second, recorder = self.consumer()
        await first.start()
        await second.start()
        await first.stop()
        await self.users("after")
        await self.advance(LEASE / 3)  # the other's next claim, long before the lease would have expired
        self.assertTrue(second.holding)
        second.wake()
        await self.settle()
        self.assertEqual(recorder.ids, await self.registered_ids())


class OutOfOrderCommitTests(TwoWritersTestCase):
    """PostgreSQL: a consumer reads a row whose smaller id committed after it had read past a larger one."""

    def write(self, conn: Any, user_id: int) -> int:
        """A ``registered`` change, uncommitted; its id."""
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO changes (kind, actor_id, created_at) VALUES ('registered', %s, %s) RETURNING id",
                (user_id, T0),
            )
            return int(cur.fetchone()[0])

    @inline
    async def test_the_earlier_id_committed_later_is_read_next_time_and_nothing_twice(self) -> None:
        assert await self.storage.outbox.claim("webhooks", "me", T0, LEASE) is not None
        position = await self.storage.outbox.position("webhooks")
        assert position is not None
        slow, fast = self.conns
        late = self.write(slow, 1001)
        early = [self.write(fast, 1002 + i) for i in range(3)]
        self.assertLess(late, early[0])
        fast.commit()
        first = await self.storage.outbox.read(position, ("registered",), 2)
        self.assertTrue(first.full)
        slow.commit()  # while the window is paged: in the next window, not skipped
        second = await self.storage.outbox.read(first.position, ("registered",), 2)
        third = await self.storage.outbox.read(second.position, ("registered",), 2)
        fourth = await self.storage.outbox.read(third.position, ("registered",), 2)
        seen = [row.change_id for batch in (first, second, third, fourth) for row in batch.rows]
        self.assertEqual(sorted(seen), sorted([late, *early]))
        self.assertEqual(len(seen), 4, "each once")
        self.assertEqual(seen[-1], late)
