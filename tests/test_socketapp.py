"""Property tests: no input a client can send makes the server raise.

The real socket app (with a real SQLite database) is driven in-process
through fake sockets, so hypothesis can try thousands of inputs quickly:

* the router, fed any event name and any JSON arguments, answers every
  acknowledged event exactly once, with ``error`` for unknown events and
  non-object payloads, and never hits "Internal server error";
* a whole Engine.IO session (decoders, Socket.IO layer, router), fed any
  frames, never lets an exception out: bad frames close that session
  cleanly, good ones are answered.

Handlers that query the database finish after hypothesis has moved on;
their answers are checked once every example has been run.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from tests.support.databases import DatabaseTestCase, for_each_backend
from tests.support.deferreds import eventually, inline
from tests.support.fakes import FakeSocket, FakeTransport
from tests.support.server import test_config
from umoc.errors import UserError
from umoc.socketapp import UmocSocketApp
from umoc.transport.engine import EngineServer
from umoc.transport.socketio import Identity, SocketIOConnection
from umoc.wiring import build_node

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.text(max_size=10).map(lambda t: t + "\x00"),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


class PreAuthenticated:
    """The real application behind a CONNECT that is accepted at once (no session lookup)."""

    namespaces = frozenset({"/"})

    def __init__(self, app: UmocSocketApp, identity: Identity) -> None:
        self.app = app
        self.identity = identity

    def authenticate(self, connection: Any, auth: Any) -> defer.Deferred[Identity]:
        return defer.succeed(self.identity)

    def on_connect(self, socket: Any) -> None:
        self.app.on_connect(socket)

    def on_event(self, socket: Any, event: str, args: list[Any], ack_id: int | None) -> None:
        self.app.on_event(socket, event, args, ack_id)

    def on_disconnect(self, socket: Any, reason: str) -> None:
        self.app.on_disconnect(socket, reason)


class FuzzTestsMixin:
    backend: str

    def examples(self, on_sqlite: int) -> int:
        """PostgreSQL round trips cost more: fewer examples there keep the suite fast."""
        return on_sqlite if self.backend == "sqlite" else on_sqlite // 5

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        config = test_config(self.mktemp(), ratelimits={"enabled": False})
        # delete_account checks a password on the password pool: its result comes back through the real reactor.
        self.node = build_node(config, self.clock, self.storage, threads_reactor=reactor)
        self.node.services.sessions.start()
        self.addCleanup(self.node.services.sessions.stop)
        self.app = self.node.socketapp
        user = await self.storage.users.create("fuzzer", "x", self.clock.seconds())
        self.identity = Identity(user.id, "fuzzer", "00000000-0000-4000-8000-000000000000", 1e12)
        self.events = sorted(self.app.router.routes)
        self.fields = sorted({f.name for r in self.app.router.routes.values() for f in r.schema.fields})

    def well_formed_calls(self) -> st.SearchStrategy[tuple[str, list[Any]]]:
        """Events with every field of their schema, each holding a value of about the right kind.

        Random JSON rarely passes a schema; these reach the handlers, with
        values at and past every bound (ids up to 2**64, huge strings...).
        """
        plausible = (
            st.integers(min_value=-2, max_value=2**64)
            | st.sampled_from([10**400, -(10**400), float("inf"), float("-inf"), float("nan")])
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=20).map(lambda t: "\x00" + t)
            | st.text(max_size=40)
            | st.text(min_size=990, max_size=1100)
            | st.uuids().map(str)
            | st.just(self.identity.session_id)
            | st.booleans()
            | st.lists(st.uuids().map(str), max_size=3)
            | st.none()
        )

        def value_for(field: Any) -> st.SearchStrategy[Any]:
            def accepted(value: Any) -> bool:
                try:
                    field.check(field.name, value)
                except UserError:
                    return False
                return True

            if field.name == "sessionID":  # any other value is refused before the handler runs
                return st.one_of(st.just(self.identity.session_id), st.just(None), plausible)
            # Mostly values the field accepts, so that handlers run; sometimes anything.
            valid = plausible.filter(accepted)
            return st.one_of(valid, valid, valid, plausible)

        def calls_for(route: Any) -> st.SearchStrategy[tuple[str, list[Any]]]:
            payload = st.fixed_dictionaries({f.name: value_for(f) for f in route.schema.fields})
            return st.tuples(st.just(route.event), payload.map(lambda p: [p]))

        return st.one_of(*[calls_for(route) for route in self.app.router.routes.values()])

    async def settle(self) -> None:
        """Let handlers that went to the database or the password pool finish.

        Up to 15 s: ``delete_account`` checks its password as a login does
        (Argon2 on a pool of two threads), tens of milliseconds each.
        """
        await eventually(lambda: not self.app.router._queues, interval=0.01)

    @inline
    async def test_a_password_check_answers_on_a_clock_built_node(self) -> None:
        # The hash runs on the password pool and reports back through the real reactor, not the Clock.
        socket = FakeSocket.of(self.identity)
        self.app.on_event(socket, "delete_account", [{"password": "not it"}], 7)  # type: ignore[arg-type]
        await self.settle()
        self.assertEqual(socket.acks, [(7, {"error": "Wrong password", "code": "not_authenticated"})])

    @inline
    async def test_router_answers_every_acknowledged_event_once_and_never_fails_internally(self) -> None:
        seen: list[tuple[FakeSocket, str, Any, int | None]] = []
        event_names = st.sampled_from(self.events) | st.text(max_size=20)
        payloads = st.dictionaries(st.sampled_from(self.fields) | st.text(max_size=8), json_values, max_size=6)
        junk = st.tuples(event_names, st.lists(payloads | json_values, max_size=3))

        @settings(max_examples=self.examples(500), deadline=None, suppress_health_check=list(HealthCheck))
        @given(call=self.well_formed_calls() | junk, ack_id=st.none() | st.integers(0, 2**53 - 1))
        def run(call: tuple[str, list[Any]], ack_id: int | None) -> None:
            event, args = call
            socket = FakeSocket.of(self.identity)
            self.app.on_event(socket, event, args, ack_id)  # type: ignore[arg-type]
            seen.append((socket, event, args, ack_id))
            known = event in self.app.router.routes
            payload = args[0] if args else None
            if not known or not (payload is None or isinstance(payload, dict)):
                self.assertEqual([e[0] for e in socket.emitted], ["error"])
                self.assertIsInstance(socket.emitted[0][1]["message"], str)

        run()
        await self.settle()
        for socket, event, args, ack_id in seen:
            if ack_id is not None:
                self.assertEqual([a[0] for a in socket.acks], [ack_id], (event, args))
            for name, *body in socket.emitted:
                if name == "error":
                    self.assertNotEqual(body[0]["message"], "Internal server error", (event, args))

    @inline
    async def test_engine_session_survives_any_frames(self) -> None:
        settings_ = dataclasses.replace(self.node.services.config.engineio, ping_interval=1e6, ping_timeout=1e6)
        max_depth = self.node.services.config.messages.max_payload_depth + 4
        server = EngineServer(
            self.clock,
            settings_,
            lambda s: SocketIOConnection(s, PreAuthenticated(self.app, self.identity), max_depth=max_depth),
        )
        events = st.sampled_from(self.events) | st.text(max_size=12)
        payloads = st.dictionaries(st.sampled_from(self.fields) | st.text(max_size=8), json_values, max_size=5)
        near_misses = st.builds(
            lambda prefix, ack, body: prefix + ack + body,
            st.sampled_from(["4", "42", "43", "45", "451-", "40", "41", "44", "2", "3", "6", "1", "5", "0", "4/x,"]),
            st.sampled_from(["", "1", "99999999999999999999"]),
            self.well_formed_calls().map(lambda call: json.dumps([call[0], *call[1]]))
            | st.builds(lambda e, p: json.dumps([e, p]), events, payloads)
            | st.text(max_size=40),
        )
        events_with_ack = st.builds(
            lambda ack, call: "42" + ack + json.dumps([call[0], *call[1]]),
            st.sampled_from(["", "7"]),
            self.well_formed_calls(),
        )
        frames = st.lists(events_with_ack | near_misses | st.text(max_size=50) | st.binary(max_size=20), max_size=8)

        @settings(max_examples=self.examples(300), deadline=None, suppress_health_check=list(HealthCheck))
        @given(frames=frames)
        def run(frames: list[str | bytes]) -> None:
            transport = FakeTransport()
            session = server.open(transport, "10.0.0.1", {}, {}, [])
            session.on_frame("40")
            self.assertEqual(len(session.handler.sockets), 1)
            for frame in frames:
                session.on_frame(frame)
                replies = [f for f in transport.sent if isinstance(f, str)]
                self.assertFalse([r for r in replies if "Internal server error" in r], frame)
                if session.closed:
                    self.assertTrue(transport.closed, "a session ends by closing its transport")
                    self.assertNotIn(session.sid, server.sessions)
                    break
            session.close("test over")

        run()
        await self.settle()
        self.assertEqual(server.sessions, {})
        self.assertEqual(self.node.services.hub.by_user, {})


for_each_backend(FuzzTestsMixin, DatabaseTestCase, globals())
