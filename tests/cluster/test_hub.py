"""The hub: this node's sockets by user and by session, delivery to them, and ending a session."""

from __future__ import annotations

from twisted.trial import unittest

from tests.support.fakes import FakeSocket
from umoc.cluster.hub import Hub
from umoc.domain import notices


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

    def test_ending_a_session_tells_and_closes_only_its_sockets(self) -> None:
        for socket in (self.phone, self.laptop):
            self.hub.add(socket)
        self.hub.end_session("s1", "bye")
        self.assertEqual(self.phone.emitted, [("session_status", {"valid": False, "message": "bye"})])
        self.assertEqual(self.phone.disconnected, "session ended")
        self.assertEqual((self.laptop.emitted, self.laptop.disconnected), ([], None))
