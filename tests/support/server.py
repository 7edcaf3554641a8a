"""A real server on 127.0.0.1 port 0, and raw WebSockets to it.

Integration tests start `UmocService` in trial's reactor and drive it with
python-socketio's (threaded) client or with raw WebSockets; blocking calls
run in the reactor's thread pool so the server keeps serving meanwhile.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import urllib.parse
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial import unittest

from tests.support.client import Client
from tests.support.databases import migrated_database
from tests.support.deferreds import blocking, inline
from tests.support.rawclient import Polling, RawWebSocket
from umoc.config import Config, parse_config
from umoc.domain.services import Services
from umoc.service import UmocService
from umoc.storage import Storage
from umoc.storage.database import Database

__all__ = ["Server", "ServerTestCase", "test_config"]

reactor.suggestThreadPoolSize(32)


def test_config(data_dir: str, **sections: Any) -> Config:
    """Defaults, port 0, the given data dir, and per-test overrides as YAML-shaped dicts (``webhooks``: a list)."""
    raw: dict[str, Any] = {
        # overload_lag off: tests share a loaded machine, and their clients' threads the reactor's GIL,
        # so its lateness there is the tests', not the server's.  overload_wait far above its default
        # (0.5 s) for the same reason: on a loaded machine a burst of writes on one socket (25 sends a
        # polling client must all get) waits its turn past 0.5 s and the last are refused, as they should
        # be in production; the tests of that rule set their own bounds (tests.e2e.test_overload,
        # tests.events.test_overload).
        "server": {
            "listen": "tcp:0:interface=127.0.0.1",
            "data_dir": data_dir,
            "overload_lag": "0s",
            "overload_wait": "20s",
        },
        # Tests on a Clock read the feed at each commit (`FeedConsumer.wake`); the delay has its own test.
        "feed": {"consumer_wake_delay": "0s"},
        # No test reaches the internet: previews are on only where a test serves the pages itself.
        "messages": {"link_previews": False},
    }
    for key, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(key, {}).update(values)
        else:
            raw[key] = values
    return parse_config(raw)


class Server:
    """A running UmocService on 127.0.0.1:<ephemeral>."""

    def __init__(self, service: UmocService) -> None:
        self.service = service

    @property
    def port(self) -> int:
        assert self.service.port is not None
        return self.service.port.getHost().port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> Services:
        return self.service.node.services

    def ws_url(self, **query: str) -> str:
        """The Engine.IO WebSocket URL, with ``query`` after ``EIO=4&transport=websocket``."""
        params = urllib.parse.urlencode({"EIO": "4", "transport": "websocket", **query})
        return f"ws://127.0.0.1:{self.port}/socket.io/?{params}"

    async def post(self, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        response = await treq.post(self.url + path, json=body, persistent=False, **kwargs)
        text = await response.text()
        return response.code, (json.loads(text) if text else None)

    async def register(self, username: str, password: str = "correct horse battery") -> dict[str, Any]:
        code, body = await self.post("/api/register", {"username": username, "password": password})
        assert code == 201, (code, body)
        return body

    async def login(self, username: str, password: str = "correct horse battery") -> dict[str, Any]:
        code, body = await self.post("/api/login", {"username": username, "password": password})
        assert code == 200, (code, body)
        return body

    async def user(self, username: str) -> dict[str, Any]:
        """Register and log in; the login body (sessionID, token, user_id, username)."""
        await self.register(username)
        return await self.login(username)


def credentials(login: dict[str, Any]) -> dict[str, str]:
    """The CONNECT auth payload (or URL query) for a login body."""
    return {"sessionID": login["sessionID"], "token": login["token"]}


class ServerTestCase(unittest.TestCase):
    """Starts a real server per test; subclasses set ``backend`` and may override ``config_overrides``."""

    backend = "sqlite"
    config_overrides: dict[str, dict[str, Any]] = {}

    def config_for_test(self, data_dir: str) -> Config:
        return test_config(data_dir, **self.config_overrides)

    async def start_server(
        self, config: Config | None = None, db: Database | None = None, storage: Storage | None = None
    ) -> Server:
        """A started server on ``config``, over ``storage`` (with its replica), or ``db``, or a fresh database."""
        data_dir = tempfile.mkdtemp(prefix="umoc-srv-")
        config = config or self.config_for_test(data_dir)
        if config.server.data_dir != data_dir and not config.server.data_dir.startswith(tempfile.gettempdir()):
            config = dataclasses.replace(config, server=dataclasses.replace(config.server, data_dir=data_dir))
        if storage is None:
            storage = Storage(db if db is not None else await migrated_database(self, self.backend))
        service = UmocService(config, reactor, storage=storage)
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        return Server(service)

    @inline
    async def setUp(self) -> None:
        self.server = await self.start_server()
        self.clients: list[Client] = []
        self.addCleanup(self._disconnect_clients)

    async def _disconnect_clients(self) -> None:
        for client in self.clients:
            await blocking(client.close)

    async def connect(self, login: dict[str, Any], **kwargs: Any) -> Client:
        client = Client(self.server.url, login)
        self.clients.append(client)
        await blocking(client.connect, **kwargs)
        return client

    async def connected_user(self, username: str, **kwargs: Any) -> tuple[dict[str, Any], Client]:
        login = await self.server.user(username)
        client = await self.connect(login, **kwargs)
        await client.expect("connection_successful")
        return login, client

    # -- raw WebSockets ---------------------------------------------------

    async def open_websocket(
        self, login: dict[str, Any] | None = None, *, opened: bool = True, **kwargs: Any
    ) -> RawWebSocket:
        """A raw WebSocket (credentials in the URL when ``login`` is given), closed at cleanup.

        ``opened``: read Engine.IO's OPEN packet first (an upgrade, with
        ``sid=...`` in ``query``, gets none).  Other keyword arguments go to
        `RawWebSocket` (``origin``, ``rcvbuf``) or into the query string.
        """
        options = {key: kwargs.pop(key) for key in ("origin", "rcvbuf") if key in kwargs}
        query = {**(credentials(login) if login else {}), **kwargs}
        sock = await blocking(RawWebSocket, self.server.ws_url(**query), **options)
        self.addCleanup(blocking, sock.close)
        if opened:
            await blocking(sock.read_open)
        return sock

    async def socketio_websocket(self, auth: dict[str, Any]) -> tuple[RawWebSocket, dict[str, Any]]:
        """A raw WebSocket that has sent CONNECT with ``auth``: the socket and the CONNECT answer."""
        sock = await self.open_websocket()
        await blocking(sock.send, "40" + json.dumps(auth))
        answer = await blocking(sock.recv_json_packet, "40")
        return sock, answer

    async def ws_user(self, name: str = "alice") -> tuple[dict[str, Any], RawWebSocket, dict[str, Any]]:
        """A user on a raw WebSocket, ``connection_successful`` read: login, socket, CONNECT answer."""
        login = await self.server.user(name)
        sock, answer = await self.socketio_websocket(credentials(login))
        hello = await blocking(sock.recv_json_packet, "42")
        self.assertEqual(hello[0], "connection_successful")
        return login, sock, answer

    async def polling_user(self, name: str = "alice") -> tuple[dict[str, Any], Polling, str]:
        """A user connected over long-polling, ``connection_successful`` already read: login, client, sid."""
        login = await self.server.user(name)
        polling = Polling(self.server.url)
        sid, _ = await polling.handshake()
        self.assertEqual(await polling.post(sid, "40" + json.dumps(credentials(login))), (200, "ok"))
        received = ""
        while "connection_successful" not in received:
            received += (await polling.get(sid))[1]
        return login, polling, sid
