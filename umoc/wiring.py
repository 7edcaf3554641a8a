"""Build one node from its configuration, once, in dependency order.

This is the only place that chooses between one node alone (in-memory rate
limits, local presence, no bus) and several nodes behind one Redis.  What
it returns is finished: nothing is swapped in afterwards.  ``umoc.service``
turns the result into running services (periodic tasks, Redis, the port).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Site

from umoc.cluster.buswatch import BusWatch
from umoc.cluster.hub import Hub
from umoc.cluster.presence import LocalPresence, Presence
from umoc.cluster.redisbus import BusReceiver, RedisBus, bus_channel
from umoc.cluster.redisclient import RedisClient, redis_client
from umoc.cluster.redispresence import RedisPresence
from umoc.config import Config
from umoc.domain import notices
from umoc.domain.accounts import Accounts
from umoc.domain.admin import Administration
from umoc.domain.catchup import CatchUp
from umoc.domain.files import FileManager
from umoc.domain.hooks import BeforeMessageHook
from umoc.domain.identity import Identities
from umoc.domain.oidc import OidcSignIn
from umoc.domain.outbox import Tail, node_holder
from umoc.domain.overload import ReactorLag, WriteAdmission
from umoc.domain.previews import LinkPreviews
from umoc.domain.push import PushNotifier
from umoc.domain.services import Services
from umoc.domain.sessions import SessionManager
from umoc.domain.status import StatusAnnouncer
from umoc.domain.tokens import TokenVerifier
from umoc.domain.webhooks import Webhooks
from umoc.events.router import Router, build_routes
from umoc.events.routes import ROUTE_GROUPS
from umoc.metrics import Metrics
from umoc.outbound import HttpClients, load_or_create_vapid_key
from umoc.outbound.agent import AddressPolicy
from umoc.outbound.previews import PreviewFetcher
from umoc.ratelimit import FailoverRatelimiter, MemoryRatelimiter, Ratelimiter, RedisRatelimiter, trusted_networks
from umoc.socketapp import UmocSocketApp
from umoc.storage import Storage, open_storage, rules_of
from umoc.storage.replica import ReadRouter
from umoc.transport.engine import EngineServer
from umoc.transport.gate import Gatekeeper
from umoc.transport.recovery import RecoveryStore
from umoc.transport.socketio import SocketIOConnection
from umoc.web.admin import admin_resource
from umoc.web.bots import bot_resource
from umoc.web.export import export_resource
from umoc.web.push import push_resource
from umoc.web.serverapi import server_api_resource
from umoc.web.site import UmocSite, build_metrics_site, build_site
from umoc.web.uploads import Uploads

__all__ = ["AdminTools", "Cluster", "Node", "build_admin", "build_node"]


@dataclass(frozen=True)
class Cluster:
    """The Redis side of a node that shares Redis with others."""

    redis: RedisClient
    presence: RedisPresence
    bus: RedisBus
    receiver: BusReceiver
    channel: str
    #: Notices gaps in the bus; the node's `CatchUp` listens.
    watch: BusWatch
    catchup: CatchUp


@dataclass(frozen=True)
class Node:
    """Everything one node is made of, ready to be started by ``umoc.service``."""

    services: Services
    socketapp: UmocSocketApp
    engine: EngineServer
    site: UmocSite
    cluster: Cluster | None
    #: ``/metrics`` on its own endpoint (``metrics.listen``), else None.
    metrics_site: Site | None
    status: StatusAnnouncer
    #: Outbound HTTP (pushes, webhooks): its connection pools close when the node stops.
    http: HttpClients
    #: How late the reactor runs (overload admission); the service starts and stops it.
    lag: ReactorLag


def _replica_metrics(metrics: Metrics, reads: ReadRouter) -> None:
    """With ``database.read_dsn``: how far behind the replica is, and which side answered the reads it may take."""
    metrics.gauge(
        "umoc_replica_lag_seconds",
        "Age of the newest primary position the replica (database.read_dsn) has replayed (+Inf: none)",
        reads.lag,
    )
    metrics.counter(
        "umoc_replica_reads",
        "History, search, sync and export reads, by the side that answered them",
        lambda: dict(reads.served),
        "side",
    )


def _redis_metrics(metrics: Metrics, cluster: Cluster) -> None:
    """The bus's publish and receive counts and Redis's state, read when scraped."""
    bus, receiver, redis, watch = cluster.bus, cluster.receiver, cluster.redis, cluster.watch
    metrics.counter("umoc_bus_published", "Publications on the Redis bus answered by Redis", lambda: bus.published)
    metrics.counter(
        "umoc_bus_publish_failures",
        "Publications on the Redis bus that failed or timed out",
        lambda: bus.publish_failures,
    )
    metrics.counter(
        "umoc_bus_received",
        "Messages from other nodes on the Redis bus, by kind",
        lambda: dict(receiver.received),
        "kind",
    )
    metrics.gauge("umoc_redis_connected", "1 while the Redis command connection is up", lambda: int(redis.connected))
    metrics.gauge(
        "umoc_bus_ok",
        "1 while the bus self-ping finds no gap (0: deliveries may be missed)",
        lambda: int(watch.gap_start is None),
    )
    catchup = cluster.catchup
    metrics.counter(
        "umoc_catchup_replayed",
        "Live events a bus gap lost, replayed from the change feed (one per user and change)",
        lambda: catchup.replayed,
    )
    metrics.counter(
        "umoc_catchup_hints",
        "sync_needed sent after a bus gap that could not be replayed exactly",
        lambda: catchup.hinted,
    )


def _identities(
    config: Config, clock: IReactorTime, storage: Storage, sessions: SessionManager, http: HttpClients
) -> Identities:
    """Token sign-in: a verifier when ``auth.jwt`` is on (its key set fetched with the trusted client)."""
    verifier = TokenVerifier(config.auth.jwt, clock, http.trusted) if config.auth.jwt.enabled else None
    return Identities(config, verifier, storage.identities, sessions, clock)


def build_node(config: Config, reactor: Any, storage: Storage | None = None, threads_reactor: Any = None) -> Node:
    """Storage, cluster, domain, edges and the Site, in that order.

    ``threads_reactor`` is for a node run on a `Clock` (tests): the real
    reactor that password hashes report back to from their threads.
    """
    clock: IReactorTime = reactor
    storage = storage or open_storage(config, clock)
    storage.db.rules = rules_of(config)  # also on a storage built elsewhere (tests): the configuration's rules
    recovery = RecoveryStore(clock, config.engineio.recovery_window) if config.engineio.recovery_window > 0 else None
    ratelimiter: Ratelimiter
    presence: Presence
    redis_side: tuple[RedisClient, RedisBus, BusWatch, RedisPresence] | None = None
    if config.redis.enabled:
        cfg = config.redis
        node_id = uuid.uuid4().hex
        redis = redis_client(cfg, reactor)
        # The catch-up is made below (it needs the hub, which needs this bus): the listener looks it up when called.
        watch = BusWatch(
            redis,
            node_id,
            bus_channel(cfg.prefix),
            clock,
            cfg.bus_check_interval,
            listeners=[lambda since: catchup.request(since)],
            resubscribed=[lambda: catchup.hold_for_gap()],
        )
        bus = RedisBus(redis, node_id, cfg.prefix, watch)
        hub = Hub(recovery, remote=bus, clock=clock, session_ended=notices.session_ended)
        ratelimiter = FailoverRatelimiter(
            redis,
            RedisRatelimiter(redis, clock, config.ratelimits, cfg.prefix),
            MemoryRatelimiter(clock, config.ratelimits),
            clock,
        )
        presence = redis_presence = RedisPresence(redis, hub, node_id, cfg.prefix, cfg.presence_ttl)
        redis_side = (redis, bus, watch, redis_presence)
    else:
        hub = Hub(recovery, clock=clock, session_ended=notices.session_ended)
        ratelimiter = MemoryRatelimiter(clock, config.ratelimits)
        presence = LocalPresence(hub)
    metrics = Metrics(storage.db.transactions)
    # Web Push endpoints are the clients' choice: the guarded client; gateways and webhooks are the
    # operator's: the trusted one.  The VAPID key is made on first start.
    http = HttpClients.from_config(reactor, clock, config.outbound)
    # Pushes and webhooks are delivered from the change feed (the outbox), by the node holding each lease.
    tail = Tail(storage.outbox, config.feed, node_holder())
    push = PushNotifier(
        storage,
        presence,
        clock,
        config.push,
        metrics,
        http.guarded,
        load_or_create_vapid_key(config.data_path, config.push.vapid_private_key_file),
        gateway_http=http.trusted,
        tail=tail,
    )
    webhooks = Webhooks(config.webhooks, config.webhook_delivery, http.trusted, clock, metrics, tail)
    metrics.gauge("umoc_push_queue", "Pushes waiting for a slot on this node", lambda: len(push.queue))
    metrics.gauge(
        "umoc_webhook_queue",
        "Webhook deliveries waiting for a slot on this node (retries included)",
        lambda: len(webhooks.queue),
    )
    metrics.gauge(
        "umoc_connected_sockets", "Sockets connected to this node, by transport", hub.sockets_by_transport, "transport"
    )
    metrics.gauge("umoc_connected_users", "Users with a socket on this node", lambda: len(hub.by_user))
    metrics.counter(
        "umoc_messages_delivered", "new_message sent to a socket of this node", lambda: hub.messages_delivered
    )
    sessions = SessionManager(
        storage.users, hub, clock, config.sessions, config.registration.mode, threads_reactor or reactor
    )
    metrics.gauge("umoc_password_hashes", "Password hashes queued or running on this node", lambda: sessions.hashing)
    metrics.counter(
        "umoc_password_hashes_refused",
        "Logins, registrations and password checks refused: sessions.password_queue were waiting",
        lambda: sessions.hashes_refused,
    )
    files = FileManager(storage, clock, config.uploads, config.uploads_path, threads_reactor)
    db = storage.db

    lag = ReactorLag(clock)

    def write_wait() -> float:
        return db.writer.oldest_wait()

    metrics.gauge(
        "umoc_write_wait_seconds",
        "How long the oldest write waiting to commit has waited (server.overload_wait refuses writes past it)",
        write_wait,
    )
    metrics.gauge(
        "umoc_reactor_lag_seconds",
        "How late the reactor runs what is due (server.overload_lag refuses writes past it)",
        lag.lag,
    )
    if storage.reads.replicated:
        _replica_metrics(metrics, storage.reads)
    services = Services(
        config=config,
        clock=clock,
        storage=storage,
        hub=hub,
        presence=presence,
        ratelimiter=ratelimiter,
        metrics=metrics,
        sessions=sessions,
        files=files,
        push=push,
        webhooks=webhooks,
        accounts=Accounts(storage, sessions, hub, files, clock),
        admission=WriteAdmission(
            write_wait, config.server.overload_wait, clock, metrics, lag.lag, config.server.overload_lag
        ),
        previews=LinkPreviews(
            storage,
            hub,
            clock,
            config,
            PreviewFetcher(
                reactor,
                clock,
                config.previews,
                AddressPolicy.from_config(config.outbound.allowed_hosts),
                files.thumbnailer.run,
                files.preview_image_path,
                config.outbound.max_answer_headers,
                in_thread=files.thumbnailer.cpu,
            ),
        ),
        identities=(identities := _identities(config, clock, storage, sessions, http)),
        oidc=OidcSignIn(config, identities, http.trusted, clock),
        before_message=(
            BeforeMessageHook(config.hooks.before_message, http.trusted, clock)
            if config.hooks.before_message.url
            else None
        ),
    )
    cluster: Cluster | None = None
    if redis_side is not None:
        redis, bus, watch, redis_presence = redis_side
        catchup = CatchUp(hub, storage, clock, lambda: watch.gap_start is None, presence)
        receiver = BusReceiver(hub, bus.node_id, watch)
        cluster = Cluster(redis, redis_presence, bus, receiver, bus.channel, watch, catchup)
        _redis_metrics(metrics, cluster)
    status = StatusAnnouncer(presence, storage, hub, clock)
    socketapp = UmocSocketApp(services, Router(services, build_routes(ROUTE_GROUPS)), status)
    engine = EngineServer(
        clock,
        config.engineio,
        lambda session: SocketIOConnection(
            session,
            socketapp,
            max_depth=config.messages.max_payload_depth + 4,
            connect_timeout=config.engineio.connect_timeout,
            recovery=recovery,
        ),
        unlimited=trusted_networks(config.ratelimits.trusted_networks),
    )
    uploads = Uploads(services.files, services.sessions, config.max_plain_body, services.admission)
    admin = Administration(storage, services.sessions, hub, clock, webhooks)
    redis_ping: Any = cluster.redis.ping if cluster is not None else None
    gate = Gatekeeper(config.server.allowed_origins, config.server.trusted_proxies)
    site = build_site(
        services,
        engine,
        gate,
        {
            **uploads.resources(),
            b"admin": admin_resource(admin, services, gate),
            b"push": push_resource(push),
            b"bot": bot_resource(services),
            b"export": export_resource(services),
            b"server": server_api_resource(services),
        },
        redis_ping,
        uploads.request_factory(),
    )
    metrics_site = build_metrics_site(services) if config.metrics.listen else None
    return Node(services, socketapp, engine, site, cluster, metrics_site, status, http, lag)


@dataclass(frozen=True)
class AdminTools:
    """What ``umoc-admin`` works with: the same `Services` and `Administration` a node's admin API has.

    Its hub has no sockets; when Redis is configured (and reachable) its bus
    reaches every running node, so ended sessions and deleted messages are
    told there at once.  It delivers no webhook itself: its changes are in
    the feed like every edge's, and the node tailing the ``webhooks``
    consumer delivers them (within ``feed.consumer_poll_interval``, or when
    a node next starts), with retries, as for the admin API.
    """

    services: Services
    admin: Administration
    #: The Redis bus to the running nodes, None without Redis (or when it was unreachable).
    bus: RedisBus | None
    redis: RedisClient | None
    http: HttpClients

    async def close(self) -> None:
        """Deliver what is in flight, then close everything `build_admin` opened."""
        services = self.services
        await services.webhooks.close()
        if self.bus is not None:
            await self.bus.flush()
        if self.redis is not None:
            await self.redis.close()
        await self.http.close()
        services.sessions.stop()
        services.storage.close()


async def build_admin(config: Config, reactor: Any, warn: Callable[[str], None], storage: Storage) -> AdminTools:
    """The services on ``storage`` (opened and checked by the caller), and a hub to the running nodes.

    Nothing here creates or migrates the database: ``umoc-admin`` checks
    that its schema is the code's before it calls this, and refuses
    otherwise.  ``warn`` is told, in one line for the operator, when Redis
    is configured but not reachable.
    """
    clock: IReactorTime = reactor
    metrics = Metrics(storage.db.transactions)
    redis: RedisClient | None = None
    bus: RedisBus | None = None
    if config.redis.enabled:
        redis = redis_client(config.redis, reactor)
        if await redis.wait_connected(max(2.0, config.redis.timeout * 4)):
            bus = RedisBus(redis, f"admin-{uuid.uuid4().hex}", config.redis.prefix)
        else:
            warn(
                "Redis is not reachable; running nodes notice ended sessions within sessions.check_interval "
                f"({config.sessions.check_interval:g}s)"
            )
    hub = Hub(remote=bus, clock=clock, session_ended=notices.session_ended)
    presence = LocalPresence(hub)
    http = HttpClients.from_config(reactor, clock, config.outbound)
    webhooks = Webhooks(config.webhooks, config.webhook_delivery, http.trusted, clock, metrics)
    sessions = SessionManager(storage.users, hub, clock, config.sessions, config.registration.mode)
    sessions.start()
    files = FileManager(storage, clock, config.uploads, config.uploads_path)
    services = Services(
        config=config,
        clock=clock,
        storage=storage,
        hub=hub,
        presence=presence,
        ratelimiter=MemoryRatelimiter(clock, config.ratelimits),
        metrics=metrics,
        sessions=sessions,
        files=files,
        # The CLI pushes nothing (no message or contact request is made here): no VAPID key, no HTTP.
        push=PushNotifier(storage, presence, clock, config.push, metrics, None, None),
        webhooks=webhooks,
        accounts=Accounts(storage, sessions, hub, files, clock),
        # The operator's own commands are never refused: nothing else writes through this process.
        admission=WriteAdmission(lambda: 0.0, 0, clock),
        identities=(identities := _identities(config, clock, storage, sessions, http)),
        oidc=OidcSignIn(config, identities, http.trusted, clock),
    )
    admin = Administration(storage, sessions, hub, clock, webhooks)
    return AdminTools(services, admin, bus, redis, http)
