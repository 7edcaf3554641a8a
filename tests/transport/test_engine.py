"""Engine.IO sessions on a fake clock: heartbeat, timeouts, closing."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from tests.support.fakes import FakeTransport, Recorder
from umoc.config import EngineIOConfig
from umoc.protocol.engineio import EnginePacket, EnginePacketType
from umoc.transport.engine import EngineServer


class EngineSessionTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.handler = Recorder()
        settings = EngineIOConfig(ping_interval=25, ping_timeout=20, max_sockets_per_ip=2)
        self.server = EngineServer(self.clock, settings, lambda session: self.handler)
        self.transport = FakeTransport()
        self.session = self.server.open(self.transport, "10.0.0.1", {}, {}, [])

    def test_open_packet_announces_the_configured_heartbeat(self) -> None:
        opened = self.transport.sent[0]
        self.assertEqual(opened.type, EnginePacketType.OPEN)
        self.assertIn('"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000', opened.data)
        self.assertIn(self.session.sid, opened.data)

    def test_server_pings_every_interval_and_pong_keeps_the_session(self) -> None:
        for _ in range(3):
            self.clock.advance(25)
            self.assertEqual(self.transport.sent[-1], EnginePacket(EnginePacketType.PING))
            self.clock.advance(19)
            self.session.on_frame("3")
        self.assertFalse(self.session.closed)

    def test_missing_pong_closes_the_session(self) -> None:
        self.clock.advance(25)
        self.clock.advance(20)
        self.assertTrue(self.session.closed)
        self.assertTrue(self.transport.closed)
        self.assertEqual(self.handler.closed_with, "ping timeout")
        self.assertNotIn(self.session.sid, self.server.sessions)

    def test_messages_reach_the_handler(self) -> None:
        self.session.on_frame('42["x"]')
        self.session.on_frame(b"\x01\x02")
        self.assertEqual(self.handler.messages, ['2["x"]', b"\x01\x02"])

    def test_close_packet_and_protocol_errors_end_the_session(self) -> None:
        self.session.on_frame("1")
        self.assertEqual(self.handler.closed_with, "client close")
        other = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        other.on_frame("7")
        self.assertTrue(other.closed)

    def test_closed_session_cancels_its_timers(self) -> None:
        self.session.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connections_per_ip_are_counted_and_released(self) -> None:
        self.assertTrue(self.server.may_open("10.0.0.1"))
        second = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        self.assertFalse(self.server.may_open("10.0.0.1"))
        second.close()
        self.assertTrue(self.server.may_open("10.0.0.1"))
