"""The chat tests' client interface, served in-process: no port, no client threads.

`tests.support.client.Client` (python-socketio's threaded client over a
real port) and `LocalClient` here answer the same small interface::

    login, session_id, order            who it is; every event name in arrival order
    call(event, payload) -> Deferred    emit with an ack; fires with the ack's payload
    emit(event, payload) -> Deferred    emit without an ack
    expect(event) -> Deferred           the next such event (one already received counts)
    expect_none(event)                  assert none arrived (here: once the node is idle)
    drain(event), drain_all()           what arrived so far, removed
    with_session(**payload)             the payload with this socket's sessionID
    close()

so a case written against it runs either way: `InProcessChatCase` (the
default for ``tests/events`` and ``tests/web``) builds the node with
``build_node`` and dispatches straight to its socket app; `ChatCase`
(``tests/support/chat.py``) starts the real server and connects real
clients, for the tests where the wire is the point (``tests/e2e``).

Broadcasts reach a `LocalClient` as encoded frames, decoded as a client
would, so what a test sees is what went on the wire, not the handler's
dict.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from typing import Any

from twisted.internet import defer, reactor

from tests.support.chat import SNAPSHOT_TABLES
from tests.support.databases import DatabaseTestCase
from tests.support.deferreds import inline
from tests.support.fakes import FakeSocket
from tests.support.server import test_config
from tests.support.web import WireResponse, exchange
from umoc.credentials import new_token, token_digest
from umoc.records.sessions import NewSession
from umoc.storage.database import Row
from umoc.transport.engine import Outgoing
from umoc.wiring import Node, build_node

__all__ = ["InProcessChatCase", "LocalClient", "LocalPerson", "LocalServer"]


class _ListeningSocket(FakeSocket):
    """A `FakeSocket` that hands every event it receives to its client as it arrives."""

    def __init__(self, client: LocalClient, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client = client

    def emit(self, event: str, *args: Any) -> None:
        super().emit(event, *args)
        self._client.received(event, args)

    def send(self, message: Outgoing) -> None:
        before = len(self.received)
        super().send(message)
        for event, *args in self.received[before:]:
            self._client.received(event, tuple(args))

    def disconnect(self, reason: str = "server disconnect") -> None:
        self.disconnected = reason
        self.connected = False
        self._client.received("disconnect", ())


class LocalClient:
    """The threaded `Client`'s interface over a socket the in-process node serves."""

    def __init__(self, case: InProcessChatCase, login: dict[str, Any], sid: str) -> None:
        self._case = case
        self.login = login
        self.socket = _ListeningSocket(self, login["user_id"], login["sessionID"], login["username"], sid=sid)
        self._queues: dict[str, deque[Any]] = {}
        self._waiting: dict[str, deque[defer.Deferred[Any]]] = {}
        #: Every event's name in the order received.
        self.order: list[str] = []

    @property
    def session_id(self) -> str:
        return str(self.login["sessionID"])

    @property
    def connected(self) -> bool:
        return self.socket.connected

    def received(self, event: str, args: tuple[Any, ...]) -> None:
        if len(args) == 2 and isinstance(args[1], str):
            args = args[:1]  # a recovery offset after the one payload, as the threaded client drops it
        payload = args[0] if len(args) == 1 else list(args)
        self.order.append(event)
        waiters = self._waiting.get(event)
        if waiters:
            # On the next turn, as a client would see it: never inside the server's own call stack.
            reactor.callLater(0, waiters.popleft().callback, payload)  # type: ignore[attr-defined]
        else:
            self._queues.setdefault(event, deque()).append(payload)

    def call(self, event: str, payload: Any = None, timeout: float = 10) -> defer.Deferred[Any]:
        """Emit with an ack; fires with the ack's payload."""
        ack_id = next(self._case.ack_ids)
        answered: defer.Deferred[Any] = defer.Deferred()
        # The ack reaches the test on the next turn, as a client would see it, not inside the router's call.
        self.socket.answer(ack_id).addCallback(lambda ack: reactor.callLater(0, answered.callback, ack))  # type: ignore[attr-defined]
        self._case.node.socketapp.on_event(self.socket, event, [] if payload is None else [payload], ack_id)  # type: ignore[arg-type]
        return answered

    def emit(self, event: str, payload: Any = None) -> defer.Deferred[None]:
        self._case.node.socketapp.on_event(self.socket, event, [] if payload is None else [payload], None)  # type: ignore[arg-type]
        return defer.ensureDeferred(self._case.settled())

    def with_session(self, **payload: Any) -> dict[str, Any]:
        return {"sessionID": self.session_id, **payload}

    def expect(self, event: str, timeout: float = 10) -> defer.Deferred[Any]:
        """The next ``event`` received (already received counts); fails after ``timeout`` seconds."""
        queued = self._queues.get(event)
        if queued:
            return defer.succeed(queued.popleft())
        d: defer.Deferred[Any] = defer.Deferred()
        self._waiting.setdefault(event, deque()).append(d)

        def too_late() -> None:
            waiters = self._waiting.get(event)
            if waiters and d in waiters:
                waiters.remove(d)
                d.errback(AssertionError(f"no {event!r} event within {timeout}s"))

        call = reactor.callLater(timeout, too_late)  # type: ignore[attr-defined]
        d.addBoth(lambda result: (call.cancel() if call.active() else None, result)[1])
        return d

    async def expect_none(self, event: str, within: float = 0.3) -> None:
        """Assert that no ``event`` arrived once everything under way is done."""
        await self._case.settled()
        queued = self._queues.get(event)
        if queued:
            raise AssertionError(f"unexpected {event!r}: {queued[0]!r}")

    def drain(self, event: str) -> list[Any]:
        queued = self._queues.pop(event, deque())
        return list(queued)

    def drain_all(self) -> dict[str, list[Any]]:
        names = [name for name, queued in self._queues.items() if queued]
        return {name: self.drain(name) for name in names}

    def close(self) -> None:
        if self.socket.connected:
            self.socket.connected = False
            self._case.node.socketapp.on_disconnect(self.socket, "client disconnect")  # type: ignore[arg-type]


