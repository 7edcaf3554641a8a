"""Malformed input over a raw WebSocket: an `error` event or a clean close of that one connection."""

from __future__ import annotations

import json

from tests.support.deferreds import blocking, inline
from tests.support.rawclient import RawWebSocket
from tests.support.server import ServerTestCase


class MalformedInputTests(ServerTestCase):
    async def raw(self, username: str) -> RawWebSocket:
        sock = await self.open_websocket(await self.server.user(username))
        await blocking(sock.socketio_connect)
        return sock

    async def assert_others_unaffected(self) -> None:
        _, bystander = await self.connected_user("bystander")
        pong = await bystander.call("ping", {"timestamp": 1})
        self.assertEqual(pong["timestamp"], 1)

    @inline
    async def test_wrong_payload_types_get_error_events(self) -> None:
        sock = await self.raw("alice")
        for frame in [
            '42["ping","a string"]',
            '42["ping",{"timestamp":"x"}]',
            '42["ping",null,1,2]',
            '42["nope",{}]',
            '42["ping",{"timestamp":1,"sessionID":5}]',
        ]:
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
        self.assertTrue(await blocking(sock.closed_within, 5))
        await self.assert_others_unaffected()

    @inline
    async def test_unknown_packet_types_close_only_that_connection(self) -> None:
        for i, frame in enumerate(["9", "49", "4", "", "1x", "2"]):
            sock = await self.raw(f"user{i}")
            await blocking(sock.send, frame)
            self.assertTrue(await blocking(sock.closed_within, 5), frame)
        await self.assert_others_unaffected()

    @inline
    async def test_binary_garbage_closes_only_that_connection(self) -> None:
        sock = await self.raw("alice")
        await blocking(sock.send, b"\x00\xff\xfe garbage")
        self.assertTrue(await blocking(sock.closed_within, 5))
        await self.assert_others_unaffected()

    @inline
    async def test_deeply_nested_json_closes_only_that_connection(self) -> None:
        sock = await self.raw("alice")
        await blocking(sock.send, '42["ping",' + "[" * 50000 + "]" * 50000 + "]")
        self.assertTrue(await blocking(sock.closed_within, 5))
        await self.assert_others_unaffected()

    @inline
    async def test_frame_over_max_payload_closes_only_that_connection(self) -> None:
        sock = await self.raw("alice")
        await blocking(sock.send, '42["ping",{"timestamp":1,"pad":"' + "x" * 1_100_000 + '"}]')
        self.assertTrue(await blocking(sock.closed_within, 5))
        await self.assert_others_unaffected()

    @inline
    async def test_unauthenticated_websocket_gets_connect_error(self) -> None:
        ws = await self.open_websocket()
        await blocking(ws.send, "40")
        answer = await blocking(ws.recv)
        self.assertTrue(answer.startswith("44{"), answer)
        self.assertIn("message", json.loads(answer[2:]))


class unittest_any_pong(dict):
    """Matches a pong payload for a given timestamp, whatever the server time."""

    def __init__(self, timestamp: int) -> None:
        super().__init__(timestamp=timestamp)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, dict)
            and other.get("timestamp") == self["timestamp"]
            and set(other) == {"timestamp", "server_time", "latency"}
        )
