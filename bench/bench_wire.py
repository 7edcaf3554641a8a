"""The Socket.IO wire hot path in instructions, under callgrind (issue 26).

    python bench/bench_wire.py                  # every workload under callgrind: a table of instructions per unit
    python bench/bench_wire.py --only ingest16,broadcast
    python bench/bench_wire.py --memory         # bytes each idle connected socket holds (tracemalloc)
    python bench/bench_wire.py --once WORKLOAD N   # one run, no valgrind (what the driver runs under it)

The machine this project is developed on is shared by several sessions at
once, so wall-clock timings there say more about the neighbours than about
the code.  Callgrind counts the instructions the process executes, which
does not depend on load: the same code on the same input gives the same
count to within a few hundred instructions per unit, run after run.  A
count is not a time (it ignores cache misses, branch prediction and the
kernel's share of a ``send()``), but a change that removes Python work
shows up in it one for one, which is what these steps are about.

Each workload runs once with ``N`` units after its warm-up and once with
none; the difference over ``N`` is the cost of one unit, without the
imports, the set-up and first-call costs.  ``PYTHONHASHSEED`` is fixed.

The workloads drive the real code on in-memory transports, no sockets:

``ingest1`` / ``ingest16``
    Masked client WebSocket frames carrying ``421["send_message",{...}]``
    (an EVENT asking for ack 1, as socket.io-client writes it) go to the
    real `EngineWebSocketProtocol` (Autobahn's protocol with UMOC's fast
    path) through ``dataReceived``, one frame per read or 16 per read, and
    on through `EngineSession` and `SocketIOConnection` to a stub
    ``on_event`` that stands where `Router.dispatch` is called and only
    counts.  Unit: one frame.
``acks``
    As ``ingest1``, and the stub answers each event with an ack carrying a
    ``new_message``-sized payload, as the router does for ``send_message``:
    the codec's encoder and the write to the transport.  Unit: one frame.
``broadcast``
    1,000 connected WebSockets, each its own user, in a real `Hub`; one
    ``new_message`` sent with ``Hub.emit_to_users`` to all 1,000 users.
    Unit: one broadcast (1,000 deliveries).
``reply_together`` / ``reply_apart``
    As ``broadcast``, a thread reply's two events to the 1,000 users: its
    keyed ``new_message`` and its ``thread_updated``, told together with
    ``Hub.tell_all`` (one message of two frames per socket), or apart with
    two ``Hub.tell`` calls (as before issue 30's last change).  Unit: one
    reply (2,000 deliveries).
``broadcast_recovery`` / ``reply_recovery``
    As ``broadcast`` and ``reply_together``, with connection state
    recovery on: every socket has a pid in the node's `RecoveryStore`, so
    each event is also kept in its replay log for the users it reached.
``connect``
    A new connection through the real HTTP site (twisted.web's channel,
    the Engine.IO resource, Autobahn's resource and opening handshake),
    Engine.IO OPEN, then ``40{"sessionID":..,"token":..}``; the stub
    ``authenticate`` answers at once (a session cache hit) and the stub
    ``on_connect`` adds the socket to the hub and tells it
    ``connection_successful``, as `UmocSocketApp` does.  Unit: one connect.
``appconnect``
    The whole node instead of the stub: ``build_node`` on a migrated SQLite
    database in a temp dir, on the real reactor, its real `UmocSite`; users
    each with a session already in the session cache (checked once before
    the measured part, a cache hit as for a user who logged in), rate limits
    off, no friends.  A connect as ``connect`` does, then the real
    `UmocSocketApp`: ``authenticate`` (session cache hit, the change-feed
    position and the user's friends read from SQLite in one transaction in
    adbapi's thread), ``on_connect`` (hub, ``connection_successful``,
    presence, the ``user_status`` announcement), waited for with
    ``UmocSocketApp.idle``.
    Counted: everything the process runs, its database threads included.
    Unit: one connect.
``appcycle``
    As ``appconnect``, and each socket is then closed (its connection
    lost) and ``UmocSocketApp.idle`` waited for again: ``on_disconnect``
    (hub, router), presence and the ``offline`` announcement with its
    ``last_seen`` write through group commit.  Unit: one connect and close.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import os
import re
import struct
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKLOADS = {
    # name: (units measured, warm-up units)
    "ingest1": (2000, 200),
    "ingest16": (4000, 320),
    "acks": (2000, 200),
    "broadcast": (20, 3),
    "reply_together": (20, 3),
    "reply_apart": (20, 3),
    "broadcast_recovery": (20, 3),
    "reply_recovery": (20, 3),
    "connect": (200, 20),
    "appconnect": (100, 10),
    "appcycle": (100, 10),
}

MASK = b"\x37\xfa\x21\x3d"
SESSION_ID = "3f2c1d7e-9a4b-4c55-8e21-0b7d9c6a1f42"
TOKEN = "q9Xv3kP0s8LmZ2wR7tYb5nHc1dJf6gAe4uWx0zQy"
EVENT_TEXT = (
    '421["send_message",{"recipient_id":1042,"content":"Hello there! Are we still on for tonight?",'
    f'"is_group":false,"type":"text","sessionID":"{SESSION_ID}"}}]'
)
NEW_MESSAGE = {
    "message_id": "0d6f8a52-3b1e-4c8e-9f7a-2a1c5e9b7d31",
    "sender_id": 17,
    "sender_username": "johndoe",
    "recipient_id": 1042,
    "content": "Hello there! Are we still on for tonight?",
    "type": "text",
    "timestamp": "2026-12-06T12:00:00Z",
    "is_group": False,
    "display_name": None,
    "avatar_url": None,
    "reply_to": None,
    "mentions": [],
    "edited_at": None,
    "reactions": [],
}
HANDSHAKE = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
    b"Host: 127.0.0.1:3000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"User-Agent: bench_wire\r\n\r\n"
)


def client_frame(text: str, mask: bytes = MASK) -> bytes:
    """One masked client text frame, as a browser writes it."""
    payload = text.encode("utf-8")
    size = len(payload)
    head = bytes((0x81, 0x80 | size)) if size < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class HeapClock:
    """A fake clock kept in a heap, as the real reactor keeps its timers.

    `twisted.internet.task.Clock` sorts its whole list of calls on every
    ``callLater``: with thousands of connected sockets, each holding its ping
    and connect timers, that sort was most of what the ``connect`` workload
    counted, and no part of what the server does.  Cancelled calls are
    dropped when they come due; a call moved later is pushed back then, as
    the reactor does (``delayed_time``).
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[Any] = []

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, fn: Any, *args: Any, **kw: Any) -> Any:
        from twisted.internet.base import DelayedCall

        call = DelayedCall(self.now + delay, fn, args, kw, _ignore, _ignore, self.seconds)
        heapq.heappush(self.calls, call)
        return call

    def advance(self, amount: float) -> None:
        self.now += amount
        calls = self.calls
        while calls and calls[0].time <= self.now:
            call = heapq.heappop(calls)
            if call.cancelled:
                continue
            if call.delayed_time != 0:
                call.activate_delay()
                heapq.heappush(calls, call)
                continue
            call.called = 1
            call.func(*call.args, **call.kw)

    def getDelayedCalls(self) -> list[Any]:
        return [c for c in self.calls if not c.cancelled and not c.called]


