"""One Redis connection per node, shared by rate limits, presence and the bus.

txredisapi reconnects by itself; this wrapper adds what UMOC needs on top:
a bounded wait on every command (``redis.timeout``, measured on the injected
clock) so that a Redis that hangs costs a request half a second at most, a
cheap "is there a connection at all" check so that requests do not even
wait while Redis is known to be away, and a reconnecting pub/sub
subscriber.

With ``redis.sentinels`` instead of ``redis.url``, both connections find
the master through ``umoc.cluster.sentinel`` on every (re)connect, so a
failover is followed like any other lost connection.

One connection, not a pool: txredisapi pipelines commands on a connection,
and a single connection keeps this node's commands in the order they were
issued, which presence relies on (an "open" must never overtake the
"close" that followed it).
"""

from __future__ import annotations

from typing import Any, Callable

import txredisapi
from twisted.internet import defer, endpoints, task
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger

from umoc.cluster.sentinel import FollowsFailover, MasterEndpoint, MasterOnly, Sentinels
from umoc.config import RedisConfig, RedisTarget, parse_host_port, parse_redis_url

__all__ = ["RedisClient", "RedisSubscriber", "redis_client"]

log = Logger()


class RedisClient:
    """Commands with a deadline, and whether a connection exists right now."""

    #: txredisapi's own reply timeout: a connection silent this long is dropped and rebuilt.
    REPLY_TIMEOUT = 10.0

    def __init__(self, url: str, clock: IReactorTime, timeout: float, sentinels: Sentinels | None = None) -> None:
        self.clock = clock
        self.timeout = timeout
        #: Where the master is, when it is found through Sentinel (``url`` is then unused).
        self.sentinels = sentinels
        if sentinels is not None:
            self.target = RedisTarget(password=sentinels.password)
            self._conn = self._through_sentinels(sentinels)
            return
        self.target = parse_redis_url(url)
        common: dict[str, Any] = {
            "dbid": self.target.db or None,  # no SELECT round trip for the default database
            "poolsize": 1,
            "reconnect": True,
            "password": self.target.password,
            "connectTimeout": max(1.0, timeout * 4),
            "replyTimeout": self.REPLY_TIMEOUT,
            "convertNumbers": False,
        }
        if self.target.path:
            self._conn = txredisapi.lazyUnixConnectionPool(self.target.path, **common)
        else:
            self._conn = txredisapi.lazyConnectionPool(self.target.host, self.target.port, **common)
        factory = getattr(self._conn, "_factory", None)
        if factory is not None:
            # Reconnect within two seconds of Redis coming back (txredisapi backs off to ten).
            factory.initialDelay, factory.maxDelay = 0.2, 2.0

    def _through_sentinels(self, sentinels: Sentinels) -> Any:
        """One lazy connection to whichever server the sentinels name master at each (re)connect."""
        factory = _MasterFactory(
            None,
            None,
            1,
            isLazy=True,
            password=self.target.password,
            replyTimeout=self.REPLY_TIMEOUT,
            convertNumbers=False,
        )
        factory.startConnecting(MasterEndpoint(self.clock, sentinels, max(1.0, self.timeout * 4)))
        return factory.handler

    @property
    def connected(self) -> bool:
        """Whether a live connection exists; without one, a command would only wait."""
        # ConnectionHandler keeps its factory private; the pool size is the honest answer.
        factory = getattr(self._conn, "_factory", None)
        return bool(factory is not None and factory.size > 0)

    async def wait_connected(self, timeout: float) -> bool:
        """At start-up: give the first connection ``timeout`` seconds to come up."""
        waited = 0.0
        while not self.connected and waited < timeout:
            await task.deferLater(self.clock, 0.05, lambda: None)
            waited += 0.05
        return self.connected

    def call(self, command: str, *args: Any) -> defer.Deferred[Any]:
        """Run one command; fails at once without a connection, and after ``timeout`` seconds without an answer.

        Without the first check a command would queue until Redis comes
        back, and every caller would pay the full timeout meanwhile.
        """
        if not self.connected:
            return defer.fail(txredisapi.ConnectionError("not connected to Redis"))
        d = defer.maybeDeferred(getattr(self._conn, command), *args)
        d.addTimeout(self.timeout, self.clock)
        return d

    def eval(self, script: str, keys: list[str], args: list[Any]) -> defer.Deferred[Any]:
        """A Lua script: atomic on the Redis side (EVALSHA after the first run)."""
        return self.call("eval", script, keys, args)

    def ping(self) -> defer.Deferred[bool]:
        """For /healthz: True when Redis answers PING in time."""
        d = self.call("ping")
        d.addCallback(lambda reply: reply in ("PONG", b"PONG"))
        return d

    def subscriber(
        self,
        channel: str,
        on_message: Callable[[str, Any], None],
        on_lost: Callable[[], None] | None = None,
        on_subscribed: Callable[[], None] | None = None,
    ) -> RedisSubscriber:
        endpoint = None
        if self.sentinels is not None:
            endpoint = MasterEndpoint(self.clock, self.sentinels, 5)
        return RedisSubscriber(self.target, self.clock, channel, on_message, on_lost, on_subscribed, endpoint)

    def close(self) -> defer.Deferred[Any]:
        d = self._conn.disconnect()
        if self.sentinels is not None:
            sentinels = self.sentinels
            d.addBoth(lambda _: sentinels.close())
        return d