class LocalPerson:
    """A user with a session and one connected `LocalClient` (as `tests.support.chat.Person`)."""

    def __init__(self, login: dict[str, Any], client: LocalClient) -> None:
        self.login = login
        self.client = client

    @property
    def id(self) -> int:
        return int(self.login["user_id"])

    @property
    def name(self) -> str:
        return str(self.login["username"])

    def call(self, event: str, **payload: Any) -> defer.Deferred[Any]:
        return self.client.call(event, self.client.with_session(**payload))


class LocalServer:
    """What the chat tests use of a running server: its services, and HTTP through its `Site`."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def services(self) -> Any:
        return self.node.services

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """``POST path`` with a JSON body: the status and the decoded answer, as `Server.post` gives them."""
        response = await self.http("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
        return response.code, (response.json() if response.body else None)

    async def register(self, username: str, password: str = "correct horse battery") -> dict[str, Any]:
        code, body = await self.post("/api/register", {"username": username, "password": password})
        assert code == 201, (code, body)
        return body

    async def user(self, username: str) -> dict[str, Any]:
        """Register and log in through the HTTP API; the login body (sessionID, token, user_id, username)."""
        await self.register(username)
        return await self.login(username)

    async def login(self, username: str, password: str = "correct horse battery") -> dict[str, Any]:
        """``POST /api/login`` (a user registered through the API or ``umoc-admin``)."""
        code, body = await self.post("/api/login", {"username": username, "password": password})
        assert code == 200, (code, body)
        return body

    async def http(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> WireResponse:
        """``method path`` through the node's HTTP channel; ``body`` is JSON-encoded unless it is bytes."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        return await exchange(self.node.site, method, path, data or b"", headers)


