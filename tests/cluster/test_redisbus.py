"""The bus between nodes: one PUBLISH per reactor turn, delivered in order on the other node.

Redis pub/sub itself is covered end to end by ``tests/e2e/test_multinode.py``;
here a stand-in passes each PUBLISH to the other node's receiver, so the
batching is tested on a `Clock`.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, task
from twisted.trial import unittest

from tests.support.fakes import FakeSocket
from umoc.cluster.hub import Hub
from umoc.cluster.redisbus import BusReceiver, RedisBus
from umoc.domain import notices


class PubSub:
    """The part of `RedisClient` the bus uses: records every PUBLISH."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.published: list[tuple[str, str]] = []

    def call(self, command: str, channel: str, body: str) -> defer.Deferred[Any]:
        assert command == "publish"
        self.published.append((channel, body))
        return defer.succeed(1)


class BatchingTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.redis = PubSub()
        self.bus = RedisBus(self.redis, "node-a", "umoc:")  # type: ignore[arg-type]
        self.sender = Hub(remote=self.bus, session_ended=notices.session_ended)
        self.other = Hub(session_ended=notices.session_ended)
        self.receiver = BusReceiver(self.other, "node-b")
        self.bob, self.carol = FakeSocket(2, "s2", "bob", sid="b"), FakeSocket(3, "s3", "carol", sid="c")
        self.other.add(self.bob)
        self.other.add(self.carol)

    def deliver_published(self) -> None:
        for channel, body in self.redis.published:
            self.receiver.on_message(channel, body)

    def test_everything_emitted_in_one_turn_is_one_publish_delivered_in_order(self) -> None:
        self.sender.emit_to_users([2], "new_message", {"n": 1})
        self.sender.emit_to_users([2, 3], "new_message", {"n": 2})
        self.sender.end_session("s3", "logged out")
        self.assertEqual(self.redis.published, [], "nothing is published before the turn ends")
        self.redis.clock.advance(0)
        self.assertEqual(len(self.redis.published), 1)
        self.assertEqual(json.loads(self.redis.published[0][1])["k"], "b")
        self.deliver_published()
        self.assertEqual(self.bob.events("new_message"), [{"n": 1}, {"n": 2}])
        self.assertEqual(self.carol.events("new_message"), [{"n": 2}])
        self.assertEqual(self.carol.disconnected, "session ended")
        self.assertEqual(self.receiver.received["deliveries"], 2)
        self.assertEqual(self.bus.published, 1)

    def test_a_turn_with_one_event_publishes_it_alone(self) -> None:
        self.sender.emit_to_users([2], "new_message", {"n": 1})
        self.redis.clock.advance(0)
        self.sender.emit_to_users([2], "new_message", {"n": 2})
        self.redis.clock.advance(0)
        self.assertEqual([json.loads(body)["k"] for _, body in self.redis.published], ["u", "u"])
        self.deliver_published()
        self.assertEqual(self.bob.events("new_message"), [{"n": 1}, {"n": 2}])

    def test_flush_publishes_the_turns_batch_at_once(self) -> None:
        self.sender.end_session("s2", "bye")
        self.successResultOf(self.bus.flush())
        self.assertEqual(len(self.redis.published), 1)
        self.redis.clock.advance(0)
        self.assertEqual(len(self.redis.published), 1, "a flushed batch is not published again")

    def test_a_node_ignores_its_own_batch(self) -> None:
        self.sender.emit_to_users([2], "a", 1)
        self.sender.emit_to_users([2], "b", 2)
        self.redis.clock.advance(0)
        own = BusReceiver(self.other, "node-a")
        own.on_message("umoc:bus", self.redis.published[0][1])
        self.assertEqual(self.bob.received, [])
