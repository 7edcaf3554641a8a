"""Long-polling: held GETs, heartbeat and close on a fake clock; the payload limit over real HTTP."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from tests.support.deferreds import inline
from tests.support.fakes import Recorder
from tests.support.rawclient import Polling
from tests.support.server import ServerTestCase
from umoc.config import EngineIOConfig, parse_config
from umoc.transport.cors import Cors
from umoc.transport.engine import EngineServer, EngineSession, Outgoing
from umoc.transport.gate import Gatekeeper
from umoc.transport.polling import PollingResource


def request(method: bytes = b"GET", sid: str | None = None, body: bytes = b"") -> DummyRequest:
    req = DummyRequest([b""])
    req.method = method
    req.args = {b"EIO": [b"4"], b"transport": [b"polling"]}
    if sid is not None:
        req.args[b"sid"] = [sid.encode()]
    req.content = io.BytesIO(body)
    req.client = IPv4Address("TCP", "127.0.0.1", 40000)
    return req


def body(req: DummyRequest) -> str:
    return b"".join(req.written).decode()


class PollingTests(unittest.TestCase):
    settings: EngineIOConfig = parse_config({}).engineio

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.engine = EngineServer(self.clock, self.settings, Recorder)
        gate = Gatekeeper()
        self.polling = PollingResource(self.engine, gate, Cors(gate))

    def handshake(self) -> str:
        req = request()
        self.polling.render(req)
        self.assertEqual(req.finished, 1)
        return json.loads(body(req)[1:])["sid"]

    def get(self, sid: str) -> DummyRequest:
        req = request(sid=sid)
        self.polling.render(req)
        return req

    def post(self, sid: str, data: str) -> tuple[Any, DummyRequest]:
        req = request(b"POST", sid, data.encode())
        result = self.polling.render(req)
        return result, req

    def session(self, sid: str) -> EngineSession:
        return self.engine.sessions[sid]

    def test_get_is_held_until_the_ping_at_ping_interval(self) -> None:
        sid = self.handshake()
        held = self.get(sid)
        self.clock.advance(self.settings.ping_interval - 0.1)
        self.assertEqual(held.finished, 0)
        self.clock.advance(0.1)
        self.assertEqual((held.finished, body(held)), (1, "2"))

    def test_frames_sent_while_no_get_is_pending_wait_for_the_next_one(self) -> None:
        sid = self.handshake()
        session = self.session(sid)
        session.send(Outgoing(['42["a"]']))
        session.send(Outgoing([b"\x01\x02"]))
        req = self.get(sid)
        self.assertEqual(body(req), '42["a"]\x1ebAQI=')

    def test_pong_by_post_keeps_the_session_and_missing_pong_ends_it(self) -> None:
        sid = self.handshake()
        self.clock.advance(self.settings.ping_interval)
        self.assertEqual(body(self.get(sid)), "2")
        self.assertEqual(body(self.post(sid, "3")[1]), "ok")
        self.clock.advance(self.settings.ping_interval + self.settings.ping_timeout - 0.1)
        self.assertIn(sid, self.engine.sessions)
        self.clock.advance(0.2)
        self.assertNotIn(sid, self.engine.sessions)
        late = self.get(sid)
        self.assertEqual(late.responseCode, 400)

    def test_post_hands_messages_to_the_handler_in_order(self) -> None:
        sid = self.handshake()
        _, req = self.post(sid, "4one\x1e4two\x1ebAQI=")
        self.assertEqual(body(req), "ok")
        handler = self.session(sid).handler
        assert isinstance(handler, Recorder)
        self.assertEqual(handler.messages, ["one", "two", b"\x01\x02"])

    def test_server_close_leaves_leftovers_for_one_last_get_then_forgets_the_sid(self) -> None:
        sid = self.handshake()
        session = self.session(sid)
        session.send(Outgoing(["41"]))
        session.close("session ended")
        self.assertEqual(body(self.get(sid)), "41\x1e1")
        self.assertEqual(self.get(sid).responseCode, 400)

    def test_leftovers_are_dropped_after_the_grace_period(self) -> None:
        sid = self.handshake()
        self.session(sid).close("session ended")
        self.clock.advance(self.settings.ping_timeout)
        self.assertEqual(self.get(sid).responseCode, 400)

    def test_aborted_get_ends_the_session(self) -> None:
        sid = self.handshake()
        held = self.get(sid)
        held.processingFailed(Exception("connection lost"))
        self.assertNotIn(sid, self.engine.sessions)

    def test_a_client_that_never_polls_is_dropped_past_max_buffered(self) -> None:
        sid = self.handshake()
        session = self.session(sid)
        chunk = Outgoing(["4" + "x" * 100_000])
        for _ in range(self.settings.max_buffered // 100_000 + 2):
            session.send(chunk)
        self.assertTrue(session.closed)
        self.assertEqual(self.get(sid).responseCode, 400)


class PollingLimitTests(ServerTestCase):
    config_overrides = {"engineio": {"max_payload": "2K"}}

    @inline
    async def test_polling_post_larger_than_max_payload_is_refused_and_ends_the_session(self) -> None:
        polling = Polling(self.server.url)
        sid, opened = await polling.handshake()
        self.assertEqual(opened["maxPayload"], 2048)
        code, _ = await polling.post(sid, "4" + "x" * 3000)
        self.assertEqual(code, 413)
        self.assertEqual((await polling.get(sid))[0], 400)
