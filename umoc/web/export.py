"""``GET /api/export``: everything of the caller's, as one JSON document to download.

Authenticated exactly as downloads are (``umoc.web.sessionauth``): 401
without a valid session.  Limited per user by ``ratelimits.export`` (429
with ``Retry-After``).  The body is streamed: `Accounts.export` reads the
messages a page at a time and each piece is written only when the client
has taken the last ones (a push producer the transport pauses), so
neither a long history nor a slow client grows the server's memory.  A
failure after the first byte cannot become a JSON error any more: the
connection is closed instead, and the client sees a truncated document.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web import resource, server
from zope.interface import implementer

from umoc.domain.services import Services
from umoc.web.jsonapi import HttpError, JsonResource
from umoc.web.sessionauth import request_session

__all__ = ["export_resource"]

log = Logger()


@implementer(IPushProducer)
class _Pacer:
    """Told by the transport when to stop and go on writing; `ready` waits for the go."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self._waiting: defer.Deferred[None] | None = None

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self) -> None:
        self.stopped = True
        self.resumeProducing()

    def ready(self) -> defer.Deferred[None]:
        if not self.paused or self.stopped:
            return defer.succeed(None)
        if self._waiting is None:
            self._waiting = defer.Deferred()
        return self._waiting


class ExportApi:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def export(self, request: server.Request) -> None:
        services = self._services
        record = await request_session(services.sessions, request)
        if record is None:
            raise HttpError(401, "Invalid or expired session", code="not_authenticated")
        allowed, retry_after = await services.ratelimiter.can_do_action("export", f"user:{record.user_id}")
        if not allowed:
            services.metrics.refused("export")
            raise HttpError(
                429,
                "Too many requests; try again later",
                {"Retry-After": str(max(1, int(retry_after + 0.999)))},
                code="rate_limited",
            )
        pieces = await services.accounts.export(record.user_id)
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Content-Disposition", b'attachment; filename="umoc-export.json"')
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        pacer = _Pacer()
        request.registerProducer(pacer, True)
        request.notifyFinish().addErrback(lambda _: pacer.stopProducing())
        try:
            async for piece in pieces:
                await pacer.ready()
                if pacer.stopped:
                    return  # the client went away
                request.write(piece.encode("utf-8"))
        except Exception:  # noqa: BLE001 - the status line is out: all that is left is to cut the body short
            log.failure("Export of user {user_id} failed", user_id=record.user_id)
            request.unregisterProducer()
            request.loseConnection()
            return
        request.unregisterProducer()
        request.finish()


def export_resource(services: Services) -> resource.Resource:
    """``/api/export``."""
    return JsonResource({b"GET": ExportApi(services).export})