def _ignore(call: Any) -> None:
    """A cancelled call stays in the heap until due (the reactor, too, drops cancelled calls lazily)."""


class Node:
    """The transport stack of one node on in-memory transports, with a stub application."""

    def __init__(self, acks: bool = False) -> None:
        from twisted.web import resource, server

        from umoc.cluster.hub import Hub
        from umoc.config import EngineIOConfig
        from umoc.transport.cors import Cors
        from umoc.transport.engine import EngineServer
        from umoc.transport.gate import Gatekeeper
        from umoc.transport.resource import engine_resource
        from umoc.transport.socketio import SocketIOConnection

        self.clock = HeapClock()
        self.hub = Hub(clock=self.clock)
        app = _App(self, acks)
        self.app = app
        settings = EngineIOConfig(max_sockets_per_ip=1_000_000)
        gate = Gatekeeper()
        self.engine = EngineServer(self.clock, settings, lambda session: SocketIOConnection(session, app))
        root = resource.Resource()
        sockets = engine_resource(self.engine, gate, Cors(gate))
        root.putChild(b"socket.io", sockets)
        try:  # the server's own site: its WebSocket upgrades skip twisted.web's request
            from umoc.transport.upgrade import UpgradeSite
        except ImportError:  # a tree from before it
            self.site = server.Site(root)
        else:
            self.site = UpgradeSite(root)
            self.site.add_upgrade(b"/socket.io/", sockets.websocket_factory)
        self.site.noisy = False
        self.site.log = lambda request: None  # no access log on stdout
        self.events = 0
        self._next_user = 0
        if os.environ.get("BENCH_WIRE_GC") != "default":
            from umoc import gcpolicy

            gcpolicy.settle()  # as the node twistd runs does once it listens

    def connect(self) -> Any:
        """One WebSocket through the HTTP site up to a connected Socket.IO socket; its transport."""
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        transport.protocol = channel  # as a TCP transport has it (Autobahn's resource swaps it)
        channel.makeConnection(transport)
        channel.dataReceived(HANDSHAKE)
        protocol = transport.protocol
        protocol.dataReceived(client_frame(f'40{{"sessionID":"{SESSION_ID}","token":"{TOKEN}"}}'))
        self.clock.advance(0)
        return transport


