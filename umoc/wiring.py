"""Build one node from its configuration, once, in dependency order.

This is the only place that chooses between one node alone (in-memory rate
limits, local presence, no bus) and several nodes behind one Redis.  What
it returns is finished: nothing is swapped in afterwards.  ``umoc.service``
turns the result into running services (periodic tasks, Redis, the port).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Site

from umoc.cluster.buswatch import BusWatch
from umoc.cluster.hub import Hub
from umoc.cluster.presence import LocalPresence, Presence
from umoc.cluster.redisbus import BusReceiver, RedisBus, bus_channel
from umoc.cluster.redisclient import RedisClient
from umoc.cluster.redispresence import RedisPresence
from umoc.config import Config
from umoc.domain import notices
from umoc.domain.accounts import Accounts
from umoc.domain.admin import Administration
from umoc.domain.catchup import CatchUp
from umoc.domain.files import FileManager
from umoc.domain.push import PushNotifier
from umoc.domain.services import Services
from umoc.domain.sessions import SessionManager
from umoc.domain.status import StatusAnnouncer
from umoc.domain.webhooks import Webhooks
from umoc.events.router import Router, build_routes
from umoc.events.routes import ROUTE_GROUPS
from umoc.metrics import Metrics
from umoc.outbound import HttpClient, load_or_create_vapid_key
from umoc.ratelimit import FailoverRatelimiter, MemoryRatelimiter, Ratelimiter, RedisRatelimiter
from umoc.socketapp import UmocSocketApp
from umoc.storage import Storage, open_storage
from umoc.transport.engine import EngineServer
from umoc.transport.gate import Gatekeeper
from umoc.transport.recovery import RecoveryStore
from umoc.transport.socketio import SocketIOConnection
from umoc.web.admin import admin_resource
from umoc.web.bots import bot_resource
from umoc.web.export import export_resource
from umoc.web.push import push_resource
from umoc.web.site import UmocSite, build_metrics_site, build_site
from umoc.web.uploads import Uploads

__all__ = ["Cluster", "Node", "build_node", "build_tool_services"]


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
    #: Outbound HTTP (pushes, webhooks): its connection pool closes when the node stops.
    http: HttpClient


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


def build_tool_services(
    config: Config, reactor: Any, storage: Storage, hub: Hub, sessions: SessionManager, http: HttpClient
) -> Services:
    """The `Services` of a tool beside the running nodes (``umoc-admin``), so it calls the same commands.

    It has no sockets of its own: ``hub`` reaches the nodes' sockets through
    the Redis bus when there is one (else members see a change when they next
    load or sync: every command writes its feed row).  Webhooks are sent from
    here through ``http`` (the tool waits for first attempts before it
    exits); nothing is pushed (it holds no VAPID key) and nothing is rate limited.
    """
    metrics = Metrics()
    presence = LocalPresence(hub)
    files = FileManager(storage, reactor, config.uploads, config.uploads_path)
    return Services(
        config=config,
        clock=reactor,
        storage=storage,
        hub=hub,
        presence=presence,
        ratelimiter=MemoryRatelimiter(reactor, config.ratelimits),
        metrics=metrics,
        sessions=sessions,
        files=files,
        push=PushNotifier(storage, presence, reactor, config.push, metrics, None, None),
        webhooks=Webhooks(config.webhooks, config.webhook_delivery, http, reactor, metrics),
        accounts=Accounts(storage, sessions, hub, files, reactor),
    )


def build_node(config: Config, reactor: Any, storage: Storage | None = None, threads_reactor: Any = None) -> Node:
    """Storage, cluster, domain, edges and the Site, in that order.

    ``threads_reactor`` is for a node run on a `Clock` (tests): the real
    reactor that password hashes report back to from their threads.
    """
    clock: IReactorTime = reactor
    storage = storage or open_storage(config, clock)
    recovery = RecoveryStore(clock, config.engineio.recovery_window) if config.engineio.recovery_window > 0 else None
    ratelimiter: Ratelimiter
    presence: Presence
    redis_side: tuple[RedisClient, RedisBus, BusWatch, RedisPresence] | None = None
    if config.redis.url:
        cfg = config.redis
        node_id = uuid.uuid4().hex
        redis = RedisClient(cfg.url, reactor, cfg.timeout)
        watch = BusWatch(redis, node_id, bus_channel(cfg.prefix), clock, cfg.bus_check_interval)
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
    metrics = Metrics()
    # One pool of outbound connections for pushes and webhooks; the VAPID key is made on first start.
    http = HttpClient(reactor, clock)
    push = PushNotifier(
        storage, presence, clock, config.push, metrics, http, load_or_create_vapid_key(config.data_path)
    )
    webhooks = Webhooks(config.webhooks, config.webhook_delivery, http, clock, metrics)
    metrics.gauge("umoc_push_queue", "Pushes waiting for a slot on this node", lambda: len(push.queue))
    metrics.gauge(
        "umoc_webhook_queue",
        "Webhook deliveries waiting for a slot on this node (retries included)",
        lambda: len(webhooks.queue),
    )
    storage.db.observe = metrics.transaction_done
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
    files = FileManager(storage, clock, config.uploads, config.uploads_path)
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
    )
    cluster: Cluster | None = None
    if redis_side is not None:
        redis, bus, watch, redis_presence = redis_side
        catchup = CatchUp(hub, storage, clock, lambda: watch.gap_start is None)
        watch.listeners.append(catchup.request)
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
    )
    uploads = Uploads(services.files, services.sessions, config.max_plain_body)
    admin = Administration(storage, services.sessions, hub, clock, webhooks, services.accounts)
    redis_ping: Any = cluster.redis.ping if cluster is not None else None
    site = build_site(
        services,
        engine,
        Gatekeeper(config.server.allowed_origins, config.server.trusted_proxies),
        {
            **uploads.resources(),
            b"admin": admin_resource(admin, services),
            b"push": push_resource(push),
            b"bot": bot_resource(services),
            b"export": export_resource(services),
        },
        redis_ping,
    )
    site.requestFactory = uploads.request_factory()
    metrics_site = build_metrics_site(services) if config.metrics.listen else None
    return Node(services, socketapp, engine, site, cluster, metrics_site, status, http)
