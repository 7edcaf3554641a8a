"""Deliveries between nodes over Redis pub/sub (a `umoc.cluster.hub.RemoteBus`).

Every node publishes on one channel, ``<prefix>bus``, and subscribes to it.
A message is JSON::

    {"n": "<node id>", "k": "u", "u": [user ids], "f": [frames], "o": offset, "i": delivery key}
                                                                   deliver to users
    {"n": "<node id>", "k": "s", "s": "<session id>", "m": "..."}  end a session
    {"n": "<node id>", "k": "p", "p": 7}                           a node's self-ping
    {"n": "<node id>", "k": "c", "t": 1700000000.5}                catch up since then
    {"n": "<node id>", "k": "b", "b": [{"k": "u", ...}, {"k": "s", ...}]}
                                                                   several of the first two, in order

Frames are the already-encoded Socket.IO frames (``'2["new_message",{..}]'``);
binary attachments travel as ``{"b": base64}``.  The receiving node wraps
them for Engine.IO once and hands them to its local sockets, so an event is
serialised once on the node that emitted it, whatever the number of nodes.
A node ignores its own messages (it has delivered locally already).

Deliveries and session ends are published once per reactor turn: what a
turn emitted (say, every ``send_message`` whose transaction finished in it)
goes out as one ``"b"`` message, so the PUBLISH, its reply and the other
nodes' pub/sub parsing are paid once per turn, not once per event.  A turn
with one event publishes it alone, as before.  ``o``
is the event's connection-state-recovery offset (absent when recovery is
off), so the receiving node can keep the event for replay too.  ``i`` is
the delivery key of the change the event tells of (a ``new_message``'s
id, or ``umoc.domain.notices.replay``'s key of another change), so the
catch-up after a gap never delivers it twice.

Pub/sub is fire-and-forget: a node that is disconnected from Redis misses
what is published meanwhile.  ``umoc.cluster.buswatch`` notices (the last
two kinds are its own) and the node catches its sockets up from the
database (``umoc.domain.catchup``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from umoc.cluster.buswatch import BusWatch
from umoc.cluster.hub import Hub
from umoc.cluster.redisclient import RedisClient
from umoc.transport.engine import Outgoing

__all__ = ["BusReceiver", "RedisBus", "bus_channel"]

log = Logger()


def _pack_frames(frames: list[str | bytes]) -> list[Any]:
    return [f if isinstance(f, str) else {"b": base64.b64encode(f).decode("ascii")} for f in frames]


def _unpack_frames(items: list[Any]) -> list[str | bytes]:
    return [item if isinstance(item, str) else base64.b64decode(item["b"]) for item in items]


def bus_channel(prefix: str) -> str:
    return f"{prefix}bus"


class RedisBus:
    """Publishes this node's deliveries (the hub's `RemoteBus`)."""

    def __init__(self, redis: RedisClient, node_id: str, prefix: str, watch: BusWatch | None = None) -> None:
        self._redis = redis
        self.node_id = node_id
        self.channel = bus_channel(prefix)
        self._watch = watch
        self._failing = False
        self._pending: set[defer.Deferred[Any]] = set()
        #: Deliveries and session ends of this reactor turn, published together at its end.
        self._batch: list[dict[str, Any]] = []
        self._batch_at = 0.0
        #: Publications answered by Redis, and refused or unanswered (plain numbers, read by metrics).
        self.published = 0
        self.publish_failures = 0

    # -- RemoteBus --------------------------------------------------------

    def publish_to_users(
        self, user_ids: list[int], frames: list[str | bytes], offset: str | None = None, key: str | None = None
    ) -> None:
        if user_ids:
            body: dict[str, Any] = {"k": "u", "u": list(user_ids), "f": _pack_frames(frames)}
            if offset is not None:
                body["o"] = offset
            if key is not None:
                body["i"] = key
            self._add(body)

    def publish_end_session(self, session_id: str, message: str) -> None:
        self._add({"k": "s", "s": session_id, "m": message})

    def _add(self, item: dict[str, Any]) -> None:
        """Queue one publication for the end of this reactor turn (the first one schedules it)."""
        if not self._batch:
            self._batch_at = self._redis.clock.seconds()
            self._redis.clock.callLater(0, self._publish_batch)
        self._batch.append(item)

    def _publish_batch(self) -> None:
        batch, self._batch = self._batch, []
        if len(batch) == 1:
            self._publish({"n": self.node_id, **batch[0]}, self._batch_at)
        elif batch:
            self._publish({"n": self.node_id, "k": "b", "b": batch}, self._batch_at)

    def _publish(self, body: dict[str, Any], at: float) -> None:
        d = self._redis.call("publish", self.channel, json.dumps(body, separators=(",", ":"), ensure_ascii=False))
        d.addCallbacks(self._published, self._publish_failed, errbackArgs=(at,))
        if not d.called:
            self._pending.add(d)
            d.addBoth(self._done, d)

    def _done(self, result: Any, d: defer.Deferred[Any]) -> Any:
        self._pending.discard(d)
        return result

    def flush(self) -> defer.Deferred[Any]:
        """Publishes this turn's batch now; fires when every publication so far is answered (or has failed)."""
        self._publish_batch()
        return defer.DeferredList(list(self._pending), consumeErrors=True)

    def _published(self, _: Any) -> None:
        self.published += 1
        if self._failing:
            self._failing = False
            log.info("Publishing to Redis works again")

    def _publish_failed(self, failure: Any, at: float) -> None:
        self.publish_failures += 1
        if self._watch is not None:
            self._watch.publish_failed(at)
        # Logged once per outage, not once per event.
        if not self._failing:
            self._failing = True
            log.warn("Cannot publish to Redis ({why}); other nodes miss deliveries", why=failure.getErrorMessage())


class BusReceiver:
    """Delivers the other nodes' publications to this node's sockets."""

    def __init__(self, hub: Hub, node_id: str, watch: BusWatch | None = None) -> None:
        self._hub = hub
        self.node_id = node_id
        self._watch = watch
        #: Messages from the other nodes, by kind (plain numbers, read by metrics).
        self.received = {"deliveries": 0, "session_ends": 0, "catch_up": 0, "malformed": 0}

    def on_message(self, channel: Any, message: Any) -> None:
        """One pub/sub message; anything malformed is logged and dropped."""
        try:
            body = json.loads(message)
            kind = body.get("k")
            if body.get("n") == self.node_id:
                if kind == "p" and self._watch is not None:
                    self._watch.on_ping(body.get("p"))
                return
            if kind == "b":
                for item in body["b"]:
                    self._on_item(item)
            elif kind == "c" and self._watch is not None:
                self.received["catch_up"] += 1
                self._watch.peer_request(body)
            else:
                self._on_item(body)
        except Exception:  # noqa: BLE001 - one bad message must not stop the subscriber
            self.received["malformed"] += 1
            log.failure("Dropping a malformed bus message")

    def _on_item(self, body: dict[str, Any]) -> None:
        """One delivery or session end (alone or from a batch)."""
        kind = body.get("k")
        if kind == "u":
            self.received["deliveries"] += 1
            local = [u for u in body["u"] if self._hub.is_local(u)]
            if local:
                offset, key = body.get("o"), body.get("i")
                self._hub.deliver_local(
                    local,
                    Outgoing.from_socketio(_unpack_frames(body["f"])),
                    offset if isinstance(offset, str) else None,
                    key if isinstance(key, str) else None,
                )
        elif kind == "s":
            self.received["session_ends"] += 1
            self._hub.end_session_local(str(body["s"]), str(body["m"]))
