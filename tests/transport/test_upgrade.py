"""Upgrading a long-polling session to WebSocket loses, repeats and reorders nothing."""

from __future__ import annotations

import json

from tests.support.deferreds import blocking, inline, sleep
from tests.support.server import ServerTestCase


class UpgradeWithoutLossTests(ServerTestCase):
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
        sock = await self.open_websocket(sid=sid, opened=False)
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
        second = await self.open_websocket(sid=sid, opened=False)
        self.assertTrue(await blocking(second.closed_within, 3))
