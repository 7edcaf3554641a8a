"""Upgrading a long-polling session to WebSocket loses, repeats and reorders nothing."""

from __future__ import annotations

import json
import socket
from typing import Any

import websocket

from tests.support.deferreds import blocking, eventually, inline, sleep
from tests.support.rawclient import Polling
from tests.support.server import ServerTestCase
from umoc.transport import polling as polling_module


def _session(case: ServerTestCase, sid: str) -> Any:
    return case.server.service.node.engine.sessions.get(sid)


async def poll_held(case: ServerTestCase, sid: str) -> None:
    """Wait until the server holds a GET of ``sid``'s (a fixed sleep raced a loaded machine's reactor)."""

    def held() -> bool:
        session = _session(case, sid)
        return session is not None and getattr(session.transport, "_request", None) is not None

    case.assertTrue(await eventually(held), "the server holds the poll")


async def upgraded(case: ServerTestCase, sid: str) -> None:
    """Wait until the server has taken the client's ``5``: the session runs over the WebSocket."""
    session = _session(case, sid)
    case.assertTrue(await eventually(lambda: session.transport.name == "websocket"), "the upgrade is complete")


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
        await poll_held(self, sid)
        sock = await self.open_websocket(sid=sid, opened=False)
        await blocking(sock.send, "2probe")
        self.assertEqual(await blocking(sock.recv), "3probe")
        response = await pending
        self.assertEqual(await response.text(), "6")
        emit(2)
        emit(3)  # queued for polling while the client has paused it
        await blocking(sock.send, "5")
        await upgraded(self, sid)
        emit(4)
        for _ in range(3):
            packet = await blocking(sock.recv_json_packet, "42")
            seen.append(packet[1]["n"])
        self.assertEqual(seen, [1, 2, 3, 4])
        self.assertEqual((await polling.get(sid))[0], 400)
        second = await self.open_websocket(sid=sid, opened=False)
        self.assertTrue(await blocking(second.closed_within, 3))


def _ping(login: dict[str, Any], n: int) -> str:
    return "42" + json.dumps(["ping", {"sessionID": login["sessionID"], "timestamp": n}])


class _HeldPost:
    """A POST on a raw TCP connection whose body is sent in two parts, so it is in flight across a step."""

    def __init__(self, port: int, sid: str, body: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        head = (
            f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nContent-Type: text/plain;charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        self.rest = body[len(body) // 2 :]
        self.sock.sendall(head + body[: len(body) // 2])

    def finish(self) -> tuple[int, bytes]:
        """Send the rest of the body; the status and body of the answer."""
        self.sock.sendall(self.rest)
        answer = b""
        while chunk := self.sock.recv(4096):
            answer += chunk
        self.sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), body


class ProbedCase(ServerTestCase):
    """Polling users whose WebSocket answered the probe, and the pongs they read on it."""

    async def probed(self, name: str = "alice") -> tuple[dict[str, Any], Polling, str, Any]:
        """A polling user whose WebSocket answered the probe; polling is paused."""
        login, polling, sid = await self.polling_user(name)
        pending = polling.get_deferred(sid)
        await poll_held(self, sid)
        sock = await self.open_websocket(sid=sid, opened=False)
        await blocking(sock.send, "2probe")
        self.assertEqual(await blocking(sock.recv), "3probe")
        self.assertEqual(await (await pending).text(), "6")
        return login, polling, sid, sock

    async def pongs(self, sock: Any, count: int) -> list[int]:
        got = [(await blocking(sock.recv_json_packet, "42"))[1]["timestamp"] for _ in range(count)]
        # Nothing is dispatched twice: no further pong follows.
        with self.assertRaises(websocket.WebSocketTimeoutException):
            await blocking(sock.recv_json_packet, "42", 0.3)
        return got


class LatePostTests(ProbedCase):
    """A POST sent before the client's ``5`` but arriving after it (a client that does not wait for it)."""

    @inline
    async def test_a_post_in_flight_across_the_upgrade_is_dispatched_once_in_order(self) -> None:
        login, _, sid, sock = await self.probed()
        body = "\x1e".join(_ping(login, n) for n in (1, 2, 3)).encode("utf-8")
        post = await blocking(_HeldPost, self.server.port, sid, body)
        await sleep(0.05)
        await blocking(sock.send, "5")
        await upgraded(self, sid)  # the upgrade is complete before the POST's body is
        self.assertEqual(await blocking(post.finish), (200, b"ok"))
        for n in (4, 5):
            await blocking(sock.send, _ping(login, n))
        self.assertEqual(await self.pongs(sock, 5), [1, 2, 3, 4, 5])

    @inline
    async def test_a_post_sent_after_the_upgrade_arrives_in_the_window_is_dispatched(self) -> None:
        login, polling, sid, sock = await self.probed()
        await blocking(sock.send, "5")
        await upgraded(self, sid)
        self.assertEqual(await polling.post(sid, _ping(login, 1)), (200, "ok"))
        await blocking(sock.send, _ping(login, 2))
        self.assertEqual(await self.pongs(sock, 2), [1, 2])
        # A GET is still refused: the WebSocket carries the session.
        self.assertEqual((await polling.get(sid))[0], 400)

    @inline
    async def test_a_post_after_the_window_or_the_close_is_refused(self) -> None:
        self.patch(polling_module, "LATE_POST_WINDOW", 0.2)
        login, polling, sid, sock = await self.probed()
        await blocking(sock.send, "5")
        await upgraded(self, sid)
        await sleep(0.4)  # past the window, which opened with the upgrade
        code, body = await polling.post(sid, _ping(login, 1))
        self.assertEqual((code, json.loads(body)["code"]), (400, 1))
        await blocking(sock.send, _ping(login, 2))
        self.assertEqual(await self.pongs(sock, 1), [2])

        login, polling, sid, sock = await self.probed("bob")
        await blocking(sock.send, "5")
        await upgraded(self, sid)
        await blocking(sock.close)
        self.assertTrue(await eventually(lambda: _session(self, sid) is None), "the session ended")
        code, body = await polling.post(sid, _ping(login, 1))
        self.assertEqual((code, json.loads(body)["code"]), (400, 1))


class LatePostBoundTests(ProbedCase):
    """A late POST is held to ``max_payload`` as any POST (small here, so the resource decides)."""

    config_overrides = {"engineio": {"max_payload": "2K"}}

    @inline
    async def test_a_late_post_keeps_the_size_bound(self) -> None:
        _, polling, sid, sock = await self.probed()
        await blocking(sock.send, "5")
        await upgraded(self, sid)
        code, _ = await polling.post(sid, "4" + "x" * 3000)
        self.assertEqual(code, 413)
        # As before the upgrade: a POST over the bound ends the session.
        self.assertTrue(await blocking(sock.closed_within, 3))
