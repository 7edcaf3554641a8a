"""The `MultiService` behind ``twistd umoc``.

`makeService` only wires objects; `UmocService.startService` does the
asynchronous part (migrations, Redis, then listening), so a database that
cannot be migrated stops start-up before the port opens.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints, task
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from umoc.app import Application
from umoc.config import Config
from umoc.storage import Storage, open_storage
from umoc.web.site import build_site
from umoc.web.uploads import Uploads

__all__ = ["UmocService"]

log = Logger()


class UmocService(service.MultiService):
    """Storage, the application, periodic tasks and the one listening Site."""

    def __init__(self, config: Config, reactor: Any, storage: Storage | None = None) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.storage = storage or open_storage(config)
        self.app = Application(config, reactor, self.storage)
        self.uploads = Uploads(self.app)
        self.site, self.engine = build_site(self.app, extra_api=self.uploads.resources())
        self.site.requestFactory = self.uploads.request_factory()
        self.port: IListeningPort | None = None
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._loops: list[task.LoopingCall] = []
        self._listener: StreamServerEndpointService | None = None

    def startService(self) -> None:
        super().startService()
        d = defer.ensureDeferred(self._start())
        d.addCallbacks(self.ready.callback, self._start_failed)

    def _start_failed(self, failure: Any) -> None:
        log.failure("UMOC could not start", failure)
        self.ready.errback(failure)
        if self.reactor.running:
            self.reactor.stop()

    async def _start(self) -> None:
        version = await self.storage.db.migrate()
        log.info("Database ready ({dialect}, schema version {version})",
                 dialect=self.storage.db.dialect.name, version=version)
        self.every(self.config.sessions.cleanup_interval, self._expire_sessions)
        self.every(self.config.uploads.cleanup_interval, self.uploads.purge_expired)
        endpoint = endpoints.serverFromString(self.reactor, self.config.server.listen)
        listener = StreamServerEndpointService(endpoint, self.site)
        listener._raiseSynchronously = False
        self._listener = listener
        listener.setServiceParent(self)
        self.port = await listener._waitingForPort
        log.info("UMOC listening on {address}", address=self.port.getHost())

    def every(self, interval: float, fn: Any) -> None:
        """Run ``fn`` every ``interval`` seconds on the injected clock; errors are logged, not fatal."""

        async def guarded() -> None:
            try:
                await fn()
            except Exception:  # noqa: BLE001 - a periodic task must keep running
                log.failure("Periodic task {name} failed", name=getattr(fn, "__name__", fn))

        loop = task.LoopingCall(lambda: defer.ensureDeferred(guarded()))
        loop.clock = self.reactor
        loop.start(interval, now=False)
        self._loops.append(loop)

    async def _expire_sessions(self) -> None:
        while True:
            expired = await self.storage.users.delete_expired_sessions(self.reactor.seconds())
            for session_id, _user_id in expired:
                self.app.end_session(session_id, "Your session has expired")
            if len(expired) < 1000:
                return

    def stopService(self) -> defer.Deferred[None]:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        self.engine.close_all()
        d = defer.maybeDeferred(super().stopService)
        d.addBoth(self._close_storage)
        return d

    def _close_storage(self, result: Any) -> Any:
        self.storage.close()
        return result
