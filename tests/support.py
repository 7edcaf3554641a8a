"""Shared test fixtures: databases, a real server on port 0, real Socket.IO clients.

Integration tests start `UmocService` on 127.0.0.1 port 0 in trial's
reactor and drive it with python-socketio's (threaded) client; waits run in
the reactor's thread pool so the server keeps serving meanwhile.

PostgreSQL is used for real when ``UMOC_TEST_POSTGRES`` is set: each test
gets a schema of its own, dropped afterwards, so runs never see each
other's rows.  Without the variable the PostgreSQL variants skip.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import queue
import tempfile
import threading
import uuid
from typing import Any, Callable, Coroutine

import treq
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from umoc.config import Config, parse_config
from umoc.domain.services import Services
from umoc.service import UmocService
from umoc.storage import Storage
from umoc.storage.database import Database

POSTGRES_DSN = os.environ.get("UMOC_TEST_POSTGRES", "")
REDIS_URL = os.environ.get("UMOC_TEST_REDIS", "")
NO_POSTGRES = "UMOC_TEST_POSTGRES is not set: no PostgreSQL to test against"
NO_REDIS = "UMOC_TEST_REDIS is not set: no Redis to test against"

reactor.suggestThreadPoolSize(32)


def inline(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., defer.Deferred]:
    """Let a trial test method be ``async def``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred:
        return defer.ensureDeferred(fn(*args, **kwargs))

    return wrapper


def blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred:
    """Run a blocking client call off the reactor thread."""
    return threads.deferToThread(fn, *args, **kwargs)


def sleep(seconds: float) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


# -- databases ------------------------------------------------------------


def postgres_schema(test: unittest.TestCase, prefix: str = "umoc_t_") -> str:
    """A new, empty PostgreSQL schema, dropped when the test ends."""
    import psycopg2

    schema = prefix + uuid.uuid4().hex[:16]

    def run(statement: str) -> None:
        conn = psycopg2.connect(POSTGRES_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.close()

    run(f"CREATE SCHEMA {schema}")
    test.addCleanup(run, f"DROP SCHEMA {schema} CASCADE")
    return schema


def make_database(test: unittest.TestCase, backend: str) -> Database:
    """A fresh, empty database of the given kind, removed when the test ends."""
    if backend == "sqlite":
        path = os.path.join(tempfile.mkdtemp(prefix="umoc-test-"), "umoc.sqlite3")
        return Database.sqlite(path)
    if backend == "postgres":
        return Database.postgres(POSTGRES_DSN, 1, 5, schema=postgres_schema(test))
    raise ValueError(backend)


class DatabaseTestCase(unittest.TestCase):
    """A migrated database per test; subclasses set ``backend``."""

    backend = "sqlite"

    @inline
    async def setUp(self) -> None:
        self.db = make_database(self, self.backend)
        self.addCleanup(self.db.close)
        await self.db.migrate()
        self.storage = Storage(self.db)


def for_each_backend(mixin: type, base: type, module_globals: dict[str, Any]) -> None:
    """Define ``<Mixin>SQLite`` and ``<Mixin>Postgres`` test classes from one mixin."""
    name = mixin.__name__.removesuffix("Mixin").removesuffix("Tests") + "Tests"
    sqlite_cls = type(name + "SQLite", (mixin, base), {"backend": "sqlite", "__module__": module_globals["__name__"]})
    attrs: dict[str, Any] = {"backend": "postgres", "__module__": module_globals["__name__"]}
    if not POSTGRES_DSN:
        attrs["skip"] = NO_POSTGRES
    postgres_cls = type(name + "Postgres", (mixin, base), attrs)
    module_globals[sqlite_cls.__name__] = sqlite_cls
    module_globals[postgres_cls.__name__] = postgres_cls


# -- a real server --------------------------------------------------------


def test_config(data_dir: str, **sections: dict[str, Any]) -> Config:
    """Defaults, port 0, the given data dir, and per-test overrides as YAML-shaped dicts."""
    raw: dict[str, Any] = {"server": {"listen": "tcp:0:interface=127.0.0.1", "data_dir": data_dir}}
    for key, values in sections.items():
        raw.setdefault(key, {}).update(values)
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


class ServerTestCase(unittest.TestCase):
    """Starts a real server per test; subclasses set ``backend`` and may override ``config_overrides``."""

    backend = "sqlite"
    config_overrides: dict[str, dict[str, Any]] = {}

    def config_for_test(self, data_dir: str) -> Config:
        return test_config(data_dir, **self.config_overrides)

    async def start_server(self, config: Config | None = None, db: Database | None = None) -> Server:
        data_dir = tempfile.mkdtemp(prefix="umoc-srv-")
        config = config or self.config_for_test(data_dir)
        if config.server.data_dir != data_dir and not config.server.data_dir.startswith(tempfile.gettempdir()):
            config = dataclasses.replace(config, server=dataclasses.replace(config.server, data_dir=data_dir))
        if db is None:
            db = make_database(self, self.backend)
        service = UmocService(config, reactor, storage=Storage(db))
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


# -- a real Socket.IO client ----------------------------------------------


class Client:
    """python-socketio's threaded client, recording every event it receives."""

    def __init__(self, url: str, login: dict[str, Any] | None) -> None:
        import socketio

        self.url = url
        self.login = login or {}
        import requests

        self._http = requests.Session()
        self.sio = socketio.Client(reconnection=False, request_timeout=10, http_session=self._http)
        self._queues: dict[str, queue.Queue] = {}
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