class InProcessChatCase(DatabaseTestCase):
    """`ChatCase`'s helpers over a node built in-process on the real reactor (storage in its threads).

    Users are made through storage with a session and a token (no password
    hashing), and connect through ``node.socketapp`` as the transport would
    call it.
    """

    config_overrides: dict[str, dict[str, Any]] = {"ratelimits": {"enabled": False}}

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.config = test_config(self.mktemp(), **self.config_overrides)
        self.node: Node = build_node(self.config, reactor, self.storage)
        self.server = LocalServer(self.node)
        self.node.services.sessions.start()
        self.addCleanup(self.node.services.sessions.stop)
        self.ack_ids = itertools.count(1)
        self._sids = itertools.count(1)
        self.clients: list[LocalClient] = []
        self.addCleanup(self._close_clients)

    async def _close_clients(self) -> None:
        for client in self.clients:
            client.close()
        await self.settled()

    async def settled(self) -> None:
        """Wait for the events under way and the status announcements they started."""
        await self.node.socketapp.idle()

    async def login(self, name: str) -> dict[str, Any]:
        """A user with a live session, as ``POST /api/register`` then ``/api/login`` would answer."""
        now = reactor.seconds()  # type: ignore[attr-defined]
        user = await self.storage.users.create(name, "not a hash", now)
        session_id, token = f"session-{name}-{next(self._sids)}", new_token()
        ttl = self.config.sessions.ttl
        await self.storage.users.create_session(NewSession(user.id, session_id, token_digest(token), now, now + ttl), 3)
        return {"user_id": user.id, "username": name, "sessionID": session_id, "token": token}

    async def connect(self, login: dict[str, Any]) -> LocalClient:
        client = LocalClient(self, login, f"sid-{next(self._sids)}")
        # The CONNECT's authentication as the transport runs it: the session check and the feed position.
        auth = {"sessionID": login["sessionID"], "token": login["token"]}
        client.socket.identity = await self.node.socketapp.authenticate(client.socket.connection, auth)  # type: ignore[arg-type]
        self.clients.append(client)
        self.node.socketapp.on_connect(client.socket)  # type: ignore[arg-type]
        await self.settled()
        return client

    async def connected_user(self, name: str) -> tuple[dict[str, Any], LocalClient]:
        login = await self.login(name)
        client = await self.connect(login)
        await client.expect("connection_successful")
        return login, client

    async def person(self, name: str) -> LocalPerson:
        login = await self.login(name)
        client = await self.connect(login)
        await client.expect("connection_successful")
        return LocalPerson(login, client)

    async def second_socket(self, person: LocalPerson) -> LocalClient:
        client = await self.connect(person.login)
        await client.expect("connection_successful")
        return client

    async def befriend(self, a: LocalPerson, b: LocalPerson) -> None:
        added = await a.call("add_contact", contact_username=b.name)
        assert added.get("status") == "NEW", added
        accepted = await b.call("accept_contact", contact_id=a.id)
        assert accepted.get("status") == "FRIEND", accepted
        await a.client.expect("contact_accepted")
        await self.settled()
        for person in (a, b):
            for event in ("contact_added", "contact_request", "contact_accepted", "user_status"):
                person.client.drain(event)

    async def upload(
        self, person: LocalPerson, data: bytes, file_name: str = "me.png", file_type: str = "image/png", **target: Any
    ) -> dict[str, Any]:
        """``upload_file_prepare`` (``target``: the chat, or ``purpose``) and the PUT; answers the ready payload."""
        ready = await person.call(
            "upload_file_prepare", file_name=file_name, file_size=len(data), file_type=file_type, **target
        )
        assert "upload_url" in ready, ready
        response = await self.server.http(
            "PUT", ready["upload_url"], data, {"Authorization": f"Bearer {ready['upload_token']}"}
        )
        assert response.code == 201, (response.code, response.body)
        return ready

    async def rows(self, sql: str, *params: Any) -> list[Row]:
        return await self.storage.db.run("test", lambda txn: txn.execute(sql, params).fetchall())

    async def scalar(self, sql: str, *params: Any) -> Any:
        return await self.storage.db.run("test", lambda txn: txn.scalar(sql, params))

    async def snapshot(self) -> dict[str, list[Row]]:
        """Every chat table's rows, to prove a refused event changed nothing."""
        return {name: await self.rows(sql) for name, sql in SNAPSHOT_TABLES.items()}
