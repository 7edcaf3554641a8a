"""Wire-level clients for transport tests: raw Engine.IO frames over WebSocket and HTTP polling.

`RawWebSocket` is websocket-client (blocking; call it through
``tests.support.deferreds.blocking``), `Polling` is treq in the reactor.
Both speak bytes and strings exactly as they travel, so tests can assert on
the wire, and send what a well-behaved Socket.IO client never would.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import treq
import websocket

__all__ = ["ClosedError", "Polling", "RawWebSocket"]


class ClosedError(Exception):
    """The server closed the WebSocket."""


class RawWebSocket:
    """One WebSocket; every call blocks (run it off the reactor thread).

    It sends no Origin header unless given one: a raw client is not a browser.
    ``rcvbuf`` shrinks the receive buffer, for a client that stops reading.
    """

    def __init__(self, url: str, timeout: float = 10, origin: str | None = None, rcvbuf: int | None = None) -> None:
        sockopt = [(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)] if rcvbuf else []
        self.ws = websocket.create_connection(
            url, timeout=timeout, origin=origin, suppress_origin=origin is None, sockopt=sockopt
        )

    def send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self.ws.send_binary(data)
        else:
            self.ws.send(data)

    def recv(self, timeout: float = 5, skip_pings: bool = False) -> str | bytes:
        """The next message (text as str, binary as bytes); `ClosedError` when the server closed."""
        self.ws.settimeout(timeout)
        while True:
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketConnectionClosedException as exc:
                raise ClosedError() from exc
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise ClosedError()
            message: str | bytes = data.decode("utf-8") if opcode == websocket.ABNF.OPCODE_TEXT else data
            if skip_pings and message == "2":
                continue
            return message

    def read_open(self) -> dict[str, Any]:
        """Engine.IO's OPEN packet, which the server sends first: its JSON."""
        opened = self.recv()
        assert isinstance(opened, str) and opened.startswith("0{"), opened
        return json.loads(opened[1:])

    def recv_json_packet(self, prefix: str, timeout: float = 5) -> Any:
        """The next non-ping message, which must start with ``prefix``; its JSON remainder."""
        message = self.recv(timeout, skip_pings=True)
        assert isinstance(message, str) and message.startswith(prefix), message
        return json.loads(message[len(prefix) :])

    def socketio_connect(self) -> None:
        """CONNECT on "/" (credentials are in the URL) and read through ``connection_successful``."""
        self.send("40")
        answer = self.recv(skip_pings=True)
        assert isinstance(answer, str) and answer.startswith("40{"), f"CONNECT not accepted: {answer!r}"
        hello = self.recv_json_packet("42")
        assert hello[0] == "connection_successful", hello

    def next_event(self, timeout: float = 5) -> tuple[str, Any]:
        """The next Socket.IO event as ``(name, payload)``, answering pings on the way."""
        while True:
            frame = self.recv(timeout)
            if frame == "2":
                self.send("3")
                continue
            assert isinstance(frame, str) and frame.startswith("42"), frame
            name, *args = json.loads(frame[2:])
            return name, args[0] if args else None

    def closed_within(self, timeout: float) -> bool:
        """True when the server closes the connection within ``timeout`` seconds (messages are skipped)."""
        try:
            while True:
                self.recv(timeout)
        except ClosedError:
            return True
        except websocket.WebSocketTimeoutException:
            return False

    def close_code(self, timeout: float = 10) -> int | None:
        """Read until the server closes: its close code, or None for a dropped TCP connection."""
        self.ws.settimeout(timeout)
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return None

    def close(self) -> None:
        try:
            self.ws.close(timeout=0.2)
        except Exception:  # noqa: BLE001 - already closed is fine
            pass


class Polling:
    """HTTP long-polling requests against one ``/<path>/`` endpoint."""

    def __init__(self, base: str, path: str = "socket.io") -> None:
        self.url = f"{base}/{path}/?EIO=4&transport=polling"

    def _url(self, sid: str | None, query: str = "") -> str:
        return self.url + (f"&sid={sid}" if sid else "") + query

    async def handshake(self) -> tuple[str, dict[str, Any]]:
        code, body = await self.get()
        assert code == 200 and body.startswith("0"), (code, body)
        opened = json.loads(body[1:])
        return opened["sid"], opened

    def get_deferred(self, sid: str | None = None, query: str = "") -> Any:
        return treq.get(self._url(sid, query), persistent=False)

    async def get(self, sid: str | None = None, query: str = "", headers: Any = None) -> tuple[int, str]:
        response = await treq.get(self._url(sid, query), persistent=False, headers=headers)
        return response.code, await response.text("utf-8")

    async def post(self, sid: str | None, body: str | bytes, headers: Any = None) -> tuple[int, str]:
        data = body.encode("utf-8") if isinstance(body, str) else body
        response = await treq.post(self._url(sid), data=data, persistent=False, headers=headers)
        return response.code, await response.text("utf-8")

    async def request(self, method: str, sid: str | None = None, headers: Any = None) -> Any:
        return await treq.request(method, self._url(sid), persistent=False, headers=headers)