def redis_client(config: RedisConfig, reactor: Any) -> RedisClient:
    """The client ``config`` asks for: a plain ``redis.url``, or the master behind ``redis.sentinels``."""
    if not config.sentinels:
        return RedisClient(config.url, reactor, config.timeout)
    addresses = [parse_host_port(entry) for entry in config.sentinels]
    sentinels = Sentinels(addresses, config.master_name, reactor, max(1.0, config.timeout * 2), config.password)
    return RedisClient("", reactor, config.timeout, sentinels)


class _MasterProtocol(MasterOnly, txredisapi.RedisProtocol):
    """A command connection that is used only once ROLE said master."""


class _MasterFactory(FollowsFailover, txredisapi.RedisFactory):
    protocol = _MasterProtocol


class _SubscriberProtocol(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.on_message(channel, message)

    def connectionLost(self, why: Any) -> None:
        super().connectionLost(why)
        self.factory.lost(self)


class _SubscriberFactory(txredisapi.RedisFactory):
    """Subscribes every new connection, so a reconnect resumes delivery by itself."""

    protocol = _SubscriberProtocol
    # Come back soon after Redis does: every second away is a second of catch-up.
    initialDelay = 0.2
    maxDelay = 2.0

    def __init__(
        self,
        target: RedisTarget,
        channel: str,
        on_message: Callable[[str, Any], None],
        on_lost: Callable[[], None] | None,
        on_subscribed: Callable[[], None] | None,
    ) -> None:
        super().__init__(None, None, 1, isLazy=True, password=target.password)
        self.channel = channel
        self.on_message = on_message
        self._on_lost = on_lost
        self._on_subscribed = on_subscribed
        self.subscribed = False
        self.current: Any = None
        self._waiting: list[defer.Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.whenConnected().addCallback(self._subscribe)
        return protocol

    def _subscribe(self, protocol: Any) -> None:
        self.current = protocol
        d = protocol.subscribe(self.channel)
        d.addCallback(self._subscribed)
        d.addErrback(lambda f: log.failure("Could not subscribe to {channel}", f, channel=self.channel))

    def _subscribed(self, _: Any) -> None:
        if not self.subscribed:
            log.info("Subscribed to Redis channel {channel}", channel=self.channel)
        self.subscribed = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        if self._on_subscribed is not None:
            self._on_subscribed()

    def lost(self, protocol: Any) -> None:
        if protocol is not self.current:
            return
        self.current = None
        self.subscribed = False
        if not self.disconnectCalled:
            log.warn("Lost the Redis subscriber connection; reconnecting")
            if self._on_lost is not None:
                self._on_lost()

    def when_subscribed(self) -> defer.Deferred[None]:
        if self.subscribed:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d


class _MasterSubscriberProtocol(MasterOnly, _SubscriberProtocol):
    """The bus subscription on the master only (a replica's would go quiet at the next switch)."""


class _MasterSubscriberFactory(FollowsFailover, _SubscriberFactory):
    protocol = _MasterSubscriberProtocol


class RedisSubscriber:
    """A pub/sub connection of its own (a subscribed connection can do nothing else)."""

    def __init__(
        self,
        target: RedisTarget,
        reactor: Any,
        channel: str,
        on_message: Callable[[str, Any], None],
        on_lost: Callable[[], None] | None = None,
        on_subscribed: Callable[[], None] | None = None,
        master: IStreamClientEndpoint | None = None,
    ) -> None:
        if master is not None:
            # Through Sentinel: the endpoint asks where the master is on every (re)connect.
            self._factory = _MasterSubscriberFactory(target, channel, on_message, on_lost, on_subscribed)
            self._factory.startConnecting(master)
            return
        self._factory = _SubscriberFactory(target, channel, on_message, on_lost, on_subscribed)
        endpoint: IStreamClientEndpoint
        if target.path:
            endpoint = endpoints.UNIXClientEndpoint(reactor, target.path, timeout=5)
        else:
            endpoint = endpoints.HostnameEndpoint(reactor, target.host, target.port, timeout=5)
        self._factory.startConnecting(endpoint)

    def when_subscribed(self) -> defer.Deferred[None]:
        """Fires once the first subscription is in place (messages published before it are missed)."""
        return self._factory.when_subscribed()

    @property
    def subscribed(self) -> bool:
        """Whether the connection is up and the SUBSCRIBE was answered (Redis may still have dropped it)."""
        return self._factory.subscribed and self._factory.current is not None

    @property
    def protocol(self) -> Any:
        """The live connection, if any."""
        return self._factory.current

    def resubscribe(self) -> None:
        """SUBSCRIBE again on the live connection (harmless if still subscribed)."""
        if self._factory.current is not None:
            self._factory._subscribe(self._factory.current)

    def reset(self) -> None:
        """Drop the connection at once; the factory reconnects and subscribes again."""
        current = self._factory.current
        if current is not None and current.transport is not None:
            current.transport.abortConnection()

    def close(self) -> defer.Deferred[Any]:
        return self._factory.disconnect()
