"""The one twisted.web `Site`: sockets, the HTTP API, health and metrics on one port."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.resource import WebSocketResource
from twisted.web import resource, server

from umoc.transport.engine import EngineServer
from umoc.transport.resource import EngineIOResource
from umoc.transport.socketio import SocketIOConnection
from umoc.transport.websocket import EngineWebSocketFactory
from umoc.web.auth import auth_resources
from umoc.web.gate import Gatekeeper
from umoc.web.health import HealthResource, MetricsResource
from umoc.web.jsonapi import write_json

if TYPE_CHECKING:
    from umoc.app import Application

__all__ = ["build_site"]


class NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> Any:
        write_json(request, 404, {"error": "Not found"})
        return server.NOT_DONE_YET


class Root(resource.Resource):
    """Unknown paths answer JSON 404, not twisted.web's HTML page."""

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return NotFound()


class OriginForbidden(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> Any:
        write_json(request, 403, {"error": "Origin not allowed"})
        return server.NOT_DONE_YET


class Api(Root):
    """``/api/``: refuses browsers from origins outside ``server.allowed_origins`` (CSRF)."""

    def __init__(self, gate: Gatekeeper) -> None:
        super().__init__()
        self._gate = gate

    def getChildWithDefault(self, path: bytes, request: Any) -> resource.Resource:
        origin = request.getHeader(b"origin")
        if not self._gate.origin_allowed(origin.decode("latin-1") if origin is not None else None):
            return OriginForbidden()
        return super().getChildWithDefault(path, request)


def build_engine(app: "Application") -> EngineServer:
    cfg = app.config
    return EngineServer(
        app.clock,
        cfg.engineio,
        lambda session: SocketIOConnection(session, app, max_depth=cfg.messages.max_payload_depth + 4),
    )


def build_site(app: "Application", redis_ping: Any = None, extra_api: dict[bytes, resource.Resource] | None = None) -> tuple[server.Site, EngineServer]:
    """The Site and its Engine.IO server (the service closes the latter on shutdown)."""
    gate = Gatekeeper(app.config.server.allowed_origins, app.config.server.trusted_proxies)
    engine = build_engine(app)
    ws_factory = EngineWebSocketFactory(engine, gate)
    root = Root()
    root.putChild(b"socket.io", EngineIOResource(WebSocketResource(ws_factory)))
    api = Api(gate)
    for name, child in {**auth_resources(app, gate), **(extra_api or {})}.items():
        api.putChild(name, child)
    root.putChild(b"api", api)
    root.putChild(b"healthz", HealthResource(app, redis_ping))
    root.putChild(b"metrics", MetricsResource(app))
    site = server.Site(root)
    site.displayTracebacks = False
    site.noisy = False
    return site, engine