class _App:
    """Stands where `UmocSocketApp` is: a cached session's identity, the hub, the router's dispatch call."""

    namespaces = frozenset({"/"})

    def __init__(self, node: Node, acks: bool) -> None:
        self.node = node
        self.acks = acks

    def authenticate(self, connection: Any, auth: Any) -> Any:
        from twisted.internet import defer

        from umoc.transport.socketio import Identity

        self.node._next_user += 1
        return defer.succeed(Identity(self.node._next_user, f"user{self.node._next_user}", SESSION_ID, 2e9))

    def on_connect(self, socket: Any) -> None:
        self.node.hub.add(socket)
        socket.emit(
            "connection_successful",
            {"user_id": socket.user_id, "username": socket.username, "session_expires": 2000000000, "cursor": None},
        )

    def on_event(self, socket: Any, event: str, args: list[Any], ack_id: int | None) -> None:
        # Router.dispatch(socket, event, args, ack_id) would be called here.
        self.node.events += 1
        if self.acks and ack_id is not None:
            socket.ack(ack_id, NEW_MESSAGE)

    def on_disconnect(self, socket: Any, reason: str) -> None:
        self.node.hub.remove(socket)


def _ingest(n: int, per_read: int, acks: bool = False) -> None:
    node = Node(acks)
    transport = node.connect()
    protocol = transport.protocol
    frame = client_frame(EVENT_TEXT)
    read = frame * per_read
    clock = node.clock
    for _ in range(n // per_read):
        protocol.dataReceived(read)
        clock.advance(0)
        transport.clear()
    assert node.events == n // per_read * per_read, node.events


def _app_connects(units: int, close: bool = False) -> None:
    """``appconnect`` (``close``: ``appcycle``): the same users and sessions are made whatever ``units`` is,
    so only connects (and closes) differ."""
    import shutil
    import tempfile

    from twisted.internet import defer, reactor
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    from tests.support.server import test_config
    from umoc.credentials import new_token, token_digest
    from umoc.records.sessions import NewSession
    from umoc.storage import open_storage
    from umoc.wiring import build_node

    measured, warm = WORKLOADS["appcycle" if close else "appconnect"]
    done: list[Any] = []

    async def main() -> None:
        data_dir = tempfile.mkdtemp(prefix="bench-wire-")
        config = test_config(
            data_dir,
            ratelimits={"enabled": False},
            engineio={"max_sockets_per_ip": 1_000_000},
            # Valgrind runs the process some fifty times slower: no deadline may expire because of it.
            database={"timeout": "1h", "stuck_timeout": "2h", "sqlite_synchronous": "normal"},
            sessions={"check_interval": "1h"},  # the cached sessions stay trusted however slow the set-up
        )
        storage = open_storage(config, reactor)
        await storage.db.migrate()
        node = build_node(config, reactor, storage)
        node.site.noisy = False
        now = reactor.seconds()
        logins = []
        for i in range(measured + warm):
            user = await storage.users.create(f"user{i}", "!", now)
            token = new_token()
            await storage.users.create_session(NewSession(user.id, f"s{i}", token_digest(token), now, now + 86400), 3)
            await node.services.sessions.check(f"s{i}", token)  # now in the session cache
            logins.append((f"s{i}", token))
        app = node.socketapp
        welcomed: list[defer.Deferred[None]] = []
        on_connect = app.on_connect

        def connected(socket: Any) -> None:
            on_connect(socket)
            welcomed[-1].callback(None)

        app.on_connect = connected  # type: ignore[method-assign]
        transports = []
        for session_id, token in logins[: warm + units]:
            welcomed.append(defer.Deferred())
            transport = _connect_through(node.site, session_id, token)
            await welcomed[-1]  # the session checked, the feed position read: the socket is welcomed
            await app.idle()  # and its status announced to its friends
            assert b"connection_successful" in transport.value()
            if close:
                transport.protocol.connectionLost(Failure(ConnectionDone()))
                await app.idle()  # its user announced offline, ``last_seen`` committed
            transports.append(transport)
        assert len(node.services.hub.by_user) == (0 if close else warm + units)
        storage.db.close()
        shutil.rmtree(data_dir)
        done.append(True)

    def stop(result: Any) -> None:
        if not done:
            print(result, file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(main()).addBoth(stop))
    reactor.run()
    if not done:
        raise SystemExit("the app workload failed")


def _connect_through(site: Any, session_id: str, token: str) -> Any:
    """A WebSocket through ``site`` and its Socket.IO CONNECT with a session; its transport."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    transport.protocol = channel
    channel.makeConnection(transport)
    channel.dataReceived(HANDSHAKE)
    transport.protocol.dataReceived(client_frame(f'40{{"sessionID":"{session_id}","token":"{token}"}}'))
    return transport


def run(workload: str, units: int) -> None:
    """``units`` of ``workload`` after its warm-up."""
    warm = WORKLOADS[workload][1]
    if workload in ("ingest1", "ingest16", "acks"):
        per_read = 16 if workload == "ingest16" else 1
        _ingest(warm + units, per_read, acks=workload == "acks")
    elif workload in ("broadcast", "broadcast_recovery"):
        node = Node()
        transports = [node.connect() for _ in range(1000)]
        if workload == "broadcast_recovery":
            _with_recovery(node)
        users = list(range(1, 1001))
        for i in range(warm + units):
            node.hub.emit_to_users(users, "new_message", NEW_MESSAGE)
            node.clock.advance(0)
            if i == 0:
                assert all(b"new_message" in t.value() for t in transports)
            for t in transports:
                t.clear()
    elif workload in ("reply_together", "reply_apart", "reply_recovery"):
        from umoc.domain import notices

        node = Node()
        transports = [node.connect() for _ in range(1000)]
        if workload == "reply_recovery":
            _with_recovery(node)
        users = list(range(1, 1001))
        summary = {"chat_id": 7, "is_group": True, "thread_id": NEW_MESSAGE["message_id"], "reply_count": 3}
        for i in range(warm + units):
            told = [(notices.NEW_MESSAGE(NEW_MESSAGE), f"m{i}"), (notices.THREAD_UPDATED(summary), None)]
            if workload != "reply_apart":
                node.hub.tell_all(users, told, unique=True)
            else:
                for notice, key in told:
                    node.hub.tell(users, notice, key=key, unique=True)
            node.clock.advance(0)
            if i == 0:
                assert all(b"new_message" in t.value() and b"thread_updated" in t.value() for t in transports)
            for t in transports:
                t.clear()
    elif workload == "appconnect":
        _app_connects(units)
    elif workload == "appcycle":
        _app_connects(units, close=True)
    elif workload == "connect":
        node = Node()
        for _ in range(warm + units):
            transport = node.connect()
            transport.clear()
        assert len(node.hub.by_user) == warm + units
    else:
        raise SystemExit(f"unknown workload {workload!r}")


def _with_recovery(node: Node) -> None:
    """Connection state recovery on in ``node``'s hub, every connected socket given a pid (as a CONNECT does)."""
    from umoc.transport.recovery import RecoveryStore

    store = node.hub.recovery = RecoveryStore(node.clock, 120.0)
    for sockets in node.hub.by_user.values():
        for socket in sockets:
            socket.pid = store.new_pid()
            store.attach(socket)


def memory(sockets: int = 1000) -> float:
    """Python heap bytes per idle connected socket (tracemalloc), after a connect and a few events each."""
    import tracemalloc

    node = Node(acks=True)
    frame = client_frame(EVENT_TEXT)
    warm = [node.connect() for _ in range(50)]
    for t in warm:
        t.protocol.dataReceived(frame)
        t.clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = []
    for _ in range(sockets):
        t = node.connect()
        t.protocol.dataReceived(frame)
        node.clock.advance(0)
        t.clear()
        kept.append(t)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / sockets


def instructions(workload: str, units: int) -> int:
    """Instructions callgrind counts for one run of ``workload`` with ``units`` units."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        os.path.abspath(__file__),
        "--once",
        workload,
        str(units),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"{workload}: callgrind failed\n{done.stderr[-3000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", nargs=2, metavar=("WORKLOAD", "N"))
    parser.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    if args.once:
        run(args.once[0], int(args.once[1]))
        return
    if args.memory:
        print(f"idle connected socket: {memory():.0f} bytes of Python heap (tracemalloc, 1,000 sockets)")
        return
    names = args.only.split(",") if args.only else list(WORKLOADS)
    print(f"{'workload':<10} {'units':>6} {'instructions per unit':>22}")
    for name in names:
        units = WORKLOADS[name][0]
        per_unit = (instructions(name, units) - instructions(name, 0)) / units
        print(f"{name:<10} {units:>6} {per_unit:>22,.0f}", flush=True)


if __name__ == "__main__":
    main()
