"""The Socket.IO layer: namespaces, binary events, disconnects, and the CONNECT deadline."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from tests.support.deferreds import blocking, inline, sleep
from tests.support.fakes import FakeTransport
from tests.support.server import ServerTestCase
from umoc.config import EngineIOConfig
from umoc.transport.engine import EngineServer
from umoc.transport.socketio import Identity, SocketIOConnection


class SocketIODetailsTests(ServerTestCase):
    @inline
    async def test_other_namespaces_get_invalid_namespace(self) -> None:
        _, sock, _ = await self.ws_user()
        await blocking(sock.send, '40/admin,{"token":"x"}')
        self.assertEqual(
            await blocking(sock.recv, 5, True), '44/admin,{"message":"Invalid namespace","data":{"code":"not_found"}}'
        )

    @inline
    async def test_binary_events_are_dispatched_and_unknown_ones_get_error(self) -> None:
        _, sock, _ = await self.ws_user()
        await blocking(sock.send, '451-["ping",{"timestamp":5,"blob":{"_placeholder":true,"num":0}}]')
        await blocking(sock.send, b"\x00\x01")
        self.assertEqual((await blocking(sock.recv_json_packet, "42"))[0:1], ["pong"])
        await blocking(sock.send, '451-["nope",{"_placeholder":true,"num":0}]')
        await blocking(sock.send, b"\x02")
        self.assertEqual(
            await blocking(sock.recv_json_packet, "42"),
            ["error", {"message": "Unknown event 'nope'", "code": "unknown_event"}],
        )

    @inline
    async def test_binary_events_over_polling(self) -> None:
        _, polling, sid = await self.polling_user()
        body = '451-["nope",{"_placeholder":true,"num":0}]\x1ebAQID'
        self.assertEqual(await polling.post(sid, body), (200, "ok"))
        code, body = await polling.get(sid)
        self.assertEqual((code, body), (200, '42["error",{"message":"Unknown event \'nope\'","code":"unknown_event"}]'))

    @inline
    async def test_client_disconnect_keeps_the_engineio_session(self) -> None:
        login, sock, _ = await self.ws_user()
        await blocking(sock.send, "41")
        await sleep(0.05)
        auth = {"sessionID": login["sessionID"], "token": login["token"]}
        await blocking(sock.send, "40" + json.dumps(auth))
        self.assertIn("sid", await blocking(sock.recv_json_packet, "40"))
        self.assertEqual((await blocking(sock.recv_json_packet, "42"))[0], "connection_successful")

    @inline
    async def test_server_disconnect_over_websocket_sends_disconnect_then_closes(self) -> None:
        login, sock, _ = await self.ws_user()
        self.server.services.sessions.end(login["sessionID"], "bye")
        status = await blocking(sock.recv_json_packet, "42")
        self.assertEqual(status, ["session_status", {"valid": False, "message": "bye"}])
        self.assertEqual(await blocking(sock.recv, 5, True), "41")
        self.assertTrue(await blocking(sock.closed_within, 3))

    @inline
    async def test_server_disconnect_reaches_a_polling_client_that_was_not_polling(self) -> None:
        login, polling, sid = await self.polling_user()
        self.server.services.sessions.end(login["sessionID"], "bye")
        code, body = await polling.get(sid)
        self.assertEqual(code, 200)
        self.assertEqual(body.split("\x1e"), ['42["session_status",{"valid":false,"message":"bye"}]', "41", "1"])
        self.assertEqual((await polling.get(sid))[0], 400)


class AcceptingApp:
    """Accepts CONNECT when told to; enough of a SocketApp for the deadline."""

    namespaces = frozenset({"/"})

    def __init__(self) -> None:
        self.pending: list[defer.Deferred] = []

    def authenticate(self, connection: Any, auth: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.pending.append(d)
        return d

    def on_connect(self, socket: Any) -> None:
        pass

    def on_event(self, *args: Any) -> None:
        pass

    def on_disconnect(self, socket: Any, reason: str) -> None:
        pass


class ConnectTimeoutTests(unittest.TestCase):
    def setUp(self) -> None:
        self.identity = Identity(1, "alice", "s", 0.0)
        self.clock = Clock()
        self.app = AcceptingApp()
        settings = dataclasses.replace(EngineIOConfig(), connect_timeout=45, ping_interval=1000, ping_timeout=1000)
        self.server = EngineServer(self.clock, settings, lambda s: SocketIOConnection(s, self.app))

    def test_unauthenticated_session_closes_at_connect_timeout(self) -> None:
        session = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        self.clock.advance(44.9)
        self.assertFalse(session.closed)
        self.clock.advance(0.1)
        self.assertTrue(session.closed)
        self.assertEqual(self.server.sessions, {})

    def test_connect_still_being_checked_at_the_deadline_does_not_save_the_session(self) -> None:
        session = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        session.on_frame("40")
        self.clock.advance(45)
        self.assertTrue(session.closed)

    def test_session_left_with_no_socket_gets_a_new_deadline(self) -> None:
        session = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        session.on_frame("40")
        self.app.pending[0].callback(self.identity)
        self.clock.advance(100)
        session.on_frame("41")
        self.clock.advance(44)
        self.assertFalse(session.closed)
        self.clock.advance(1)
        self.assertTrue(session.closed)

    def test_deadline_after_the_first_ping_is_kept_by_the_pings_without_a_timer_of_its_own(self) -> None:
        self.server.settings = dataclasses.replace(self.server.settings, ping_interval=25, ping_timeout=20)
        quiet = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        welcomed = self.server.open(FakeTransport(), "10.0.0.2", {}, {}, [])
        welcomed.on_frame("40")
        self.app.pending[0].callback(self.identity)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)  # each session's PING, nothing else
        for seconds in (25, 10, 9.9):  # the PING, answered; the deadline set by it is 45 s from the open
            self.clock.advance(seconds)
            quiet.on_frame("3")
            welcomed.on_frame("3")
        self.assertFalse(quiet.closed)
        self.clock.advance(0.1)
        self.assertEqual((quiet.closed, welcomed.closed), (True, False))

    def test_a_slow_pong_does_not_push_the_deadline_back(self) -> None:
        self.server.settings = dataclasses.replace(
            self.server.settings, connect_timeout=60, ping_interval=25, ping_timeout=20
        )
        session = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        self.clock.advance(25 + 19)  # the first PING, answered just in time: the next comes at 69 s
        session.on_frame("3")
        self.clock.advance(15.9)
        self.assertFalse(session.closed)
        self.clock.advance(0.1)
        self.assertTrue(session.closed)

    def test_accepted_session_outlives_the_deadline(self) -> None:
        session = self.server.open(FakeTransport(), "10.0.0.1", {}, {}, [])
        session.on_frame("40")
        self.app.pending[0].callback(self.identity)
        self.clock.advance(900)  # well past the deadline, short of the first heartbeat
        self.assertFalse(session.closed)
