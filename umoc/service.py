"""The `MultiService` behind ``twistd umoc``.

`makeService` only wires objects; `UmocService.startService` does the
asynchronous part (migrations, Redis, then listening), so a database that
cannot be migrated stops start-up before the port opens.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints, task
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from umoc.app import Application
from umoc.config import Config
from umoc.ratelimit import FailoverRatelimiter, MemoryRatelimiter, RedisRatelimiter
from umoc.redisbus import RedisBus
from umoc.redisclient import RedisClient, RedisSubscriber
from umoc.redispresence import RedisPresence
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
        self.redis: RedisClient | None = None
        self._subscriber: RedisSubscriber | None = None
        if config.redis.url:
            self._use_redis()
        self.uploads = Uploads(self.app)
        self.site, self.engine = build_site(
            self.app, redis_ping=self.redis.ping if self.redis else None, extra_api=self.uploads.resources()
        )
        self.site.requestFactory = self.uploads.request_factory()
        self.port: IListeningPort | None = None
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._loops: list[task.LoopingCall] = []
        self._listener: StreamServerEndpointService | None = None

    def startService(self) -> None:
        super().startService()
        self.app.password_pool.start()
        d = defer.ensureDeferred(self._start())
        d.addCallbacks(self.ready.callback, self._start_failed)

    def _start_failed(self, failure: Any) -> None:
        log.failure("UMOC could not start", failure)
        self.ready.errback(failure)
        if self.reactor.running:
            self.reactor.stop()

    def _use_redis(self) -> None:
        """Rate limits, presence and fan-out through Redis (several nodes may share it)."""
        cfg = self.config.redis
        self.redis = RedisClient(cfg.url, self.reactor, cfg.timeout)
        node_id = uuid.uuid4().hex
        self.app.ratelimiter = FailoverRatelimiter(
            self.redis,
            RedisRatelimiter(self.redis, self.reactor, self.config.ratelimits, cfg.prefix),
            MemoryRatelimiter(self.reactor, self.config.ratelimits),
            self.reactor,
        )
        self.app.presence = RedisPresence(self.redis, self.app.hub, node_id, cfg.prefix, cfg.presence_ttl)
        self.app.hub.remote = RedisBus(self.redis, self.app.hub, node_id, cfg.prefix)

    async def _start(self) -> None:
        version = await self.storage.db.migrate()
        log.info("Database ready ({dialect}, schema version {version})",
                 dialect=self.storage.db.dialect.name, version=version)
        self.every(self.config.sessions.cleanup_interval, self._expire_sessions)
        self.every(self.config.uploads.cleanup_interval, self.uploads.purge_expired)
        if self.redis is not None:
            if not await self.redis.wait_connected(self.config.redis.timeout * 4):
                log.warn("Redis is not reachable yet; starting with in-memory rate limits and local presence")
            bus, presence = self.app.hub.remote, self.app.presence
            assert isinstance(bus, RedisBus) and isinstance(presence, RedisPresence)
            self._subscriber = self.redis.subscriber(bus.channel, bus.on_message)
            self.every(presence.heartbeat_interval, presence.heartbeat)
        endpoint = endpoints.serverFromString(self.reactor, self.config.server.listen)
        listener = StreamServerEndpointService(endpoint, self.site)
        listener._raiseSynchronously = False
        self._listener = listener
        listener.setServiceParent(self)
        self.port = await listener._waitingForPort
        log.info("UMOC listening on {address}", address=self.port.getHost())

    def every(self, interval: float, fn: Any) -> task.LoopingCall:
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
        return loop

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
        pool = self.app.password_pool
        if pool.started and not pool.joined:
            pool.stop()
        d = defer.maybeDeferred(super().stopService)
        if self.redis is not None:
            d.addBoth(lambda result: defer.ensureDeferred(self._close_redis(result)))
        d.addBoth(self._close_storage)
        return d

    async def _close_redis(self, result: Any) -> Any:
        assert self.redis is not None and isinstance(self.app.presence, RedisPresence)
        await self.app.presence.withdraw()
        if self._subscriber is not None:
            await self._subscriber.close()
        await self.redis.close()
        return result

    def _close_storage(self, result: Any) -> Any:
        self.storage.close()
        return result
