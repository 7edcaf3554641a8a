"""UMOC's transports end to end: polling, upgrade, Socket.IO details, CORS, limits."""

from __future__ import annotations

import json
from typing import Any

import treq

from tests.rawclient import Polling, RawWebSocket
from tests.support import ServerTestCase, blocking, for_each_backend, inline, sleep


class StockClientTestsMixin:
    """python-socketio with its default transports (polling, then upgrade) and with polling only."""

    async def walk(self, transports: list[str]) -> Any:
        login, client = await self.connected_user("alice", transports=transports)
        status = await client.call("verify_session", client.with_session(token=login["token"]))
        self.assertEqual(status, {"valid": True, "expires_at": login["expires_at"]})
        self.assertEqual(await client.expect("session_status"), status)
        pong = await client.call("ping", client.with_session(timestamp=1636750000000))
        self.assertEqual(pong["timestamp"], 1636750000000)
        self.assertEqual((await client.expect("pong"))["timestamp"], 1636750000000)
        await client.emit("ping", client.with_session(timestamp=7))
        self.assertEqual((await client.expect("pong"))["timestamp"], 7)
        return login, client

    @inline
    async def test_default_transports_start_polling_and_upgrade(self) -> None:
        _, client = await self.walk(["polling", "websocket"])
        self.assertEqual(client.sio.transport(), "websocket")

    @inline
    async def test_polling_only_client_walks_the_session_events(self) -> None:
        _, client = await self.walk(["polling"])
        self.assertEqual(client.sio.transport(), "polling")

    @inline
    async def test_logout_disconnects_a_polling_client(self) -> None:
        login, client = await self.walk(["polling"])
        code, _ = await self.server.post("/api/logout", {"sessionID": login["sessionID"], "token": login["token"]})
        self.assertEqual(code, 200)
        self.assertFalse((await client.expect("session_status"))["valid"])
        for _ in range(50):
            # Wait for python-engineio's threads too: they still send a CLOSE.
            if not client.sio.connected and client.sio.eio.state == "disconnected":
                break
            await sleep(0.1)
        self.assertFalse(client.sio.connected)
        await sleep(0.1)


for_each_backend(StockClientTestsMixin, ServerTestCase, globals())


class RawSocketCase(ServerTestCase):
    """Wire-level access to the real UMOC server."""

    async def open_ws(self, query: str = "") -> RawWebSocket:
        url = self.server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket" + query
        sock = await blocking(RawWebSocket, url)
        self.addCleanup(blocking, sock.close)
        opened = await blocking(sock.recv)
        assert isinstance(opened, str) and opened.startswith("0")
        return sock

    async def ws_user(self, name: str = "alice") -> tuple[dict[str, Any], RawWebSocket, dict[str, Any]]:
        login = await self.server.user(name)
        sock = await self.open_ws()
        auth = {"sessionID": login["sessionID"], "token": login["token"]}
        await blocking(sock.send, "40" + json.dumps(auth))
        answer = await blocking(sock.recv_json_packet, "40")
        hello = await blocking(sock.recv_json_packet, "42")
        self.assertEqual(hello[0], "connection_successful")
        return login, sock, answer

    async def polling_user(self, name: str = "alice") -> tuple[dict[str, Any], Polling, str]:
        """A user connected over long-polling, ``connection_successful`` already read."""
        login = await self.server.user(name)
        polling = Polling(self.server.url)
        sid, _ = await polling.handshake()
        auth = json.dumps({"sessionID": login["sessionID"], "token": login["token"]})
        self.assertEqual(await polling.post(sid, "40" + auth), (200, "ok"))
        received = ""
        while "connection_successful" not in received:
            received += (await polling.get(sid))[1]
        return login, polling, sid


class SocketIODetailsTests(RawSocketCase):
    @inline
    async def test_other_namespaces_get_invalid_namespace(self) -> None:
        _, sock, _ = await self.ws_user()
        await blocking(sock.send, '40/admin,{"token":"x"}')
        self.assertEqual(await blocking(sock.recv, 5, True), '44/admin,{"message":"Invalid namespace"}')

    @inline
    async def test_binary_events_are_dispatched_and_unknown_ones_get_error(self) -> None:
        _, sock, _ = await self.ws_user()
        await blocking(sock.send, '451-["ping",{"timestamp":5,"blob":{"_placeholder":true,"num":0}}]')
        await blocking(sock.send, b"\x00\x01")
        self.assertEqual((await blocking(sock.recv_json_packet, "42"))[0:1], ["pong"])
        await blocking(sock.send, '451-["nope",{"_placeholder":true,"num":0}]')
        await blocking(sock.send, b"\x02")
        self.assertEqual(await blocking(sock.recv_json_packet, "42"), ["error", {"message": "Unknown event 'nope'"}])

    @inline
    async def test_binary_events_over_polling(self) -> None:
        _, polling, sid = await self.polling_user()
        body = '451-["nope",{"_placeholder":true,"num":0}]\x1ebAQID'
        self.assertEqual(await polling.post(sid, body), (200, "ok"))
        code, body = await polling.get(sid)
        self.assertEqual((code, body), (200, '42["error",{"message":"Unknown event \'nope\'"}]'))

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


