"""python-socketio's threaded client, recording every event it receives."""

from __future__ import annotations

import queue
import threading
from typing import Any

from twisted.internet import defer

from tests.support.deferreds import blocking, sleep

__all__ = ["Client"]


class Client:
    """python-socketio's threaded client, recording every event it receives."""

    def __init__(self, url: str, login: dict[str, Any] | None) -> None:
        import requests
        import socketio

        self.url = url
        self.login = login or {}
        self._http = requests.Session()
        self.sio = socketio.Client(reconnection=False, request_timeout=10, http_session=self._http)
        self._queues: dict[str, queue.Queue] = {}
        #: Every event's name in the order received (the queues keep each event's own order only).
        self.order: list[str] = []
        self._lock = threading.Lock()
        self.sio.on("*", self._record)

    @property
    def session_id(self) -> str:
        return self.login["sessionID"]

    def _queue(self, event: str) -> queue.Queue:
        with self._lock:
            return self._queues.setdefault(event, queue.Queue())

    def _record(self, event: str, *args: Any) -> None:
        if len(args) == 2 and isinstance(args[1], str):
            # Connection state recovery appends an offset to hub events; every
            # event in the spec has one payload, so a trailing string is that offset.
            args = args[:1]
        with self._lock:
            self.order.append(event)
        self._queue(event).put(args[0] if len(args) == 1 else list(args))

    def connect(self, transports: list[str] | None = None, use_query: bool = True, auth: Any = None) -> None:
        url = self.url
        if use_query and self.login:
            url += f"/?sessionID={self.login['sessionID']}&token={self.login['token']}"
        self.sio.connect(url, transports=transports or ["websocket"], auth=auth, wait_timeout=10)

    def close(self) -> None:
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001 - already gone is fine
            pass
        self.sio.shutdown() if hasattr(self.sio, "shutdown") else None
        # Long-polling keeps HTTP connections alive; python-engineio drops
        # its session without closing it when the server disconnects.
        self._http.close()

    def emit(self, event: str, payload: Any = None) -> defer.Deferred:
        return blocking(self.sio.emit, event, payload)

    def call(self, event: str, payload: Any = None, timeout: float = 10) -> defer.Deferred:
        """Emit with an ack and return the ack's payload."""
        return blocking(self.sio.call, event, payload, timeout=timeout)

    def with_session(self, **payload: Any) -> dict[str, Any]:
        return {"sessionID": self.session_id, **payload}

    def expect(self, event: str, timeout: float = 10) -> defer.Deferred:
        """The next ``event`` received (already received counts)."""
        q = self._queue(event)

        def get() -> Any:
            try:
                return q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {event!r} event within {timeout}s") from None

        return blocking(get)

    async def expect_none(self, event: str, within: float = 0.3) -> None:
        """Assert that no ``event`` arrives within ``within`` seconds."""
        await sleep(within)
        q = self._queue(event)
        if not q.empty():
            raise AssertionError(f"unexpected {event!r}: {q.get_nowait()!r}")

    def drain_all(self) -> dict[str, list[Any]]:
        """Everything received so far, by event name (events with nothing left out), removing it."""
        with self._lock:
            names = list(self._queues)
        found = {name: self.drain(name) for name in names}
        return {name: items for name, items in found.items() if items}

    def drain(self, event: str) -> list[Any]:
        """Everything received so far for ``event``, removing it."""
        q = self._queue(event)
        items = []
        while not q.empty():
            items.append(q.get_nowait())
        return items
