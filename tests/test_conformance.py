"""Conformance mode over real sockets: what socket.io's two protocol test suites check.

The server under test is `umoc.conformance` (the production codec,
transports and Socket.IO layer with the suites' settings: pingInterval
300 ms, pingTimeout 200 ms, maxPayload 1000000, connect timeout 1 s),
listening on 127.0.0.1 port 0.  ``/engine.io/`` echoes Engine.IO messages;
``/socket.io/`` serves "/" and "/custom" and answers ``message`` /
``message-with-ack``.
"""

from __future__ import annotations

import json
from typing import Any

import treq
import websocket
from twisted.internet import reactor
from twisted.trial import unittest

from tests.support.deferreds import blocking, eventually, inline, sleep
from tests.support.rawclient import Polling, RawWebSocket
from umoc.conformance import build_conformance_site

PING_INTERVAL = 0.3
PING_TIMEOUT = 0.2
OPEN_KEYS = {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}


class ConformanceCase(unittest.TestCase):
    """Starts the conformance server; ``path`` picks the endpoint."""

    path = "engine.io"

    def setUp(self) -> None:
        site, self.engines = build_conformance_site(reactor)
        self.listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        port = self.listening.getHost().port
        self.base = f"http://127.0.0.1:{port}"
        self.ws_base = f"ws://127.0.0.1:{port}/{self.path}/?EIO=4"
        self.polling = Polling(self.base, self.path)
        self.sockets: list[RawWebSocket] = []
        self.addCleanup(self._shutdown)

    async def _shutdown(self) -> None:
        for sock in self.sockets:
            await blocking(sock.close)
        for engine in self.engines:
            engine.close_all()
        await self.listening.stopListening()
        await sleep(0.05)

    async def poll_held(self, sid: str) -> None:
        """Wait until the server holds a GET of ``sid``'s (a fixed sleep raced a loaded machine's reactor)."""

        def held() -> bool:
            session = next((e.sessions[sid] for e in self.engines if sid in e.sessions), None)
            return session is not None and getattr(session.transport, "_request", None) is not None

        self.assertTrue(await eventually(held), "the server holds the poll")

    async def upgraded_to_websocket(self, sid: str) -> None:
        """Wait until the server has taken the upgrade packet: the session runs over the WebSocket now."""

        def on_websocket() -> bool:
            session = next((e.sessions[sid] for e in self.engines if sid in e.sessions), None)
            return session is not None and session.transport.name == "websocket"

        self.assertTrue(await eventually(on_websocket), "the upgrade is complete")

    async def session_gone(self, sid: str) -> None:
        self.assertTrue(await eventually(lambda: all(sid not in e.sessions for e in self.engines)), "the session ended")

    async def ws(self, query: str = "&transport=websocket") -> RawWebSocket:
        sock = await blocking(RawWebSocket, self.ws_base + query)
        self.sockets.append(sock)
        return sock

    async def ws_open(self) -> tuple[RawWebSocket, dict[str, Any]]:
        """A WebSocket session and its OPEN packet."""
        sock = await self.ws()
        message = await blocking(sock.recv)
        assert isinstance(message, str) and message.startswith("0"), message
        return sock, json.loads(message[1:])