class UpgradeWithoutLossTests(RawSocketCase):
    @inline
    async def test_events_around_the_upgrade_arrive_once_in_order(self) -> None:
        login, polling, sid = await self.polling_user()
        hub = self.server.services.hub

        def emit(n: int) -> None:
            hub.emit_to_users([login["user_id"]], "new_message", {"n": n})

        seen: list[int] = []
        pending = polling.get_deferred(sid)
        emit(1)
        response = await pending
        seen += [json.loads(p[2:])[1]["n"] for p in (await response.text()).split("\x1e") if p.startswith("42")]
        pending = polling.get_deferred(sid)
        await sleep(0.02)
        sock = await blocking(
            RawWebSocket, self.server.url.replace("http", "ws") + f"/socket.io/?EIO=4&transport=websocket&sid={sid}"
        )
        self.addCleanup(blocking, sock.close)
        await blocking(sock.send, "2probe")
        self.assertEqual(await blocking(sock.recv), "3probe")
        response = await pending
        self.assertEqual(await response.text(), "6")
        emit(2)
        emit(3)  # queued for polling while the client has paused it
        await blocking(sock.send, "5")
        await sleep(0.02)
        emit(4)
        for _ in range(3):
            packet = await blocking(sock.recv_json_packet, "42")
            seen.append(packet[1]["n"])
        self.assertEqual(seen, [1, 2, 3, 4])
        self.assertEqual((await polling.get(sid))[0], 400)
        second = await blocking(
            RawWebSocket, self.server.url.replace("http", "ws") + f"/socket.io/?EIO=4&transport=websocket&sid={sid}"
        )
        self.addCleanup(blocking, second.close)
        self.assertTrue(await blocking(second.closed_within, 3))


class LimitsAndCorsTests(ServerTestCase):
    config_overrides = {
        "server": {"allowed_origins": ["https://chat.example"]},
        "engineio": {"max_payload": "2K"},
    }

    @inline
    async def test_polling_post_larger_than_max_payload_is_refused_and_ends_the_session(self) -> None:
        polling = Polling(self.server.url)
        sid, opened = await polling.handshake()
        self.assertEqual(opened["maxPayload"], 2048)
        code, _ = await polling.post(sid, "4" + "x" * 3000)
        self.assertEqual(code, 413)
        self.assertEqual((await polling.get(sid))[0], 400)

    @inline
    async def test_allowed_origin_gets_cors_headers_on_polling_and_api(self) -> None:
        origin = {"Origin": ["https://chat.example"]}
        polling = Polling(self.server.url)
        response = await polling.request("GET", headers=origin)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Origin"), ["https://chat.example"])
        self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Credentials"), ["true"])
        await response.text()
        await self.server.register("alice")
        response = await treq.post(self.server.url + "/api/login", headers=origin, persistent=False,
                                   json={"username": "alice", "password": "correct horse battery"})
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Origin"), ["https://chat.example"])
        await response.text()

    @inline
    async def test_preflight_is_answered_for_allowed_origins_only(self) -> None:
        asked = {"Origin": ["https://chat.example"], "Access-Control-Request-Method": ["POST"],
                 "Access-Control-Request-Headers": ["content-type"]}
        for path in ("/socket.io/?EIO=4&transport=polling", "/api/login"):
            response = await treq.request("OPTIONS", self.server.url + path, headers=asked, persistent=False)
            self.assertEqual(response.code, 204, path)
            self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Origin"), ["https://chat.example"])
            self.assertIn("POST", response.headers.getRawHeaders("Access-Control-Allow-Methods")[0])
            self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Headers"), ["content-type"])
            await response.text()
            evil = {**asked, "Origin": ["https://evil.example"]}
            response = await treq.request("OPTIONS", self.server.url + path, headers=evil, persistent=False)
            self.assertEqual(response.code, 403, path)
            self.assertIsNone(response.headers.getRawHeaders("Access-Control-Allow-Origin"))
            await response.text()

    @inline
    async def test_polling_handshake_from_a_foreign_origin_is_forbidden(self) -> None:
        response = await Polling(self.server.url).request("GET", headers={"Origin": ["https://evil.example"]})
        self.assertEqual(response.code, 403)
        self.assertEqual(await response.json(), {"code": 4, "message": "Forbidden"})
