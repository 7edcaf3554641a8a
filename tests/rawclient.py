"""Wire-level clients for transport tests: raw Engine.IO frames over WebSocket and HTTP polling.

`RawWebSocket` is websocket-client (blocking; call it through
``tests.support.blocking``), `Polling` is treq in the reactor.  Both speak
bytes and strings exactly as they travel, so tests can assert on the wire.
"""

from __future__ import annotations

import json
from typing import Any

import treq
import websocket

__all__ = ["ClosedError", "Polling", "RawWebSocket"]


class ClosedError(Exception):
    """The server closed the WebSocket."""


class RawWebSocket:
    """One WebSocket; every call blocks (run it off the reactor thread)."""

    def __init__(self, url: str, timeout: float = 5) -> None:
        self.ws = websocket.create_connection(url, timeout=timeout)

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

    def recv_json_packet(self, prefix: str, timeout: float = 5) -> Any:
        """The next non-ping message, which must start with ``prefix``; its JSON remainder."""
        message = self.recv(timeout, skip_pings=True)
        assert isinstance(message, str) and message.startswith(prefix), message
        return json.loads(message[len(prefix):])

    def closed_within(self, timeout: float) -> bool:
        """True when the server closes the connection within ``timeout`` seconds (messages are skipped)."""
        try:
            while True:
                self.recv(timeout)
        except ClosedError:
            return True
        except websocket.WebSocketTimeoutException:
            return False

    def close(self) -> None:
        try:
            self.ws.close(timeout=0.2)
        except Exception:  # noqa: BLE001 - already closed is fine
            pass


class Polling:
    """HTTP long-polling requests against one ``/<path>/`` endpoint."""

    def __init__(self, base: str, path: str = "socket.io") -> None:
        self.url = f"{base}/{path}/?EIO=4&transport=polling"

    async def handshake(self) -> tuple[str, dict[str, Any]]:
        code, body = await self.get()
        assert code == 200 and body.startswith("0"), (code, body)
        opened = json.loads(body[1:])
        return opened["sid"], opened

    def get_deferred(self, sid: str | None = None, query: str = "") -> Any:
        url = self.url + (f"&sid={sid}" if sid else "") + query
        return treq.get(url, persistent=False)

    async def get(self, sid: str | None = None, query: str = "", headers: Any = None) -> tuple[int, str]:
        url = self.url + (f"&sid={sid}" if sid else "") + query
        response = await treq.get(url, persistent=False, headers=headers)
        return response.code, await response.text("utf-8")

    async def post(self, sid: str | None, body: str | bytes, headers: Any = None) -> tuple[int, str]:
        url = self.url + (f"&sid={sid}" if sid else "")
        data = body.encode("utf-8") if isinstance(body, str) else body
        response = await treq.post(url, data=data, persistent=False, headers=headers)
        return response.code, await response.text("utf-8")

    async def request(self, method: str, sid: str | None = None, headers: Any = None) -> Any:
        url = self.url + (f"&sid={sid}" if sid else "")
        return await treq.request(method, url, persistent=False, headers=headers)
