"""The hub: this node's sockets by user and by session, delivery to them, and ending a session."""

from __future__ import annotations

from twisted.trial import unittest

from tests.support.fakes import FakeSocket
from umoc.cluster.hub import Hub
from umoc.domain import notices
from umoc.transport.engine import Outgoing
from umoc.transport.socketio import Identity


class HubTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.hub = Hub(session_ended=notices.session_ended)
        self.phone, self.laptop = FakeSocket(1, "s1", "alice", sid="a"), FakeSocket(1, "s2", "alice", sid="b")
        self.bob = FakeSocket(2, "s3", "bob", sid="c")

    def test_first_and_last_socket_of_a_user_are_reported(self) -> None:
        self.assertTrue(self.hub.add(self.phone))
        self.assertFalse(self.hub.add(self.laptop))
        self.assertEqual((self.hub.socket_count(), self.hub.session_socket_count("s1")), (2, 1))
        self.assertFalse(self.hub.remove(self.phone))
        self.assertFalse(self.hub.remove(self.phone), "a socket is removed once")
        self.assertTrue(self.hub.remove(self.laptop))
        self.assertFalse(self.hub.is_local(1))

    def test_an_event_reaches_every_socket_of_the_users_named_and_no_other(self) -> None:
        for socket in (self.phone, self.laptop, self.bob):
            self.hub.add(socket)
        self.hub.emit_to_users([1, 1, 99], "new_message", {"n": 1})
        for socket in (self.phone, self.laptop):
            self.assertEqual(socket.events("new_message"), [{"n": 1}])
        self.assertEqual(self.bob.received, [])

    def test_a_keyed_delivery_to_a_large_audience_reaches_each_local_user_once_held_ones_later(self) -> None:
        """Issue 30: most of a group's members have no socket here; those here, or held, are the only ones told."""
        for socket in (self.phone, self.laptop, self.bob):
            self.hub.add(socket)
        self.hub.hold([2, 7])  # bob (connected, catching up) and user 7 (held, no socket yet)
        audience = [*range(3, 1000), 1, 2]
        self.hub.emit_to_users(audience, "new_message", {"n": 1}, key="m1", unique=True)
        self.hub.emit_to_users(audience, "new_message", {"n": 1}, key="m1", unique=True)  # reached already
        self.hub.emit_to_users(audience, "thread_updated", {"t": 1}, unique=True)
        self.assertEqual(self.phone.events("new_message"), [{"n": 1}])
        self.assertEqual(self.phone.events("thread_updated"), [{"t": 1}])
        self.assertEqual(self.bob.received, [])
        self.assertTrue(all(self.hub.delivered.has("m1", u) for u in (1, 2, 7)))
        self.assertFalse(self.hub.delivered.has("m1", 3))
        self.hub.release(2)
        self.assertEqual((self.bob.events("new_message"), self.bob.events("thread_updated")), ([{"n": 1}], [{"t": 1}]))
        self.assertEqual(self.hub.messages_delivered, 2, "the phone and the laptop; bob's came from the hold")

    def test_events_told_together_reach_each_local_user_in_order_each_by_its_own_key(self) -> None:
        """A thread reply's ``new_message`` and ``thread_updated`` go out with one look through the group."""
        for socket in (self.phone, self.laptop, self.bob):
            self.hub.add(socket)
        self.hub.hold([2])  # bob catches up: both wait for his release, in order
        audience = [*range(3, 1000), 1, 2]
        together = [(notices.NEW_MESSAGE({"n": 1}), "m1"), (notices.THREAD_UPDATED({"t": 1}), None)]
        self.hub.tell_all(audience, together, unique=True)
        self.hub.tell_all(audience, [(notices.NEW_MESSAGE({"n": 1}), "m1")], unique=True)  # reached already
        for socket in (self.phone, self.laptop):
            self.assertEqual([name for name, _ in socket.received], ["new_message", "thread_updated"])
        self.assertEqual(self.bob.received, [])
        self.assertTrue(all(self.hub.delivered.has("m1", u) for u in (1, 2)))
        self.hub.release(2)
        self.assertEqual([name for name, _ in self.bob.received], ["new_message", "thread_updated"])
        self.assertEqual(self.hub.messages_delivered, 2, "new_message to the phone and the laptop; bob's was held")

    def test_events_told_together_go_to_each_socket_as_one_message_each_kept_under_its_own_offset(self) -> None:
        """One send per socket (its frames joined into one write), while recovery replays each event alone."""
        from twisted.internet.task import Clock

        from umoc.transport.recovery import RecoveryStore

        clock = Clock()
        hub = Hub(recovery=RecoveryStore(clock, 120.0), clock=clock, session_ended=notices.session_ended)
        sent: list[Outgoing] = []
        phone = FakeSocket(1, "s1", "alice", pid=hub.recovery.new_pid())  # type: ignore[union-attr]
        real_send = phone.send
        phone.send = lambda message: (sent.append(message), real_send(message))  # type: ignore[method-assign]
        hub.add(phone)
        hub.recovery.attach(phone)  # type: ignore[union-attr, arg-type]
        together = [(notices.NEW_MESSAGE({"n": 1}), "m1"), (notices.THREAD_UPDATED({"t": 1}), None)]
        hub.tell_all([1, 2, 3], together, unique=True)
        self.assertEqual(len(sent), 1, "one message for both events")
        self.assertEqual(len(sent[0].frames), 2)
        self.assertEqual([event[0] for event in phone.received], ["new_message", "thread_updated"])
        self.assertEqual(hub.messages_delivered, 1, "the new_message, counted once")
        self.assertTrue(hub.delivered.has("m1", 1))
        offsets = [event[-1] for event in phone.received]
        self.assertEqual(len(set(offsets)), 2, "each event has its own offset")
        hub.recovery.detach(phone, "transport close")  # type: ignore[union-attr, arg-type]
        restored = hub.recovery.restore(  # type: ignore[union-attr]
            {"pid": phone.pid, "offset": offsets[0]}, Identity(1, "alice", "s1", 1e12), "/"
        )
        assert restored is not None
        self.assertEqual(len(restored.missed), 1, "after the first offset, only the thread_updated is missed")
        self.assertIn("thread_updated", restored.missed[0].frames[0])

    def test_events_told_together_after_a_key_reached_someone_here_go_one_by_one(self) -> None:
        self.hub.add(self.phone)
        self.hub.add(self.bob)
        self.hub.emit_to_users([1], "new_message", {"n": 1}, key="m1")  # the phone, by a catch-up
        together = [(notices.NEW_MESSAGE({"n": 1}), "m1"), (notices.THREAD_UPDATED({"t": 1}), None)]
        self.hub.tell_all([1, 2], together, unique=True)
        self.assertEqual([e[0] for e in self.phone.received], ["new_message", "thread_updated"])
        self.assertEqual([e[0] for e in self.bob.received], ["new_message", "thread_updated"])

    def test_ending_a_session_tells_and_closes_only_its_sockets(self) -> None:
        for socket in (self.phone, self.laptop):
            self.hub.add(socket)
        self.hub.end_session("s1", "bye")
        self.assertEqual(self.phone.emitted, [("session_status", {"valid": False, "message": "bye"})])
        self.assertEqual(self.phone.disconnected, "session ended")
        self.assertEqual((self.laptop.emitted, self.laptop.disconnected), ([], None))


