"""Malformed input over a raw WebSocket: an `error` event or a clean close of that one connection."""

from __future__ import annotations

import json
from typing import Any

import websocket

from tests.support import ServerTestCase, blocking, inline


class RawSocket:
    """A bare WebSocket speaking Engine.IO by hand (websocket-client, used from a thread)."""

    def __init__(self, port: int, login: dict[str, Any]) -> None:
        url = (f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
               f"&sessionID={login['sessionID']}&token={login['token']}")
        self.ws = websocket.create_connection(url, timeout=5)

    def handshake(self) -> None:
        opened = self.ws.recv()
        assert opened.startswith("0{"), opened
        self.ws.send("40")
        assert self.ws.recv().startswith("40{"), "CONNECT not accepted"
        assert self.ws.recv().startswith('42["connection_successful"')

    def send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self.ws.send_binary(data)
        else:
            self.ws.send(data)

    def next_event(self) -> tuple[str, Any]:
        """The next Socket.IO event, skipping pings; raises on close."""
        while True:
            frame = self.ws.recv()
            if frame == "2":
                self.ws.send("3")
                continue
            if not frame:
                raise ConnectionError("closed")
            assert frame.startswith("42"), frame
            name, *args = json.loads(frame[2:])
            return name, args[0] if args else None

    def closed(self) -> bool:
        """True when the server has closed the connection (nothing but a close arrives)."""
        try:
            while True:
                frame = self.ws.recv()
                if frame in ("", b"", None):
                    return True
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return True
        except websocket.WebSocketTimeoutException:
            return False


class MalformedInputTests(ServerTestCase):
    async def raw(self, username: str) -> RawSocket:
        login = await self.server.user(username)
        sock = await blocking(RawSocket, self.server.port, login)
        self.addCleanup(sock.ws.close)
        await blocking(sock.handshake)
        return sock

    async def assert_others_unaffected(self) -> None:
        _, bystander = await self.connected_user("bystander")
        pong = await bystander.call("ping", {"timestamp": 1})
        self.assertEqual(pong["timestamp"], 1)

    @inline
    async def test_wrong_payload_types_get_error_events(self) -> None:
        sock = await self.raw("alice")
        for frame in ['42["ping","a string"]', '42["ping",{"timestamp":"x"}]', '42["ping",null,1,2]',
                      '42["nope",{}]', '42["ping",{"timestamp":1,"sessionID":5}]']:
            await blocking(sock.send, frame)
            name, payload = await blocking(sock.next_event)
            self.assertEqual(name, "error", frame)
            self.assertIsInstance(payload["message"], str)
        await blocking(sock.send, '42["ping",{"timestamp":7}]')
        self.assertEqual(await blocking(sock.next_event), ("pong", unittest_any_pong(7)))

    @inline
    async def test_not_json_closes_only_that_connection(self) -> None:
        sock = await self.raw("alice")
        await blocking(sock.send, "42not json at all")
        self.assertTrue(await blocking(sock.closed))
        await self.assert_others_unaffected()

    @inline
    async def test_unknown_packet_types_close_only_that_connection(self) -> None:
        for i, frame in enumerate(["9", "49", "4", "", "1x", "2"]):
            sock = await self.raw(f"user{i}")
            await blocking(sock.send, frame)
            self.assertTrue(await blocking(sock.closed), frame)
        await self.assert_others_unaffected()

    @inline
    async def test_binary_garbage_closes_only_that_connection(self) -> None:
        sock = await self.raw("alice")
        await blocking(sock.send, b"\x00\xff\xfe garbage")
        self.assertTrue(await blocking(sock.closed))
        await self.assert_others_unaffected()

    @inline
    async def test_deeply_nested_json_closes_only_that_connection(self) -> None:
        sock = await self.raw("alice")
        await blocking(sock.send, '42["ping",' + "[" * 50000 + "]" * 50000 + "]")
        self.assertTrue(await blocking(sock.closed))
        await self.assert_others_unaffected()

    @inline
    async def test_frame_over_max_payload_closes_only_that_connection(self) -> None:
        sock = await self.raw("alice")
        await blocking(sock.send, '42["ping",{"timestamp":1,"pad":"' + "x" * 1_100_000 + '"}]')
        self.assertTrue(await blocking(sock.closed))
        await self.assert_others_unaffected()

    @inline
    async def test_unauthenticated_websocket_gets_connect_error(self) -> None:
        ws = await blocking(websocket.create_connection,
                            f"ws://127.0.0.1:{self.server.port}/socket.io/?EIO=4&transport=websocket", timeout=5)
        self.addCleanup(ws.close)
        self.assertTrue((await blocking(ws.recv)).startswith("0{"))
        await blocking(ws.send, "40")
        answer = await blocking(ws.recv)
        self.assertTrue(answer.startswith("44{"), answer)
        self.assertIn("message", json.loads(answer[2:]))


class unittest_any_pong(dict):
    """Matches a pong payload for a given timestamp, whatever the server time."""

    def __init__(self, timestamp: int) -> None:
        super().__init__(timestamp=timestamp)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and other.get("timestamp") == self["timestamp"] and set(other) == {
            "timestamp", "server_time", "latency"}
