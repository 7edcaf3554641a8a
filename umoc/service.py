"""The `MultiService` behind ``twistd umoc``: it only composes children.

``umoc.wiring`` builds the node; this module runs it.  The children are
the Redis connection (when configured), one `TimerService` per periodic
task, and the `Listener` for the configured endpoint.  `UmocService`
starts them in order once the database is migrated, so a database that
cannot be migrated stops start-up before the port opens; it stops them in
reverse, then closes the database.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import Logger

from umoc.config import Config
from umoc.storage import Storage
from umoc.wiring import Cluster, Node, build_node

__all__ = ["Listener", "RedisService", "UmocService", "periodic_task"]

log = Logger()


def periodic_task(interval: float, fn: Callable[[], Awaitable[Any]], clock: IReactorTime) -> TimerService:
    """A `TimerService` running ``fn`` now and every ``interval`` seconds; a failing run is logged, not fatal."""

    async def guarded() -> None:
        try:
            await fn()
        except Exception:  # noqa: BLE001 - a periodic task must keep running
            log.failure("Periodic task {name} failed", name=getattr(fn, "__qualname__", fn))

    timer = TimerService(interval, lambda: defer.ensureDeferred(guarded()))
    timer.clock = clock
    return timer


class Listener(service.Service):
    """Listens on an endpoint string; ``listening`` fires with the port (or the reason it cannot)."""

    def __init__(self, reactor: Any, description: str, factory: Any) -> None:
        self._reactor = reactor
        self._description = description
        self._factory = factory
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred[IListeningPort] = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        try:
            d = endpoints.serverFromString(self._reactor, self._description).listen(self._factory)
        except Exception:  # noqa: BLE001 - a bad endpoint string fails start-up like a busy port
            d = defer.fail()
        d.addCallback(self._listening)
        d.chainDeferred(self.listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        return port

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self.port is None:
            return defer.succeed(None)
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening)


class RedisService(service.Service):
    """Redis for a node sharing it with others: the bus subscription, presence, and a clean goodbye."""

    def __init__(self, cluster: Cluster, connect_timeout: float) -> None:
        self._cluster = cluster
        self._connect_timeout = connect_timeout
        self._subscriber: Any = None

    async def connect(self) -> None:
        """Subscribe to the bus and wait (bounded) for the command connection."""
        cluster = self._cluster
        self._subscriber = cluster.redis.subscriber(cluster.channel, cluster.receiver.on_message)
        if not await cluster.redis.wait_connected(self._connect_timeout):
            log.warn("Redis is not reachable yet; starting with in-memory rate limits and local presence")

    def subscribed(self) -> defer.Deferred[None]:
        """Fires once the bus subscription is in place (deliveries published before it are missed)."""
        assert self._subscriber is not None, "connect() first"
        return self._subscriber.when_subscribed()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.ensureDeferred(self._close())

    async def _close(self) -> None:
        await self._cluster.presence.withdraw()
        if self._subscriber is not None:
            await self._subscriber.close()
        await self._cluster.redis.close()


class UmocService(service.MultiService):
    """One node: migrations, then Redis, periodic tasks and the listening Site."""

    def __init__(self, config: Config, reactor: Any, storage: Storage | None = None) -> None:
        super().__init__()
        self.config = config
        self.node: Node = build_node(config, reactor, storage)
        services = self.node.services
        self.redis_service: RedisService | None = None
        if self.node.cluster is not None:
            self.redis_service = RedisService(self.node.cluster, config.redis.timeout * 4)
            self.redis_service.setServiceParent(self)
            presence = self.node.cluster.presence
            periodic_task(presence.heartbeat_interval, presence.heartbeat, reactor).setServiceParent(self)
        periodic_task(config.sessions.cleanup_interval, services.sessions.expire, reactor).setServiceParent(self)
        periodic_task(config.uploads.cleanup_interval, services.files.purge_expired, reactor).setServiceParent(self)
        self.metrics_listener: Listener | None = None
        if self.node.metrics_site is not None:
            self.metrics_listener = Listener(reactor, config.metrics.listen, self.node.metrics_site)
            self.metrics_listener.setServiceParent(self)
        self.listener = Listener(reactor, config.server.listen, self.node.site)
        self.listener.setServiceParent(self)
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._reactor = reactor

    @property
    def port(self) -> IListeningPort | None:
        return self.listener.port

    def startService(self) -> None:
        service.Service.startService(self)
        self.node.services.sessions.start()
        d = defer.ensureDeferred(self._start())
        d.addCallbacks(self.ready.callback, self._start_failed)

    async def _start(self) -> None:
        db = self.node.services.storage.db
        version = await db.migrate()
        log.info("Database ready ({dialect}, schema version {version})", dialect=db.dialect.name, version=version)
        if self.redis_service is not None:
            self.redis_service.startService()
            await self.redis_service.connect()
        for child in self:
            if not child.running:
                child.startService()
        if self.metrics_listener is not None:
            metrics_port = await self.metrics_listener.listening
            log.info("Metrics on {address}", address=metrics_port.getHost())
        port = await self.listener.listening
        log.info("UMOC listening on {address}", address=port.getHost())

    def _start_failed(self, failure: Any) -> None:
        log.failure("UMOC could not start", failure)
        self.ready.errback(failure)
        if self._reactor.running:
            self._reactor.stop()

    def stopService(self) -> defer.Deferred[None]:
        service.Service.stopService(self)
        self.node.engine.close_all()
        self.node.services.sessions.stop()
        running = [child for child in reversed(list(self)) if child.running]
        d: defer.Deferred[Any] = defer.succeed(None)
        for child in running:
            d.addCallback(lambda _, c=child: c.stopService())
        d.addBoth(self._close_storage)
        return d

    def _close_storage(self, result: Any) -> None:
        self.node.services.storage.close()
        if isinstance(result, Exception) or hasattr(result, "raiseException"):
            log.failure("Error stopping UMOC", result)
