"""Whether this node's Redis bus works, and when a gap in it began and ended.

Pub/sub is fire-and-forget: while a node's subscription is down (its
connection lost, or dropped by Redis without a word) it misses what the
other nodes publish, and while its commands fail the other nodes miss what
it publishes.  `BusWatch` notices both and says, when the bus works again,
since when deliveries may have been lost; ``umoc.domain.catchup`` then
replays what the database holds since then.

How a gap is noticed::

    every `interval`     -> PUBLISH <prefix>bus {"n": me, "k": "p", "p": 7}   a self-ping
    <- {"n": me, "k": "p", "p": 7}  within `deadline`: the bus works (both ways)
    no answer in time, the subscriber connection lost, or a PUBLISH failed: a gap

A gap begins when the last ping that came back was sent (everything
published before it reached this node).  It ends when a ping comes back
again; the listeners are then called with that time.  A ping that does not
come back while the subscriber believes itself subscribed means the
subscription was dropped silently: the watch subscribes again, and on a
second miss drops the connection so that it is rebuilt.

When this node's own publications failed during the gap, it also asks the
other nodes to catch up, once the bus works::

    -> PUBLISH <prefix>bus {"n": me, "k": "c", "t": <epoch seconds of the first failure>}

A node that is away from Redis while that request goes out misses it; its
own gap covers it only when the gaps overlap (documented in the operator
guide).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.cluster.redisclient import RedisClient

__all__ = ["BusWatch", "Subscription"]

log = Logger()


class Subscription(Protocol):
    """What the watch may do to a subscriber that stopped delivering."""

    @property
    def subscribed(self) -> bool: ...

    def resubscribe(self) -> None: ...

    def reset(self) -> None: ...


class BusWatch:
    """Self-pings on the bus; calls ``listeners(since)`` when a gap ends or another node asks."""

    def __init__(
        self,
        redis: RedisClient,
        node_id: str,
        channel: str,
        clock: IReactorTime,
        interval: float,
        listeners: Iterable[Callable[[float], Any]] = (),
        resubscribed: Iterable[Callable[[], Any]] = (),
    ) -> None:
        self._redis = redis
        self.node_id = node_id
        self.channel = channel
        self._clock = clock
        #: How often `tick` should run (the service schedules it).
        self.interval = interval
        #: A ping not back after this long counts as lost.
        self.deadline = max(interval * 1.5, redis.timeout * 2)
        #: Called with epoch seconds: deliveries since then may have been missed here.
        self.listeners: tuple[Callable[[float], Any], ...] = tuple(listeners)
        #: Called when the subscription is back during a gap, before the ping that will end it.
        self.resubscribed: tuple[Callable[[], Any], ...] = tuple(resubscribed)
        #: When the last ping that came back was sent: the bus worked until then at least.
        self.last_ok = clock.seconds()
        #: Start of the current gap, None while the bus works.
        self.gap_start: float | None = None
        self._publish_failed_at: float | None = None
        self._outstanding: dict[int, float] = {}
        self._counter = 0
        self._misses = 0
        self._subscription: Subscription | None = None

    def attach(self, subscription: Subscription) -> None:
        """The subscriber to repair (created when the service starts)."""
        self._subscription = subscription

    # -- the periodic check -------------------------------------------------

    def tick(self) -> defer.Deferred[None]:
        """Count pings that did not come back, then send the next one."""
        now = self._clock.seconds()
        lost = [token for token, sent in self._outstanding.items() if now - sent >= self.deadline]
        for token in lost:
            del self._outstanding[token]
        if lost:
            self._missed()
        return self.ping()

    def ping(self) -> defer.Deferred[None]:
        self._counter += 1
        token, sent = self._counter, self._clock.seconds()
        body = json.dumps({"n": self.node_id, "k": "p", "p": token}, separators=(",", ":"))
        d = self._redis.call("publish", self.channel, body)

        def published(_: Any) -> None:
            self._outstanding[token] = sent

        def failed(failure: Any) -> None:
            self._begin("Redis does not take commands")

        d.addCallbacks(published, failed)
        return d

    def _missed(self) -> None:
        self._begin("a bus self-ping did not come back")
        subscription = self._subscription
        if subscription is None or not subscription.subscribed:
            return  # reconnecting already: nothing to repair
        self._misses += 1
        if self._misses == 1:
            log.warn("Redis dropped this node's subscription silently; subscribing again")
            subscription.resubscribe()
        else:
            log.warn("Redis subscription still silent; reconnecting it")
            subscription.reset()
            self._misses = 0

    # -- what the subscriber and the bus report -------------------------------

    def on_ping(self, token: Any) -> None:
        """One of this node's pings came back."""
        sent = self._outstanding.pop(token, None) if isinstance(token, int) else None
        if sent is None:
            return
        # Earlier pings still out were lost on the way; only this one counts.
        for older in [t for t in self._outstanding if t < token]:
            del self._outstanding[older]
        self._misses = 0
        self.last_ok = max(self.last_ok, sent)
        if self.gap_start is not None:
            self._end()

    def subscription_lost(self) -> None:
        self._begin("the Redis subscriber connection was lost")

    def subscribed(self) -> None:
        """A (re)subscription is in place: check it at once rather than at the next tick."""
        if self.gap_start is not None:
            for listener in self.resubscribed:
                try:
                    listener()
                except Exception:  # noqa: BLE001 - the ping must still go out
                    log.failure("Resubscription listener failed")
            self.ping()

    def publish_failed(self, at: float) -> None:
        """A PUBLISH of this node failed: the other nodes missed it."""
        if self._publish_failed_at is None:
            self._publish_failed_at = at
        self._begin("publishing to Redis failed")

    def peer_request(self, body: dict[str, Any]) -> None:
        """Another node's publications failed for a while: catch up since then."""
        since = body.get("t")
        if isinstance(since, (int, float)) and not isinstance(since, bool):
            log.info("Node {node} asks for a catch-up since {since}", node=body.get("n"), since=since)
            self._notify(float(since))

    # -- gaps -----------------------------------------------------------------

    def _begin(self, why: str) -> None:
        if self.gap_start is None:
            self.gap_start = self.last_ok
            log.warn("Redis bus gap ({why}): this node may miss or drop deliveries until it works again", why=why)

    def _end(self) -> None:
        since, self.gap_start = self.gap_start, None
        assert since is not None
        log.info("Redis bus works again; catching up deliveries since {since}", since=since)
        failed_at, self._publish_failed_at = self._publish_failed_at, None
        if failed_at is not None:
            body = json.dumps({"n": self.node_id, "k": "c", "t": failed_at}, separators=(",", ":"))
            d = self._redis.call("publish", self.channel, body)
            d.addErrback(
                lambda f: log.warn("Could not ask the other nodes to catch up: {why}", why=f.getErrorMessage())
            )
        self._notify(since)

    def _notify(self, since: float) -> None:
        for listener in self.listeners:
            try:
                listener(since)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.failure("Bus gap listener failed")
