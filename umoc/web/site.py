"""The one twisted.web `Site`: sockets, the HTTP API, health and metrics on one port."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from twisted.web import resource, server

from umoc.transport.engine import EngineServer
from umoc.transport.recovery import RecoveryStore
from umoc.transport.resource import engine_resource
from umoc.transport.socketio import SocketIOConnection
from umoc.web.auth import auth_resources
from umoc.web.cors import Cors
from umoc.web.gate import Gatekeeper
from umoc.web.health import HealthResource, MetricsResource
from umoc.web.jsonapi import write_json
from umoc.webclient.resource import web_client_resource

if TYPE_CHECKING:
    from umoc.app import Application

__all__ = ["build_site"]


class UmocSite(server.Site):
    """A Site that can drop its idle keep-alive connections when the server stops."""

    def __init__(self, root: resource.Resource, access_log: bool = False) -> None:
        super().__init__(root)
        self.access_log = access_log
        self._channels: weakref.WeakSet[Any] = weakref.WeakSet()
        self._closing = False

    def log(self, request: Any) -> None:
        """The access log line, when ``server.access_log`` asks for it."""
        if self.access_log:
            super().log(request)

    def buildProtocol(self, addr: Any) -> Any:
        if self._closing:
            return None  # shutting down: refuse, the port is about to close
        channel = super().buildProtocol(addr)
        self._channels.add(channel)
        return channel

    def close_connections(self) -> None:
        self._closing = True
        for channel in list(self._channels):
            # Site's protocol wraps the real HTTPChannel, which holds the transport.
            transport = getattr(getattr(channel, "_channel", channel), "transport", None)
            if transport is not None:
                transport.abortConnection()


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
    """``/api/``: CORS for allowed origins, 403 for browsers from any other origin (CSRF)."""

    def __init__(self, gate: Gatekeeper, cors: Cors) -> None:
        super().__init__()
        self._gate = gate
        self._cors = cors

    def getChildWithDefault(self, path: bytes, request: Any) -> resource.Resource:
        origin = request.getHeader(b"origin")
        if not self._gate.origin_allowed(origin.decode("latin-1") if origin is not None else None):
            return OriginForbidden()
        if self._cors(request):
            return _Preflight()
        return super().getChildWithDefault(path, request)


class _Preflight(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b""


def build_engine(app: Application) -> EngineServer:
    cfg = app.config
    recovery = RecoveryStore(app.clock, cfg.engineio.recovery_window) if cfg.engineio.recovery_window > 0 else None
    app.hub.recovery = recovery
    return EngineServer(
        app.clock,
        cfg.engineio,
        lambda session: SocketIOConnection(
            session,
            app,
            max_depth=cfg.messages.max_payload_depth + 4,
            connect_timeout=cfg.engineio.connect_timeout,
            recovery=recovery,
        ),
    )


def build_site(
    app: Application,
    redis_ping: Any = None,
    extra_api: dict[bytes, resource.Resource] | None = None,
) -> tuple[server.Site, EngineServer]:
    """The Site and its Engine.IO server (the service closes the latter on shutdown)."""
    gate = Gatekeeper(app.config.server.allowed_origins, app.config.server.trusted_proxies)
    engine = build_engine(app)
    cors = Cors(gate)
    root = Root()
    if app.config.web_client.enabled:
        root.children.update(web_client_resource().children)  # "/" and the client's static files
    root.putChild(b"socket.io", engine_resource(engine, gate, cors))
    api = Api(gate, cors)
    for name, child in {**auth_resources(app, gate), **(extra_api or {})}.items():
        api.putChild(name, child)
    root.putChild(b"api", api)
    root.putChild(b"healthz", HealthResource(app, redis_ping))
    root.putChild(b"metrics", MetricsResource(app))
    site = UmocSite(root, access_log=app.config.server.access_log)
    engine.shutdown_hooks.append(site.close_connections)
    site.displayTracebacks = False
    site.noisy = False
    return site, engine