class EngineHandshakeTests(ConformanceCase):
    @inline
    async def test_polling_handshake_announces_the_suite_settings_and_websocket_upgrade(self) -> None:
        sid, opened = await self.polling.handshake()
        self.assertEqual(set(opened), OPEN_KEYS)
        self.assertIsInstance(sid, str)
        self.assertEqual(opened["upgrades"], ["websocket"])
        self.assertEqual((opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"]), (300, 200, 1000000))

    @inline
    async def test_bad_eio_or_transport_or_handshake_method_is_http_400(self) -> None:
        url = self.base + "/engine.io/"
        for query in ("?transport=polling", "?EIO=abc&transport=polling", "?EIO=4", "?EIO=4&transport=abc"):
            response = await treq.get(url + query, persistent=False)
            self.assertEqual(response.code, 400, query)
            self.assertIn("code", await response.json())
        for method in ("POST", "PUT"):
            response = await self.polling.request(method)
            self.assertEqual(response.code, 400)
            self.assertEqual(await response.json(), {"code": 2, "message": "Bad handshake method"})

    @inline
    async def test_websocket_handshake_has_no_upgrades(self) -> None:
        _, opened = await self.ws_open()
        self.assertEqual(set(opened), OPEN_KEYS)
        self.assertEqual(opened["upgrades"], [])
        self.assertEqual((opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"]), (300, 200, 1000000))

    @inline
    async def test_websocket_with_bad_eio_or_transport_is_refused(self) -> None:
        ws_root = self.ws_base.split("?")[0]
        for query in ("?transport=websocket", "?EIO=abc&transport=websocket", "?EIO=4", "?EIO=4&transport=abc"):
            with self.assertRaises(websocket.WebSocketBadStatusException):
                await blocking(RawWebSocket, ws_root + query)


class EngineMessageTests(ConformanceCase):
    @inline
    async def test_polling_echoes_one_several_and_binary_packets(self) -> None:
        for body in ("4hello", "4test1\x1e4test2\x1e4test3", "4hello\x1ebAQIDBA=="):
            sid, _ = await self.polling.handshake()
            self.assertEqual(await self.polling.post(sid, body), (200, "ok"))
            self.assertEqual(await self.polling.get(sid), (200, body))

    @inline
    async def test_polling_invalid_packet_closes_the_session(self) -> None:
        sid, _ = await self.polling.handshake()
        code, _ = await self.polling.post(sid, "abc")
        self.assertEqual(code, 400)
        code, body = await self.polling.get(sid)
        self.assertEqual((code, json.loads(body)), (400, {"code": 1, "message": "Session ID unknown"}))

    @inline
    async def test_duplicate_poll_closes_the_session(self) -> None:
        sid, _ = await self.polling.handshake()
        first = self.polling.get_deferred(sid)
        await self.poll_held(sid)
        second = await self.polling.get_deferred(sid, "&t=burst")
        first_response = await first
        self.assertEqual(second.code, 400)
        self.assertEqual((first_response.code, await first_response.text()), (200, "1"))
        self.assertEqual((await self.polling.get(sid))[0], 400)

    @inline
    async def test_aborted_poll_closes_the_session(self) -> None:
        sid, _ = await self.polling.handshake()
        pending = self.polling.get_deferred(sid)
        pending.addErrback(lambda f: None)
        await self.poll_held(sid)
        pending.cancel()
        await self.session_gone(sid)
        self.assertEqual((await self.polling.get(sid))[0], 400)

    @inline
    async def test_websocket_echoes_text_and_binary(self) -> None:
        sock, _ = await self.ws_open()
        await blocking(sock.send, "4hello")
        self.assertEqual(await blocking(sock.recv), "4hello")
        await blocking(sock.send, b"\x01\x02\x03\x04")
        self.assertEqual(await blocking(sock.recv), b"\x01\x02\x03\x04")

    @inline
    async def test_websocket_invalid_packet_closes(self) -> None:
        sock, _ = await self.ws_open()
        await blocking(sock.send, "abc")
        self.assertTrue(await blocking(sock.closed_within, 10))


class EngineHeartbeatAndCloseTests(ConformanceCase):
    @inline
    async def test_polling_ping_pong_keeps_the_session(self) -> None:
        sid, _ = await self.polling.handshake()
        for _ in range(3):
            self.assertEqual(await self.polling.get(sid), (200, "2"))
            self.assertEqual(await self.polling.post(sid, "3"), (200, "ok"))

    @inline
    async def test_polling_session_closes_on_ping_timeout(self) -> None:
        sid, _ = await self.polling.handshake()
        await sleep(PING_INTERVAL + PING_TIMEOUT)
        self.assertEqual((await self.polling.get(sid))[0], 400)

    @inline
    async def test_websocket_ping_pong_then_timeout(self) -> None:
        sock, _ = await self.ws_open()
        for _ in range(3):
            self.assertEqual(await blocking(sock.recv, 1), "2")
            await blocking(sock.send, "3")
        # Not answering the next ping ends the session.
        self.assertTrue(await blocking(sock.closed_within, 10))

    @inline
    async def test_polling_close_packet_releases_the_pending_get_with_noop(self) -> None:
        sid, _ = await self.polling.handshake()
        pending = self.polling.get_deferred(sid)
        await self.poll_held(sid)
        self.assertEqual(await self.polling.post(sid, "1"), (200, "ok"))
        response = await pending
        self.assertEqual((response.code, await response.text()), (200, "6"))
        self.assertEqual((await self.polling.get(sid))[0], 400)

    @inline
    async def test_websocket_close_packet_closes(self) -> None:
        sock, _ = await self.ws_open()
        await blocking(sock.send, "1")
        self.assertTrue(await blocking(sock.closed_within, 10))


class EngineUpgradeTests(ConformanceCase):
    async def upgraded(self, wait_probe: bool = True) -> tuple[str, RawWebSocket]:
        sid, _ = await self.polling.handshake()
        sock = await self.ws(f"&transport=websocket&sid={sid}")
        await blocking(sock.send, "2probe")
        if wait_probe:
            self.assertEqual(await blocking(sock.recv), "3probe")
        return sid, sock

    @inline
    async def test_upgrade_probe_noop_then_messages_over_websocket(self) -> None:
        sid, sock = await self.upgraded()
        self.assertEqual(await self.polling.get(sid), (200, "6"))
        await blocking(sock.send, "5")
        await blocking(sock.send, "4hello")
        self.assertEqual(await blocking(sock.recv), "4hello")

    @inline
    async def test_after_upgrade_polling_is_refused(self) -> None:
        sid, sock = await self.upgraded()
        await blocking(sock.send, "5")
        await self.upgraded_to_websocket(sid)
        self.assertEqual((await self.polling.get(sid))[0], 400)
        await blocking(sock.send, "4hello")
        self.assertEqual(await blocking(sock.recv), "4hello")

    @inline
    async def test_after_upgrade_a_second_websocket_for_the_sid_is_closed(self) -> None:
        sid, sock = await self.upgraded()
        await blocking(sock.send, "5")
        await self.upgraded_to_websocket(sid)
        second = await self.ws(f"&transport=websocket&sid={sid}")
        self.assertTrue(await blocking(second.closed_within, 10))
        await blocking(sock.send, "4hello")
        self.assertEqual(await blocking(sock.recv), "4hello")

    @inline
    async def test_a_probing_websocket_closes_with_its_session(self) -> None:
        sid, _ = await self.polling.handshake()
        sock = await self.ws(f"&transport=websocket&sid={sid}")
        # Nobody answers the pings: the session times out, and the probe goes with it.
        self.assertTrue(await blocking(sock.closed_within, 10))

    @inline
    async def test_a_bad_probe_is_refused_and_polling_carries_on(self) -> None:
        sid, _ = await self.polling.handshake()
        sock = await self.ws(f"&transport=websocket&sid={sid}")
        await blocking(sock.send, "4hello")
        self.assertTrue(await blocking(sock.closed_within, 10))
        self.assertEqual(await self.polling.post(sid, "4still polling"), (200, "ok"))
        self.assertEqual(await self.polling.get(sid), (200, "4still polling"))

    @inline
    async def test_probe_and_upgrade_sent_back_to_back(self) -> None:
        sid, sock = await self.upgraded(wait_probe=False)
        await blocking(sock.send, "5")
        self.assertEqual(await blocking(sock.recv), "3probe")
        self.assertEqual((await self.polling.get(sid))[0], 400)


class SocketConnectTests(ConformanceCase):
    path = "socket.io"

    async def connected(self, connect: str = "40", namespace_prefix: str = "40") -> tuple[RawWebSocket, Any, Any]:
        sock, _ = await self.ws_open()
        await blocking(sock.send, connect)
        handshake = await blocking(sock.recv_json_packet, namespace_prefix)
        auth = await blocking(sock.recv_json_packet, "42" + namespace_prefix[2:])
        return sock, handshake, auth

    @inline
    async def test_socketio_endpoint_speaks_engineio_too(self) -> None:
        sid, opened = await self.polling.handshake()
        self.assertEqual(opened["upgrades"], ["websocket"])
        for _ in range(2):
            self.assertEqual(await self.polling.get(sid), (200, "2"))
            self.assertEqual(await self.polling.post(sid, "3"), (200, "ok"))

    @inline
    async def test_connect_main_namespace_answers_sid_only_then_auth(self) -> None:
        _, handshake, auth = await self.connected()
        self.assertEqual(set(handshake), {"sid"})
        self.assertEqual(auth, ["auth", {}])
        _, _, auth = await self.connected('40{"token":"123"}')
        self.assertEqual(auth, ["auth", {"token": "123"}])

    @inline
    async def test_connect_custom_namespace(self) -> None:
        _, handshake, auth = await self.connected("40/custom,", "40/custom,")
        self.assertEqual(set(handshake), {"sid"})
        self.assertEqual(auth, ["auth", {}])
        _, _, auth = await self.connected('40/custom,{"token":"abc"}', "40/custom,")
        self.assertEqual(auth, ["auth", {"token": "abc"}])

    @inline
    async def test_unknown_namespace_gets_connect_error(self) -> None:
        sock, _ = await self.ws_open()
        await blocking(sock.send, "40/random")
        self.assertEqual(
            await blocking(sock.recv), '44/random,{"message":"Invalid namespace","data":{"code":"not_found"}}'
        )

    @inline
    async def test_invalid_handshake_or_none_closes(self) -> None:
        sock, _ = await self.ws_open()
        await blocking(sock.send, "4abc")
        self.assertTrue(await blocking(sock.closed_within, 10))
        silent, _ = await self.ws_open()
        # Answering pings keeps Engine.IO alive; only the connect timeout can close it.
        await blocking(silent.recv, 1)
        await blocking(silent.send, "3")
        self.assertTrue(await blocking(silent.closed_within, 10))


class SocketMessageTests(ConformanceCase):
    path = "socket.io"

    async def connected(self) -> RawWebSocket:
        sock, _ = await self.ws_open()
        await blocking(sock.send, "40")
        await blocking(sock.recv_json_packet, "40")
        await blocking(sock.recv_json_packet, "42")
        return sock

    @inline
    async def test_disconnect_main_namespace_keeps_the_engineio_session(self) -> None:
        sock = await self.connected()
        await blocking(sock.send, "41")
        self.assertEqual(await blocking(sock.recv, 1), "2")

    @inline
    async def test_custom_namespace_connect_and_disconnect_leave_main_working(self) -> None:
        sock = await self.connected()
        await blocking(sock.send, "40/custom")
        await blocking(sock.recv_json_packet, "40/custom,")
        await blocking(sock.recv_json_packet, "42/custom,")
        await blocking(sock.send, "41/custom")
        await blocking(sock.send, '42["message","message to main namespace"]')
        self.assertEqual(await blocking(sock.recv, 1, True), '42["message-back","message to main namespace"]')

    @inline
    async def test_message_back_and_acks_plain_and_binary(self) -> None:
        sock = await self.connected()
        await blocking(sock.send, '42["message",1,"2",{"3":[true]}]')
        self.assertEqual(await blocking(sock.recv, 1, True), '42["message-back",1,"2",{"3":[true]}]')
        await blocking(sock.send, '42456["message-with-ack",1,"2",{"3":[false]}]')
        self.assertEqual(await blocking(sock.recv, 1, True), '43456[1,"2",{"3":[false]}]')
        placeholders = '{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}'
        for head, answer in (('452-["message",', '452-["message-back",'), ('452-789["message-with-ack",', "462-789[")):
            await blocking(sock.send, head + placeholders + "]")
            await blocking(sock.send, b"\x01\x02\x03")
            await blocking(sock.send, b"\x04\x05\x06")
            self.assertEqual(await blocking(sock.recv, 1, True), answer + placeholders + "]")
            self.assertEqual(await blocking(sock.recv, 1, True), b"\x01\x02\x03")
            self.assertEqual(await blocking(sock.recv, 1, True), b"\x04\x05\x06")

    @inline
    async def test_invalid_socketio_packets_close_the_connection(self) -> None:
        for bad in ("4abc", "42{}", '42abc["message-with-ack",1,"2",{"3":[false]}]'):
            sock = await self.connected()
            await blocking(sock.send, bad)
            self.assertTrue(await blocking(sock.closed_within, 10), bad)

    @inline
    async def test_no_pid_in_conformance_mode(self) -> None:
        sock, _ = await self.ws_open()
        await blocking(sock.send, "40")
        self.assertNotIn("pid", await blocking(sock.recv_json_packet, "40"))
