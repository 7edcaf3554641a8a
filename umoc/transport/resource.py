"""``/socket.io/``: WebSocket upgrades go to Autobahn, everything else is long-polling."""

from __future__ import annotations

from typing import Any

from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.transport.cors import Cors
from umoc.transport.engine import EngineServer
from umoc.transport.errors import BAD_REQUEST, UNKNOWN_TRANSPORT, UNSUPPORTED_VERSION, engine_error
from umoc.transport.gate import Gatekeeper
from umoc.transport.polling import PollingResource
from umoc.transport.websocket import EngineWebSocketFactory, EngineWebSocketResource

__all__ = ["EngineIOResource", "engine_resource"]


class EngineIOResource(resource.Resource):
    """Dispatches by ``transport``; the polling transport is pluggable (``polling``)."""

    isLeaf = True

    def __init__(self, websocket: EngineWebSocketResource, polling: Any = None, cors: Any = None) -> None:
        super().__init__()
        self._websocket = websocket
        self._polling = polling
        self._cors = cors
        #: What `umoc.transport.upgrade.UpgradeSite.add_upgrade` opens this endpoint's WebSockets with.
        self.websocket_factory: EngineWebSocketFactory = websocket._factory

    def render(self, request: IRequest) -> Any:
        if self._cors is not None and self._cors(request):
            return b""
        args = request.args
        eio = (args.get(b"EIO") or [b""])[0]
        transport = (args.get(b"transport") or [b""])[0]
        if eio != b"4":
            return engine_error(request, UNSUPPORTED_VERSION, cors=self._cors)
        if transport == b"websocket":
            upgrade = (request.getHeader(b"upgrade") or b"").lower()
            if upgrade != b"websocket":
                return engine_error(request, BAD_REQUEST, cors=self._cors)
            return self._websocket.render(request)
        if transport == b"polling" and self._polling is not None:
            return self._polling.render(request)
        return engine_error(request, UNKNOWN_TRANSPORT, cors=self._cors)


def engine_resource(engine: EngineServer, gatekeeper: Gatekeeper, cors: Cors) -> EngineIOResource:
    """The whole Engine.IO endpoint for one `EngineServer`: WebSocket, long-polling, upgrades."""
    factory = EngineWebSocketFactory(engine, gatekeeper)
    polling = PollingResource(engine, gatekeeper, cors)
    factory.upgrade_handler = polling.upgrade
    return EngineIOResource(EngineWebSocketResource(factory), polling, cors)
