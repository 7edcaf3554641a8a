"""Conformance mode: UMOC's own protocol layer, set up as the official test suites expect.

    python -m umoc.conformance --port 3000

serves, on one port,

* ``/engine.io/``: an Engine.IO v4 echo server (every MESSAGE goes back as
  it came, text or binary), for socket.io's ``engine.io-protocol/v4-test-suite``;
* ``/socket.io/``: Socket.IO v5 with the namespaces ``/`` and ``/custom``.  On
  connect the server emits ``auth`` with the CONNECT payload (``{}`` when
  none), answers ``message`` with ``message-back`` and the same arguments,
  and acknowledges ``message-with-ack`` with the same arguments; for
  ``socket.io-protocol/v5-test-suite``.

Settings are the suites': pingInterval 300 ms, pingTimeout 200 ms,
maxPayload 1000000, a 1 s connect timeout, any origin.  Nothing here
re-implements the protocol: the production codec, `EngineServer`, the
WebSocket and long-polling transports and `SocketIOConnection` run as they
do in ``twistd umoc``, only with a different `SocketApp` (and no database,
no authentication, no connection state recovery).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure
from twisted.web import resource, server

from umoc.config import Duration, EngineIOConfig, Size
from umoc.transport.cors import Cors
from umoc.transport.engine import EngineServer, EngineSession, Outgoing
from umoc.transport.gate import Gatekeeper
from umoc.transport.resource import engine_resource
from umoc.transport.socketio import ClientSocket, Identity, SocketIOConnection
from umoc.transport.upgrade import UpgradeSite

__all__ = ["ConformanceApp", "EchoHandler", "build_conformance_site", "conformance_settings", "main"]

log = Logger()

#: Nobody in particular: conformance clients do not log in.
ANONYMOUS = Identity(0, "anonymous", "", math.inf)


def conformance_settings() -> EngineIOConfig:
    """The Engine.IO settings both official suites assert."""
    return EngineIOConfig(
        ping_interval=Duration(0.3),
        ping_timeout=Duration(0.2),
        max_payload=Size(1_000_000),
        connect_timeout=Duration(1.0),
        recovery_window=Duration(0),
    )


class EchoHandler:
    """Engine.IO echo: the `EngineHandler` for ``/engine.io/``."""

    def __init__(self, session: EngineSession) -> None:
        self.session = session

    def on_message(self, data: str | bytes) -> None:
        self.session.send(Outgoing(["4" + data if isinstance(data, str) else data]))

    def on_close(self, reason: str) -> None:
        pass

    def on_ping(self) -> None:
        pass


class ConformanceApp:
    """The `SocketApp` the Socket.IO suite talks to.

    The ``auth`` event goes out ``AUTH_DELAY`` seconds after the CONNECT
    answer rather than in the same reactor turn.  The suite's client takes
    one WebSocket message per listener it registers; when both frames
    arrive in one TCP segment, ``ws`` emits them back to back and the
    second is missed.  The Node.js reference server never coalesces them
    because it writes the next packet only after the previous write has
    completed.  The protocol layer itself is unchanged.
    """

    namespaces = frozenset({"/", "/custom"})
    AUTH_DELAY = 0.02

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock

    def authenticate(self, connection: SocketIOConnection, auth: Any) -> defer.Deferred[Identity]:
        return defer.succeed(ANONYMOUS)

    def on_connect(self, socket: ClientSocket) -> None:
        self.clock.callLater(self.AUTH_DELAY, socket.emit, "auth", socket.auth if socket.auth is not None else {})

    def on_event(self, socket: ClientSocket, event: str, args: list[Any], ack_id: int | None) -> None:
        if event == "message":
            socket.emit("message-back", *args)
        elif event == "message-with-ack" and ack_id is not None:
            socket.ack(ack_id, *args)

    def on_disconnect(self, socket: ClientSocket, reason: str) -> None:
        pass


class _Root(resource.Resource):
    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return resource.NoResource()


def build_conformance_site(clock: IReactorTime) -> tuple[server.Site, list[EngineServer]]:
    """The Site, and its two Engine.IO servers (to close on shutdown)."""
    settings = conformance_settings()
    gate = Gatekeeper()
    cors = Cors(gate)
    echo = EngineServer(clock, settings, EchoHandler)
    app = ConformanceApp(clock)
    sockets = EngineServer(
        clock,
        settings,
        lambda session: SocketIOConnection(session, app, connect_timeout=settings.connect_timeout),
    )
    root = _Root()
    resources = {b"engine.io": engine_resource(echo, gate, cors), b"socket.io": engine_resource(sockets, gate, cors)}
    site = UpgradeSite(root)
    for name, endpoint in resources.items():
        root.putChild(name, endpoint)
        site.add_upgrade(b"/" + name + b"/", endpoint.websocket_factory)
    site.noisy = False
    return site, [echo, sockets]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m umoc.conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--quiet", action="store_true", help="do not log to stdout")
    options = parser.parse_args(argv)

    from twisted.internet import reactor

    if not options.quiet:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    site, engines = build_conformance_site(reactor)
    if ":" in options.interface:  # "::" listens on IPv6 and IPv4 ("localhost" may be either)
        endpoint: Any = endpoints.TCP6ServerEndpoint(reactor, options.port, interface=options.interface)
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, options.port, interface=options.interface)
    d = endpoint.listen(site)
    d.addCallback(lambda port: log.info("Conformance server on {address}", address=port.getHost()))

    def cannot_listen(failure: Failure) -> None:
        log.failure("Cannot listen", failure)
        reactor.stop()

    d.addErrback(cannot_listen)

    def shutdown() -> None:
        for engine in engines:
            engine.close_all()

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    reactor.run()


if __name__ == "__main__":
    main()
