"""``GET /healthz`` (liveness), ``GET /readyz`` (readiness) and ``GET /metrics``.

Liveness says that the process serves HTTP and is not wedged: an
orchestrator that restarts a node because its database is slow would make
things worse, so it never asks the database; it fails only when every
database pool thread is stuck (busy ``database.stuck_timeout`` past its
deadline even after its connection was cut loose: see
`umoc.storage.database.Database.watch`), which no database recovery ends.
Readiness says whether the node can do its work: the database answers
within two seconds.  Redis is reported but does not make a node unready:
without it a node still serves its own clients (rate limits and presence
fall back to memory), and a load balancer that dropped every node during
a Redis outage would take the whole service down.

``/metrics`` may require ``Authorization: Bearer <metrics.token>``, or be
served on its own endpoint (``metrics.listen``) instead of the API port.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.web import resource
from twisted.web.iweb import IRequest

import umoc
from umoc.credentials import token_digest, token_matches
from umoc.domain.services import Services
from umoc.metrics import CONTENT_TYPE, Metrics
from umoc.web.jsonapi import JsonResource, write_json

__all__ = ["LivenessResource", "MetricsResource", "ReadinessResource"]


#: Why a node whose every database thread is stuck is not ready (and not alive).
WEDGED = "every database connection is stuck; the node needs a restart"


def LivenessResource(services: Services | None = None) -> JsonResource:
    """200 whenever the process answers HTTP, unless every database pool thread is stuck (503).

    Both bodies carry ``version`` (``umoc.__version__``): during a rolling
    upgrade a probe shows which release each node runs.
    """

    async def alive(request: IRequest) -> None:
        pool = services.storage.db.watch() if services is not None else None
        if pool is not None and pool.wedged:
            body = {"status": "wedged", "reason": WEDGED, "database_stuck": pool.stuck, "version": umoc.__version__}
            write_json(request, 503, body)
            return
        write_json(request, 200, {"status": "ok", "version": umoc.__version__})

    return JsonResource({b"GET": alive})


def ReadinessResource(services: Services, redis_ping: Callable[[], defer.Deferred[bool]] | None) -> JsonResource:
    """200 when the database answers within two seconds, else 503; Redis reported alongside.

    Pool threads stuck past their deadline are reported as ``database_stuck``;
    with every one stuck the database is not even asked (the question would
    only wait behind them) and ``reason`` says so.
    """

    async def check(request: IRequest) -> None:
        async def probe(fn: Callable[[], Any]) -> bool:
            d = fn()
            d.addTimeout(2, services.clock)
            try:
                return bool(await d)
            except Exception:  # noqa: BLE001 - any failure means "not reachable"
                return False

        pool = services.storage.db.watch()
        database = False if pool.wedged else await probe(services.storage.ping)
        body: dict[str, Any] = {"database": database}
        if pool.stuck:
            body["database_stuck"] = pool.stuck
        if pool.wedged:
            body["reason"] = WEDGED
        if redis_ping is not None:
            body["redis"] = await probe(redis_ping)
        body["status"] = "ok" if database and body.get("redis", True) else ("degraded" if database else "unready")
        write_json(request, 200 if database else 503, body)

    return JsonResource({b"GET": check})


class MetricsResource(resource.Resource):
    """Prometheus text; with a token configured, only for ``Authorization: Bearer <token>``."""

    isLeaf = True

    def __init__(self, metrics: Metrics, token: str = "") -> None:
        super().__init__()
        self._metrics = metrics
        self._token_digest = token_digest(token) if token else None

    def render_GET(self, request: IRequest) -> bytes:
        if self._token_digest is not None and not self._authorised(request):
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", b"Bearer")
            request.setHeader(b"Content-Type", b"application/json")
            return b'{"error":"Metrics need the metrics token","code":"not_authenticated"}'
        request.setHeader(b"Content-Type", CONTENT_TYPE.encode("ascii"))
        return self._metrics.render()

    def _authorised(self, request: IRequest) -> bool:
        assert self._token_digest is not None
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and 0 < len(token) <= 256 and token_matches(token.strip(), self._token_digest)
