"""``/socket.io/``: WebSocket upgrades go to Autobahn, everything else is long-polling."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from twisted.web import resource
from twisted.web.iweb import IRequest

if TYPE_CHECKING:
    from umoc.transport.engine import EngineServer

__all__ = ["EngineIOResource", "engine_error", "engine_resource"]

# Engine.IO's documented HTTP errors.
UNKNOWN_TRANSPORT = (0, "Transport unknown")
UNKNOWN_SID = (1, "Session ID unknown")
BAD_HANDSHAKE_METHOD = (2, "Bad handshake method")
BAD_REQUEST = (3, "Bad request")
FORBIDDEN = (4, "Forbidden")
UNSUPPORTED_VERSION = (5, "Unsupported protocol version")


def engine_error(request: IRequest, error: tuple[int, str], status: int = 400, cors: Any = None) -> bytes:
    """Engine.IO's JSON error body ``{"code": n, "message": "..."}``."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    if cors is not None:
        cors(request)
    return json.dumps({"code": error[0], "message": error[1]}, separators=(",", ":")).encode()


class EngineIOResource(resource.Resource):
    """Dispatches by ``transport``; the polling transport is pluggable (``polling``)."""

    isLeaf = True

    def __init__(self, websocket: WebSocketResource, polling: Any = None, cors: Any = None) -> None:
        super().__init__()
        self._websocket = websocket
        self._polling = polling
        self._cors = cors

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




def engine_resource(engine: EngineServer, gatekeeper: Any, cors: Any) -> EngineIOResource:
    """The whole Engine.IO endpoint for one `EngineServer`: WebSocket, long-polling, upgrades."""
    from umoc.transport.polling import PollingResource
    from umoc.transport.websocket import EngineWebSocketFactory

    factory = EngineWebSocketFactory(engine, gatekeeper)
    polling = PollingResource(engine, gatekeeper, cors)
    factory.upgrade_handler = polling.upgrade
    return EngineIOResource(WebSocketResource(factory), polling, cors)
