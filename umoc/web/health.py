"""``GET /healthz`` and ``GET /metrics``."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.domain.services import Services
from umoc.metrics import Metrics
from umoc.web.jsonapi import JsonResource, write_json

__all__ = ["HealthResource", "MetricsResource"]


def HealthResource(services: Services, redis_ping: Callable[[], defer.Deferred[bool]] | None) -> JsonResource:
    """200 when every configured back-end answers within two seconds, else 503."""

    async def check(request: IRequest) -> None:
        async def probe(fn: Callable[[], Any]) -> bool:
            d = fn()
            d.addTimeout(2, services.clock)
            try:
                return bool(await d)
            except Exception:  # noqa: BLE001 - any failure means "not reachable"
                return False

        database = await probe(services.storage.ping)
        body: dict[str, Any] = {"database": database}
        healthy = database
        if redis_ping is not None:
            body["redis"] = await probe(redis_ping)
            healthy = healthy and body["redis"]
        body["status"] = "ok" if healthy else "degraded"
        write_json(request, 200 if healthy else 503, body)

    return JsonResource({b"GET": check})


class MetricsResource(resource.Resource):
    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: IRequest) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4")
        return self._metrics.render().encode("utf-8")