class LargeFanoutTests(unittest.SynchronousTestCase):
    """A delivery to more users than a turn takes goes out over several turns, and nothing overtakes it."""

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.hub = Hub(clock=self.clock, session_ended=notices.session_ended)
        self.hub.SENDS_PER_TURN = 100  # type: ignore[misc]
        self.readers = [FakeSocket(uid, f"s{uid}", f"user{uid}", sid=str(uid)) for uid in range(1, 251)]
        for socket in self.readers:
            self.hub.add(socket)

    def turn(self) -> None:
        """One reactor turn: the call scheduled before it, not those it schedules (Clock.advance runs both)."""
        (call,) = self.clock.getDelayedCalls()
        self.clock.calls.remove(call)
        call.func(*call.args, **call.kw)

    def reached(self, event: str = "new_message") -> int:
        return sum(1 for socket in self.readers if socket.events(event))

    def test_a_large_fanout_takes_several_turns_of_bounded_size(self) -> None:
        self.hub.emit_to_users([s.user_id for s in self.readers], "new_message", {"n": 1})
        self.assertEqual(self.reached(), 0, "the sender's turn is not spent on the fan-out")
        for expected in (100, 200, 250):
            self.turn()
            self.assertEqual(self.reached(), expected)
        self.assertEqual(self.hub.queued_fanouts, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deliveries_made_meanwhile_wait_their_turn_so_every_socket_keeps_the_order(self) -> None:
        everyone = [s.user_id for s in self.readers]
        self.hub.emit_to_users(everyone, "new_message", {"n": 1})
        last = self.readers[-1]
        self.hub.emit_to_users([last.user_id], "new_message", {"n": 2})  # small, but behind the first
        self.hub.emit_to_users(everyone, "new_message", {"n": 3})
        self.assertEqual(last.received, [])
        while self.hub.queued_fanouts:
            self.clock.advance(0)
        self.assertEqual(last.events("new_message"), [{"n": 1}, {"n": 2}, {"n": 3}])
        self.assertEqual(self.readers[0].events("new_message"), [{"n": 1}, {"n": 3}])

    def test_small_deliveries_go_out_at_once(self) -> None:
        self.hub.emit_to_users([s.user_id for s in self.readers[:100]], "new_message", {"n": 1})
        self.assertEqual(self.reached(), 100)
        self.assertEqual(self.clock.getDelayedCalls(), [])
