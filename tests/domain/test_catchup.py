"""Catch-up after a bus gap, on a `Clock`: its state, the replay, and the ``sync_needed`` hint.

The storage here is a stand-in that answers what the test tells it to: these
tests are about when catch-ups run and what the sockets are told, not about
the queries (``tests/e2e/test_cluster_faults.py`` runs them for real).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from tests.support.fakes import FakeSocket
from umoc.cluster.hub import Hub
from umoc.domain.catchup import CatchUp
from umoc.socketapp import UserIdentity
from umoc.storage.messages import Message

T0 = 1_700_000_000.0


def message(n: int, created_at: float, recipient: int = 1) -> Message:
    return Message(f"m{n}", n + 1, 1, 2, "bob", recipient, False, "text", f"hello {n}", None, created_at)


class FakeMessages:
    def __init__(self) -> None:
        self.stored: list[Message] = []
        self.queries = 0
        #: When set, each query waits on a Deferred the test fires.
        self.gate: list[defer.Deferred[None]] | None = None
        self.fail = False

    def missed_since(self, user_id: int, since: float, limit: int, after_seq: int = 0) -> defer.Deferred[list[Message]]:
        self.queries += 1
        if self.fail:
            return defer.fail(RuntimeError("the database fell over"))
        found = [m for m in self.stored if m.recipient_id == user_id and m.created_at > since and m.seq > after_seq]
        if self.gate is None:
            return defer.succeed(found[:limit])
        d: defer.Deferred[None] = defer.Deferred()
        self.gate.append(d)
        return d.addCallback(lambda _: found[:limit])


class FakeFeed:
    def __init__(self) -> None:
        self.current = "cursor-0"
        self.asked = 0

    def position(self) -> defer.Deferred[str]:
        self.asked += 1
        return defer.succeed(self.current)


class FakeStorage:
    def __init__(self) -> None:
        self.messages = FakeMessages()
        self.feed = FakeFeed()


class CatchUpTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.hub = Hub(clock=self.clock)
        self.storage = FakeStorage()
        self.bus_ok = True
        self.catchup = CatchUp(self.hub, self.storage, self.clock, lambda: self.bus_ok)  # type: ignore[arg-type]

    def join(self, user_id: int = 1, cursor: str | None = None, sid: str = "a") -> FakeSocket:
        socket = FakeSocket(user_id, f"s{user_id}{sid}", sid=sid)
        socket.identity = UserIdentity(user_id, f"user{user_id}", f"s{user_id}{sid}", 0.0, cursor)
        self.hub.add(socket)  # type: ignore[arg-type]
        return socket

    def gap(self, since: float) -> None:
        """A gap since ``since`` ends: the catch-up, then the hint after its wait."""
        self.successResultOf(self.catchup.request(since))
        self.clock.advance(CatchUp.HINT_WAIT)

    def test_a_gap_with_nobody_connected_leaves_later_gaps_caught_up(self) -> None:
        self.gap(T0 - 5)  # nobody here: nothing to do, and it finishes at once
        self.assertFalse(self.catchup.running)
        socket = self.join()
        self.clock.advance(60)
        self.storage.messages.stored.append(message(1, self.clock.seconds() - 2))
        self.gap(self.clock.seconds() - 3)
        self.assertEqual([m["content"] for m in socket.events("new_message")], ["hello 1"])
        self.assertEqual(len(socket.events("sync_needed")), 1)
        self.assertEqual(self.catchup.replayed, 1)

    def test_every_gap_after_many_idle_ones_is_caught_up(self) -> None:
        for n in range(5):
            self.gap(T0 + n)
        socket = self.join()
        for n in range(3):
            self.clock.advance(30)
            self.storage.messages.stored.append(message(n, self.clock.seconds() - 1))
            self.gap(self.clock.seconds() - 2)
        self.assertEqual([m["content"] for m in socket.events("new_message")], ["hello 0", "hello 1", "hello 2"])
        self.assertEqual(len(socket.events("sync_needed")), 3, "once per gap")

    def test_requests_during_a_run_merge_into_one_more_run_from_the_earliest_time(self) -> None:
        socket = self.join()
        self.storage.messages.gate = gate = []
        first = self.catchup.request(T0 - 1)
        self.assertTrue(self.catchup.running)
        self.assertEqual(len(gate), 1)
        second, third = self.catchup.request(T0 - 30), self.catchup.request(T0 - 20)
        self.storage.messages.stored.append(message(1, T0 - 5))  # stored after the first run looked
        gate.pop().callback(None)
        self.assertNoResult(first)  # the merged run goes on before anyone is told it is done
        self.assertEqual(len(gate), 1, "one more run, not two")
        gate.pop().callback(None)
        for d in (first, second, third):
            self.successResultOf(d)
        self.assertFalse(self.catchup.running)
        self.assertEqual([m["content"] for m in socket.events("new_message")], ["hello 1"])
        self.clock.advance(CatchUp.HINT_WAIT)
        self.assertEqual(len(socket.events("sync_needed")), 1)

    def test_a_failed_catch_up_does_not_switch_catch_up_off(self) -> None:
        socket = self.join()
        self.storage.messages.fail = True
        self.gap(T0 - 1)
        self.flushLoggedErrors(RuntimeError)
        self.storage.messages.fail = False
        self.storage.messages.stored.append(message(1, T0 - 1))
        self.gap(T0 - 2)
        self.assertEqual([m["content"] for m in socket.events("new_message")], ["hello 1"])

    def test_every_local_socket_is_told_to_sync_from_a_mark_before_the_gap(self) -> None:
        phone, laptop = self.join(1, "connected-1", "a"), self.join(1, "connected-1b", "b")
        carol = self.join(3, "connected-3")
        self.clock.advance(1)
        for n in range(6):  # a mark every MARK_INTERVAL
            self.storage.feed.current = f"mark-{n}"
            self.successResultOf(defer.ensureDeferred(self.catchup.mark()))
            self.clock.advance(CatchUp.MARK_INTERVAL)
        gap_start = self.clock.seconds() - 2  # marks 0-3 were answered more than MARGIN before it
        self.gap(gap_start)
        expected = {"reason": "cluster_gap", "cursor": "mark-3"}
        for socket in (phone, laptop, carol):
            self.assertEqual(socket.events("sync_needed"), [expected])

    def test_a_socket_newer_than_the_marks_syncs_from_its_own_connection_cursor(self) -> None:
        self.join(1, "old")
        self.storage.feed.current = "mark"
        self.successResultOf(defer.ensureDeferred(self.catchup.mark()))
        self.clock.advance(60)
        newcomer = self.join(2, "connected-later")
        unknown = self.join(3, None)  # the database did not answer at its connect: the mark will do
        self.clock.advance(1)
        self.gap(self.clock.seconds() - 30)
        self.assertEqual(newcomer.events("sync_needed"), [{"reason": "cluster_gap", "cursor": "connected-later"}])
        self.assertEqual(unknown.events("sync_needed"), [{"reason": "cluster_gap", "cursor": "mark"}])

    def test_with_no_mark_old_enough_and_no_connection_cursor_the_cursor_is_null(self) -> None:
        socket = self.join(1, None)
        self.storage.feed.current = "too-late"
        self.successResultOf(defer.ensureDeferred(self.catchup.mark()))
        self.gap(self.clock.seconds() - 1)  # the mark is not MARGIN older than the gap
        self.assertEqual(socket.events("sync_needed"), [{"reason": "cluster_gap", "cursor": None}])

    def test_no_marks_while_nobody_is_connected_or_the_bus_is_down(self) -> None:
        self.successResultOf(defer.ensureDeferred(self.catchup.mark()))
        self.assertEqual(self.storage.feed.asked, 0)
        self.join()
        self.bus_ok = False
        self.successResultOf(defer.ensureDeferred(self.catchup.mark()))
        self.assertEqual(self.storage.feed.asked, 0)
        self.bus_ok = True
        self.successResultOf(defer.ensureDeferred(self.catchup.mark()))
        self.assertEqual(self.storage.feed.asked, 1)

    def test_marks_are_bounded(self) -> None:
        self.join()
        for _ in range(CatchUp.MAX_MARKS * 3):
            self.successResultOf(defer.ensureDeferred(self.catchup.mark()))
        self.assertEqual(len(self.catchup._marks), CatchUp.MAX_MARKS)

    def test_another_nodes_request_about_the_same_outage_shares_the_hint(self) -> None:
        socket = self.join(1, "connected")
        self.successResultOf(self.catchup.request(T0 - 3))  # this node's own gap ends
        self.clock.advance(CatchUp.HINT_WAIT - 1)
        self.assertEqual(socket.events("sync_needed"), [], "the hint waits for the other nodes")
        self.successResultOf(self.catchup.request(T0 - 2))  # another node's publications failed meanwhile
        self.clock.advance(1)
        self.assertEqual(len(socket.events("sync_needed")), 1, "one hint for the outage")
        self.gap(T0 + 10)  # a later outage: a hint of its own
        self.assertEqual(len(socket.events("sync_needed")), 2)
        self.assertEqual(self.catchup.hinted, 2)

    def test_stopping_drops_the_scheduled_hint(self) -> None:
        socket = self.join()
        self.successResultOf(self.catchup.request(T0 - 3))
        self.catchup.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(CatchUp.HINT_WAIT)
        self.assertEqual(socket.events("sync_needed"), [])

    def test_a_gap_caught_up_with_nobody_connected_sends_no_hint_later(self) -> None:
        self.successResultOf(self.catchup.request(T0 - 3))
        self.assertEqual(self.clock.getDelayedCalls(), [], "sockets that connect after it missed nothing")
