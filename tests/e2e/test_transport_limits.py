"""Transport limits end to end, over raw WebSockets that do what a well-behaved client never would.

Oversized frames, deep JSON, too many sockets, a socket that never sends
CONNECT or never reads, and foreign origins.
"""

from __future__ import annotations

import socketio
import websocket

from tests.support.deferreds import blocking, inline, sleep
from tests.support.server import ServerTestCase


class TransportLimitTests(ServerTestCase):
    config_overrides = {
        "engineio": {
            "max_payload": "4K",
            "max_sockets_per_session": 2,
            "max_sockets_per_ip": 6,
            "max_buffered": "256K",
            "connect_timeout": "0.3s",
        },
    }

    @inline
    async def test_frame_over_max_payload_closes_only_that_connection(self) -> None:
        _, good = await self.connected_user("alice")
        ws = await self.open_websocket()
        await blocking(ws.send, "4" + "x" * 5000)
        self.assertEqual(await blocking(ws.close_code), 1009)
        self.assertEqual((await good.call("ping", {"timestamp": 7}))["timestamp"], 7)

    @inline
    async def test_json_nested_too_deeply_closes_that_connection_cleanly(self) -> None:
        login, good = await self.connected_user("alice")
        ws = await self.open_websocket(await self.server.login("alice"))
        await blocking(ws.socketio_connect)
        depth = self.server.services.config.messages.max_payload_depth + 10
        await blocking(ws.send, '42["ping",' + "[" * depth + "]" * depth + "]")
        self.assertEqual(await blocking(ws.close_code), 1000)
        self.assertEqual((await good.call("ping", {"timestamp": 8}))["timestamp"], 8)

    @inline
    async def test_sockets_per_session_are_limited(self) -> None:
        login, _ = await self.connected_user("alice")
        await self.connect(login)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            await self.connect(login)

    @inline
    async def test_socket_that_never_sends_connect_is_closed_after_connect_timeout(self) -> None:
        ws = await self.open_websocket()
        self.assertEqual(await blocking(ws.close_code), 1000)
        self.assertEqual(self.server.service.node.engine.sessions, {})

    @inline
    async def test_client_that_does_not_read_is_dropped_and_others_keep_getting_replies(self) -> None:
        slow_login = await self.server.user("slowpoke")
        ws = await self.open_websocket(slow_login, rcvbuf=4096)
        await blocking(ws.socketio_connect)  # from here on it never reads again
        fast_login, fast = await self.connected_user("quick")
        hub = self.server.services.hub
        slow_id, fast_id = slow_login["user_id"], fast_login["user_id"]
        chunk = "x" * 8192
        replies = 0
        for batch in range(400):
            if not hub.is_local(slow_id):
                break
            for _ in range(20):
                hub.emit_to_users([slow_id], "flood", chunk)
            await sleep(0.005)
            if batch % 10 == 0:
                self.assertEqual((await fast.call("ping", {"timestamp": batch}))["timestamp"], batch)
                replies += 1
        self.assertFalse(hub.is_local(slow_id), "the slow reader was never dropped")
        self.assertTrue(hub.is_local(fast_id))
        self.assertEqual((await fast.call("ping", {"timestamp": 1}))["timestamp"], 1)
        self.assertGreater(replies, 0)


class OriginTests(ServerTestCase):
    """(python-socketio's client sends its own Origin, so these run in a class of their own.)"""

    config_overrides = {"server": {"allowed_origins": ["https://chat.example"]}}

    @inline
    async def test_websocket_from_a_foreign_origin_is_403(self) -> None:
        with self.assertRaises(websocket.WebSocketBadStatusException) as caught:
            await self.open_websocket(origin="https://evil.example")
        self.assertEqual(caught.exception.status_code, 403)
        await self.open_websocket(origin="https://chat.example")

    @inline
    async def test_api_from_a_foreign_origin_is_403_and_changes_nothing(self) -> None:
        body = {"username": "alice", "password": "correct horse battery"}
        code, answer = await self.server.post("/api/register", body, headers={"Origin": "https://evil.example"})
        self.assertEqual((code, answer), (403, {"error": "Origin not allowed", "code": "forbidden"}))
        code, _ = await self.server.post("/api/register", body, headers={"Origin": "https://chat.example"})
        self.assertEqual(code, 201)
        code, _ = await self.server.post("/api/login", body)  # no Origin: not a browser
        self.assertEqual(code, 200)

    @inline
    async def test_stock_python_socketio_client_connects_over_websocket(self) -> None:
        _, client = await self.connected_user("alice")  # transports=["websocket"] only
        self.assertEqual(client.sio.transport(), "websocket")
        _, upgraded = await self.connected_user("bob", transports=["polling", "websocket"])
        for _ in range(50):
            if upgraded.sio.transport() == "websocket":
                break
            await sleep(0.1)
        self.assertEqual(upgraded.sio.transport(), "websocket")

    @inline
    async def test_the_servers_own_origin_is_allowed_and_only_that(self) -> None:
        port = self.server.port
        await self.open_websocket(origin=f"http://127.0.0.1:{port}")
        for other in (f"http://127.0.0.1:{port + 1}", f"https://127.0.0.1:{port}", f"http://localhost:{port}"):
            with self.assertRaises(websocket.WebSocketBadStatusException) as caught:
                await self.open_websocket(origin=other)
            self.assertEqual(caught.exception.status_code, 403, other)
        body = {"username": "carol", "password": "correct horse battery"}
        code, _ = await self.server.post("/api/register", body, headers={"Origin": f"http://127.0.0.1:{port}"})
        self.assertEqual(code, 201)

    @inline
    async def test_own_origin_behind_a_tls_proxy(self) -> None:
        port = self.server.port
        body = {"username": "dave", "password": "correct horse battery"}
        headers = {"Origin": f"https://127.0.0.1:{port}", "X-Forwarded-Proto": "https"}
        code, _ = await self.server.post("/api/register", body, headers=headers)
        self.assertEqual(code, 201)


class SocketsPerIpTests(ServerTestCase):
    """Apart from `TransportLimitTests`: its 0.3 s connect_timeout closed the first of these sockets (which never
    send CONNECT) while a loaded machine was still opening the sixth, and the seventh was let in."""

    config_overrides = {"engineio": {"max_sockets_per_ip": 6, "connect_timeout": "30s"}}

    @inline
    async def test_sockets_per_ip_are_limited_with_429(self) -> None:
        for _ in range(6):
            await self.open_websocket()
        with self.assertRaises(websocket.WebSocketBadStatusException) as caught:
            await self.open_websocket()
        self.assertEqual(caught.exception.status_code, 429)
