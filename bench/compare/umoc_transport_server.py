"""UMOC's protocol stack running the bench's tiny app (the transport-only comparison).

    python bench/compare/umoc_transport_server.py PORT

The same app `umoc.conformance` serves (``message`` -> ``message-back``,
``message-with-ack`` acknowledged with the same arguments), plus
``broadcast`` -> ``broadcast`` to every connected socket, encoded once and
handed to each socket as one `Outgoing`, exactly as `umoc.cluster.hub.Hub` delivers.
The production codec, `EngineServer`, Autobahn WebSocket transport and
`SocketIOConnection` run unchanged; unlike ``python -m umoc.conformance``
the heartbeat is the production default (25 s / 20 s, not the test suites'
300 ms, which would make 5,000 idle clients busy) and one IP may open
any number of sockets.  No database, no authentication.  The reactor
dispatches ready sockets as the node twistd runs does
(`umoc.transport.readydispatch`); ``UMOC_BENCH_TWISTED_DISPATCH=1`` keeps
Twisted's own, to measure the difference.  WebSocket upgrades take the
node's fast path (`umoc.transport.upgrade.UpgradeSite`) as they do in
the node and in ``umoc.conformance``: before 2026-12-07 this server took
twisted.web's (its connects/s were measured through `HTTPChannel`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from twisted.internet import endpoints, reactor  # noqa: E402

from umoc.config import EngineIOConfig  # noqa: E402
from umoc.conformance import ConformanceApp, _Root  # noqa: E402
from umoc.protocol.socketio import encode_event  # noqa: E402
from umoc.transport import readydispatch  # noqa: E402
from umoc.transport.cors import Cors  # noqa: E402
from umoc.transport.engine import EngineServer, Outgoing  # noqa: E402
from umoc.transport.gate import Gatekeeper  # noqa: E402
from umoc.transport.resource import engine_resource  # noqa: E402
from umoc.transport.socketio import ClientSocket, SocketIOConnection  # noqa: E402
from umoc.transport.upgrade import UpgradeSite  # noqa: E402


class BenchApp(ConformanceApp):
    """Conformance behaviour, no ``auth`` welcome, and a broadcast to everyone."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.sockets: dict[ClientSocket, None] = {}

    def on_connect(self, socket: ClientSocket) -> None:
        self.sockets[socket] = None

    def on_disconnect(self, socket: ClientSocket, reason: str) -> None:
        self.sockets.pop(socket, None)

    def on_event(self, socket: ClientSocket, event: str, args: list[Any], ack_id: int | None) -> None:
        if event == "broadcast":
            message = Outgoing.from_socketio(encode_event("broadcast", *args))
            for target in list(self.sockets):
                target.send(message)
        else:
            super().on_event(socket, event, args, ack_id)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    if not os.environ.get("UMOC_BENCH_TWISTED_DISPATCH"):
        readydispatch.install(reactor)
    settings = EngineIOConfig(max_sockets_per_ip=1_000_000)
    gate = Gatekeeper()
    app = BenchApp(reactor)
    engine = EngineServer(reactor, settings, lambda session: SocketIOConnection(session, app))
    root = _Root()
    endpoint = engine_resource(engine, gate, Cors(gate))
    root.putChild(b"socket.io", endpoint)
    # As the node's site (`umoc.web.site`): a WebSocket upgrade skips twisted.web (`umoc.transport.upgrade`).
    site = UpgradeSite(root)
    site.add_upgrade(b"/socket.io/", endpoint.websocket_factory)
    site.noisy = False
    endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site)
    reactor.addSystemEventTrigger("before", "shutdown", engine.close_all)
    reactor.run()


if __name__ == "__main__":
    main()
