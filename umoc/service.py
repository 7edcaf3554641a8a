"""The `MultiService` behind ``twistd umoc``: it only composes children.

``umoc.wiring`` builds the node; this module runs it.  The children are
the Redis connection (when configured), one `TimerService` per periodic
task, and the `Listener` for the configured endpoint.  `UmocService`
starts them in order once the database is migrated, so a database that
cannot be migrated stops start-up before the port opens.

Stopping (SIGTERM) is graceful, within ``server.shutdown_timeout``::

    stop listening                       no new connections
    refuse events not started yet        ``error``, "send this again once reconnected"
    wait for the events running          what a client was acknowledged is committed
    close every socket                   stock clients reconnect by themselves
                                         (behind a balancer: to another node)
    wait for the status announcements    friends get ``user_status`` offline for
                                         users with no socket left anywhere
    stop the feed's consumers            pushes and webhooks in flight finish, their
                                         position is stored, their leases given up
    stop the timers, then Redis          presence withdrawn, publications flushed
    close the database
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import txredisapi
from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer, endpoints, error
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from umoc import gcpolicy
from umoc.config import Config
from umoc.domain.retention import Purger
from umoc.domain.status import StatusAnnouncer
from umoc.storage import Storage
from umoc.storage.database import DatabaseUnavailableError, SchemaTooNewError
from umoc.wiring import Cluster, Node, build_node

__all__ = ["Listener", "RedisService", "StartupError", "UmocService", "describe_start_failure", "periodic_task"]

log = Logger()

#: Failures that mean a back-end is slow or away, not that the code is wrong.
OUTAGES = (defer.TimeoutError, txredisapi.ConnectionError, DatabaseUnavailableError)


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def describe_start_failure(failure: Failure) -> str:
    """The cause of a failed start as one line: what is wrong and, where known, which setting."""
    reason = failure.value
    if isinstance(reason, DatabaseUnavailableError):
        # The driver's own words ("Connection refused", 'database "umoc" does not exist') are the cause.
        cause = reason.__cause__
        if cause is None or isinstance(cause, DatabaseUnavailableError):
            return "the database did not answer within database.timeout"
        return f"cannot use the database: {_first_line(cause)}"
    if isinstance(reason, (StartupError, SchemaTooNewError)):
        return str(reason)
    return f"{type(reason).__name__}: {_first_line(reason)}"


def periodic_task(interval: float, fn: Callable[[], Awaitable[Any]], clock: IReactorTime) -> TimerService:
    """A `TimerService` running ``fn`` now and every ``interval`` seconds; a failing run is logged, not fatal."""

    name = getattr(fn, "__qualname__", fn)

    async def guarded() -> None:
        try:
            await fn()
        except OUTAGES as exc:
            # A back-end that is slow or away: expected, reported by the parts that watch it; no traceback.
            log.warn("Periodic task {name} skipped a run: {why}", name=name, why=str(exc) or type(exc).__name__)
        except Exception:  # noqa: BLE001 - a periodic task must keep running
            log.failure("Periodic task {name} failed", name=name)

    timer = TimerService(interval, lambda: defer.ensureDeferred(guarded()))
    timer.clock = clock
    return timer


class StartupError(RuntimeError):
    """Why a node cannot start, in one line an operator can act on (no traceback needed)."""


class Listener(service.Service):
    """Listens on an endpoint string; ``listening`` fires with the port (or a `StartupError` saying why not).

    ``key`` names the setting the string came from (``server.listen``), so the
    error names what to fix.
    """

    def __init__(self, reactor: Any, description: str, factory: Any, key: str = "server.listen") -> None:
        self._reactor = reactor
        self._description = description
        self._factory = factory
        self._key = key
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred[IListeningPort] = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        try:
            endpoint = endpoints.serverFromString(self._reactor, self._description)
        except Exception as exc:  # noqa: BLE001 - any parse error (unknown type, bad port, missing key file)
            d: defer.Deferred[IListeningPort] = defer.fail(
                StartupError(f"{self._key} {self._description!r} is not a usable endpoint: {_first_line(exc)}")
            )
        else:
            d = endpoint.listen(self._factory)
            d.addErrback(self._cannot_listen)
        d.addCallback(self._listening)
        d.chainDeferred(self.listening)

    def _cannot_listen(self, failure: Failure) -> IListeningPort:
        reason = failure.value
        if isinstance(reason, error.CannotListenError):
            # "Couldn't listen on 127.0.0.1:8080: [Errno 98] Address already in use." -> the errno's text.
            cause = getattr(reason.socketError, "strerror", None) or str(reason.socketError)
            raise StartupError(f"cannot listen on {self._key} {self._description!r}: {cause}")
        raise StartupError(f"cannot listen on {self._key} {self._description!r}: {_first_line(reason)}")

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        return port

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self.port is None:
            return defer.succeed(None)
        port, self.port = self.port, None
        stopped = port.stopListening()  # a Deferred, or None when it stopped at once
        return stopped if stopped is not None else defer.succeed(None)


class RedisService(service.Service):
    """Redis for a node sharing it with others: the bus subscription, presence, and a clean goodbye."""

    def __init__(self, cluster: Cluster, status: StatusAnnouncer, connect_timeout: float) -> None:
        self._cluster = cluster
        self._status = status
        self._connect_timeout = connect_timeout
        self._subscriber: Any = None

    async def connect(self) -> None:
        """Subscribe to the bus and wait (bounded) for the command connection."""
        cluster = self._cluster
        watch = cluster.watch
        self._subscriber = cluster.redis.subscriber(
            cluster.channel, cluster.receiver.on_message, watch.subscription_lost, watch.subscribed
        )
        watch.attach(self._subscriber)
        if not await cluster.redis.wait_connected(self._connect_timeout):
            log.warn("Redis is not reachable yet; starting with in-memory rate limits and local presence")

    @property
    def subscriber(self) -> Any:
        return self._subscriber

    def subscribed(self) -> defer.Deferred[None]:
        """Fires once the bus subscription is in place (deliveries published before it are missed)."""
        assert self._subscriber is not None, "connect() first"
        return self._subscriber.when_subscribed()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.ensureDeferred(self._close())

    async def _close(self) -> None:
        self._cluster.catchup.stop()
        # Users whose sockets closed without their announcement going through are announced here.
        await self._status.announce_offline(await self._cluster.presence.withdraw())
        await self._cluster.bus.flush()
        if self._subscriber is not None:
            await self._subscriber.close()
        await self._cluster.redis.close()


class UmocService(service.MultiService):
    """One node: migrations, then Redis, periodic tasks and the listening Site."""

    #: Freeze start-up's objects and widen the collector's nursery once listening (`umoc.gcpolicy`):
    #: for the process twistd runs, not for a test process that starts many nodes.
    settle_gc = False

    def __init__(self, config: Config, reactor: Any, storage: Storage | None = None) -> None:
        super().__init__()
        self.config = config
        self.node: Node = build_node(config, reactor, storage)
        services = self.node.services
        self.redis_service: RedisService | None = None
        cluster = self.node.cluster
        if cluster is not None:
            self.redis_service = RedisService(cluster, self.node.status, config.redis.timeout * 4)
            self.redis_service.setServiceParent(self)
            status, presence = self.node.status, cluster.presence
            periodic_task(presence.heartbeat_interval, status.heartbeat, reactor).setServiceParent(self)
            periodic_task(presence.reap_interval, status.reap_dead_nodes, reactor).setServiceParent(self)
            periodic_task(cluster.watch.interval, cluster.watch.tick, reactor).setServiceParent(self)
            periodic_task(cluster.catchup.MARK_INTERVAL, cluster.catchup.mark, reactor).setServiceParent(self)
        periodic_task(config.sessions.cleanup_interval, services.sessions.expire, reactor).setServiceParent(self)
        periodic_task(config.sessions.check_interval, services.sessions.sweep, reactor).setServiceParent(self)
        periodic_task(config.uploads.cleanup_interval, services.files.purge_expired, reactor).setServiceParent(self)
        if services.storage.reads.replicated:
            reads = services.storage.reads
            periodic_task(reads.INTERVAL, reads.poll, reactor).setServiceParent(self)
        if config.feed.retention > 0:
            feed, clock, retention = services.storage.feed, services.clock, config.feed.retention
            periodic_task(
                config.feed.prune_interval, lambda: feed.prune(clock.seconds() - retention), reactor
            ).setServiceParent(self)
        # Retention: always on, as a group's admins may set a policy of their own whatever the server's.
        self.purger = Purger(services.storage, services.files, services.clock, config.retention)
        periodic_task(config.retention.purge_interval, self.purger.run, reactor).setServiceParent(self)
        self.metrics_listener: Listener | None = None
        if self.node.metrics_site is not None:
            self.metrics_listener = Listener(reactor, config.metrics.listen, self.node.metrics_site, "metrics.listen")
            self.metrics_listener.setServiceParent(self)
        self.listener = Listener(reactor, config.server.listen, self.node.site)
        self.listener.setServiceParent(self)
        self.ready: defer.Deferred[None] = defer.Deferred()
        #: The one line `_start_failed` logged, when start-up failed.
        self.start_failure: str | None = None
        self._reactor = reactor

    @property
    def port(self) -> IListeningPort | None:
        return self.listener.port

    def startService(self) -> None:
        service.Service.startService(self)
        self.node.services.sessions.start()
        if self.config.server.overload_lag > 0:
            self.node.lag.start()
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
        # The outbox's consumers: a first claim before the port opens (a new consumer starts where the feed is).
        services = self.node.services
        await defer.DeferredList([services.push.start(), services.webhooks.start()], consumeErrors=True)
        if self.metrics_listener is not None:
            metrics_port = await self.metrics_listener.listening
            log.info("Metrics on {address}", address=metrics_port.getHost())
        port = await self.listener.listening
        log.info("UMOC listening on {address}", address=port.getHost())
        if self.settle_gc:
            gcpolicy.settle()

    def _start_failed(self, failure: Failure) -> None:
        """One line naming the cause (a traceback only for the unexpected, at debug level), then stop."""
        reason = describe_start_failure(failure)
        log.critical("UMOC could not start: {reason}", reason=reason)
        if not failure.check(StartupError, SchemaTooNewError, DatabaseUnavailableError):
            log.failure("The start-up failure in full", failure, level=LogLevel.debug)
        self.start_failure = reason
        for listener in (self.listener, self.metrics_listener):
            if listener is not None:
                # The one line above says it all: a second failing listener must not add a traceback.
                listener.listening.addErrback(lambda _: None)
        self.ready.errback(failure)
        if self._reactor.running:
            self._reactor.stop()

    def stopService(self) -> defer.Deferred[None]:
        service.Service.stopService(self)
        d = defer.ensureDeferred(self._stop())
        d.addBoth(self._close_storage)
        return d

    async def _stop(self) -> None:
        """The graceful stop of the module docstring; each wait ends at the shared deadline."""
        node, clock = self.node, self.node.services.clock
        deadline = clock.seconds() + self.config.server.shutdown_timeout
        self.purger.close()  # a purge under way ends after its batch in hand
        if self.listener.running:
            await self.listener.stopService()
        node.socketapp.router.close()
        if not await self._until(node.socketapp.router.idle(), deadline):
            log.warn("Stopping with events still running (server.shutdown_timeout)")
        node.engine.close_all()
        node.services.sessions.stop()
        node.lag.stop()
        if not await self._until(node.socketapp.idle(), deadline):
            log.warn("Stopping before every user's status was announced (server.shutdown_timeout)")
        outbound = defer.DeferredList(
            [defer.ensureDeferred(node.services.push.close()), defer.ensureDeferred(node.services.webhooks.close())],
            consumeErrors=True,
        )
        if not await self._until(outbound, deadline):
            log.warn("Stopping with pushes or webhooks still in flight (server.shutdown_timeout)")
        await node.http.close()
        if node.services.previews is not None:
            await node.services.previews.close()
        for child in reversed(list(self)):
            if child.running:
                try:
                    await child.stopService()
                except Exception:  # noqa: BLE001 - stop the others all the same
                    log.failure("Error stopping {service}", service=child)

    def _until(self, d: defer.Deferred[Any], deadline: float) -> defer.Deferred[bool]:
        """True when ``d`` fires before ``deadline``; False when the deadline comes first (``d`` is left alone)."""
        clock: IReactorTime = self.node.services.clock
        waiter: defer.Deferred[bool] = defer.Deferred()

        def settle(done: bool) -> None:
            if not waiter.called:
                waiter.callback(done)

        def fired(result: object) -> object:
            settle(True)
            return result

        def stop_timer(done: bool) -> bool:
            if call.active():
                call.cancel()
            return done

        call = clock.callLater(max(0.0, deadline - clock.seconds()), settle, False)
        d.addBoth(fired)
        waiter.addBoth(stop_timer)
        return waiter

    def _close_storage(self, result: Any) -> None:
        self.node.services.storage.close()
        if isinstance(result, Exception) or hasattr(result, "raiseException"):
            log.failure("Error stopping UMOC", result)
