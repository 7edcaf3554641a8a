"""The one twisted.web `Site`: sockets, the HTTP API, health and metrics on one port."""

from __future__ import annotations

import weakref
from typing import Any, Callable

from twisted.internet import defer
from twisted.web import resource, server

from umoc.domain.services import Services
from umoc.transport.cors import Cors
from umoc.transport.engine import EngineServer
from umoc.transport.gate import Gatekeeper
from umoc.transport.resource import engine_resource
from umoc.transport.upgrade import UpgradeSite
from umoc.web.accesslog import access_log_formatter
from umoc.web.auth import auth_resources
from umoc.web.health import LivenessResource, MetricsResource, ReadinessResource
from umoc.web.jsonapi import write_json
from umoc.webclient.resource import web_client_resource

__all__ = ["UmocSite", "build_metrics_site", "build_site"]


class UmocSite(UpgradeSite):
    """A Site that can drop its idle keep-alive connections when the server stops.

    WebSocket upgrades to ``/socket.io/`` skip twisted.web (`UpgradeSite`).
    """

    def __init__(
        self,
        root: resource.Resource,
        access_log: bool = False,
        log_formatter: Any = None,
        request_factory: Any = None,
    ) -> None:
        super().__init__(root, requestFactory=request_factory, logFormatter=log_formatter)
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

    def http_channel(self, addr: Any) -> Any:
        # A connection whose first read was not a fast upgrade: its twisted.web channel is tracked instead.
        channel = super().http_channel(addr)
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
        write_json(request, 404, {"error": "Not found", "code": "not_found"})
        return server.NOT_DONE_YET


class Root(resource.Resource):
    """Unknown paths answer JSON 404, not twisted.web's HTML page; so does the folder itself (``/api``)."""

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        return NotFound()

    def render(self, request: Any) -> Any:
        # resource.Resource would answer HEAD with an AttributeError (no render_GET): a 500.
        return NotFound().render(request)


class OriginForbidden(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> Any:
        write_json(request, 403, {"error": "Origin not allowed", "code": "forbidden"})
        return server.NOT_DONE_YET


class Api(Root):
    """``/api/``: CORS for allowed origins, 403 for browsers from any other origin (CSRF)."""

    def __init__(self, gate: Gatekeeper, cors: Cors) -> None:
        super().__init__()
        self._gate = gate
        self._cors = cors

    def getChildWithDefault(self, path: bytes, request: Any) -> resource.Resource:
        origin = request.getHeader(b"origin")
        if origin is not None and not self._gate.origin_allowed(
            origin.decode("latin-1"), _own_origin_headers(request), request.isSecure()
        ):
            return OriginForbidden()
        if self._cors(request):
            return _Preflight()
        return super().getChildWithDefault(path, request)


def _own_origin_headers(request: Any) -> dict[str, str]:
    """What the Gatekeeper needs to know the request's own origin: ``host`` and ``x-forwarded-proto``."""
    return {
        name: (request.getHeader(name.encode("ascii")) or b"").decode("latin-1")
        for name in ("host", "x-forwarded-proto")
    }


class _Preflight(resource.Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b""


def build_site(
    services: Services,
    engine: EngineServer,
    gate: Gatekeeper,
    extra_api: dict[bytes, resource.Resource],
    redis_ping: Callable[[], defer.Deferred[bool]] | None = None,
    request_factory: Any = None,
) -> UmocSite:
    """The one Site: Engine.IO at ``/socket.io/``, the JSON API, health, and metrics unless they have their own."""
    config = services.config
    cors = Cors(gate)
    root = Root()
    if config.web_client.enabled:
        # "/" and the client's static files
        root.children.update(web_client_resource(config.web_client.connect_src).children)
    sockets = engine_resource(engine, gate, cors)
    root.putChild(b"socket.io", sockets)
    api = Api(gate, cors)
    for name, child in {**auth_resources(services, gate), **extra_api}.items():
        api.putChild(name, child)
    root.putChild(b"api", api)
    root.putChild(b"healthz", LivenessResource(services))
    root.putChild(b"readyz", ReadinessResource(services, redis_ping))
    if not config.metrics.listen:
        root.putChild(b"metrics", MetricsResource(services.metrics, config.metrics.token))
    site = UmocSite(
        root,
        access_log=config.server.access_log,
        log_formatter=access_log_formatter(gate),
        request_factory=request_factory,
    )
    site.add_upgrade(b"/socket.io/", sockets.websocket_factory)
    engine.shutdown_hooks.append(site.close_connections)
    site.displayTracebacks = False
    site.noisy = False
    return site


def build_metrics_site(services: Services) -> server.Site:
    """``/metrics`` alone, for ``metrics.listen``: scrapers reach it, clients never do."""
    root = Root()
    root.putChild(b"metrics", MetricsResource(services.metrics, services.config.metrics.token))
    site = server.Site(root)
    site.noisy = False
    return site
