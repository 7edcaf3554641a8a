"""The outbound queue's fairness and bounds, the webhook signature, and the push config checks: no ports needed.

The queue runs on a `Clock`, with jobs that never finish unless the test fires them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Callable

from twisted.internet import defer, task
from twisted.trial import unittest

from umoc.config import ConfigError, parse_config
from umoc.outbound import OutboundQueue, sign_webhook


class Stuck:
    """Jobs that never finish unless the test fires them: each call records its name and hangs."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.pending: dict[str, defer.Deferred[None]] = {}

    def job(self, name: str) -> Callable[[], defer.Deferred[None]]:
        def run() -> defer.Deferred[None]:
            d: defer.Deferred[None] = defer.Deferred()
            self.started.append(name)
            self.pending[name] = d
            return d

        return run

    def finish(self, name: str) -> None:
        self.pending.pop(name).callback(None)


def taking(clock: task.Clock, seconds: float, done: list[str], name: str) -> Callable[[], defer.Deferred[None]]:
    """A job that answers after ``seconds`` on ``clock`` (a healthy receiver), recording ``name`` then."""

    def run() -> defer.Deferred[None]:
        return task.deferLater(clock, seconds, done.append, name)

    return run


class FairnessTests(unittest.SynchronousTestCase):
    """One owner's or one host's jobs that never finish hold their share of the slots, never everyone's."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.stuck = Stuck()

    def test_one_owners_twenty_stuck_jobs_leave_other_owners_running(self) -> None:
        queue = OutboundQueue(self.clock, concurrency=20, max_queued=1000, max_bytes=10**6)
        # Owner A: twenty registrations, each on a server of its own that never answers.
        for i in range(20):
            self.assertTrue(queue.submit(f"https://dead{i}.example/push", self.stuck.job(f"a{i}"), "A", 100))
        self.assertEqual(len(self.stuck.started), 5, "a quarter of the slots for one owner")
        done: list[str] = []
        for i in range(20):
            self.assertTrue(queue.submit("https://ok.example/push", taking(self.clock, 1, done, f"b{i}"), "B", 100))
        for _ in range(10):
            self.clock.advance(1)
        self.assertEqual(sorted(done), sorted(f"b{i}" for i in range(20)), "owner B's jobs all ran")
        self.assertEqual(len(self.stuck.started), 5)
        self.assertEqual(len(queue), 15, "owner A's others wait for A's own slots")

    def test_a_dead_host_holds_its_share_whatever_its_ports_and_owners(self) -> None:
        queue = OutboundQueue(self.clock, concurrency=20, max_queued=1000, max_bytes=10**6)
        for i in range(100):
            url = f"https://dead.example:{8000 + i % 20}/hook"
            self.assertTrue(queue.submit(url, self.stuck.job(f"dead{i}"), f"owner{i % 40}", 100))
        self.assertEqual(len(self.stuck.started), 5, "twenty ports of one host are one destination")
        done: list[str] = []
        for i in range(50):
            job = taking(self.clock, 0.5, done, f"ok{i}")
            self.assertTrue(queue.submit("https://OK.example./hook", job, f"owner{i % 40}", 100))
        for _ in range(40):
            self.clock.advance(0.5)
        self.assertEqual(len(done), 50, "the healthy host completed every one of its jobs")
        self.assertEqual((queue.running, len(queue)), (5, 95))

    def test_a_users_dead_push_service_leaves_room_for_the_same_users_other_devices(self) -> None:
        queue = OutboundQueue(self.clock, concurrency=20, max_queued=1000, max_bytes=10**6)
        for i in range(10):
            queue.submit("https://dead.example/sub", self.stuck.job(f"dead{i}"), "A", 100)
        self.assertEqual(len(self.stuck.started), 2, "half of the owner's share at one destination")
        done: list[str] = []
        for i in range(10):
            queue.submit("https://phone.example/sub", taking(self.clock, 1, done, f"phone{i}"), "A", 100)
        for _ in range(10):
            self.clock.advance(1)
        self.assertEqual(len(done), 10)

    def test_waiting_jobs_are_served_round_robin_across_owners(self) -> None:
        queue = OutboundQueue(self.clock, concurrency=1, max_queued=100, max_bytes=10**6)
        queue.submit("https://h.example", self.stuck.job("blocker"), "X", 1)
        for name in ("a1", "a2", "a3", "b1", "b2", "c1"):
            queue.submit("https://h.example", self.stuck.job(name), name[0], 1)
        previous = "blocker"
        while self.stuck.pending:
            self.stuck.finish(previous)
            previous = self.stuck.started[-1]
        self.assertEqual(self.stuck.started, ["blocker", "a1", "b1", "c1", "a2", "b2", "a3"])

    def test_waiting_jobs_are_served_round_robin_across_destinations(self) -> None:
        queue = OutboundQueue(self.clock, concurrency=1, max_queued=100, max_bytes=10**6)
        queue.submit("https://x.example", self.stuck.job("blocker"), "A", 1)
        for name in ("p1", "p2", "p3", "q1", "q2"):
            queue.submit(f"https://{name[0]}.example:{443 + int(name[1])}/", self.stuck.job(name), "A", 1)
        previous = "blocker"
        while self.stuck.pending:
            self.stuck.finish(previous)
            previous = self.stuck.started[-1]
        self.assertEqual(self.stuck.started, ["blocker", "p1", "q1", "p2", "q2", "p3"])

    def test_a_freed_slot_goes_to_the_next_job_of_that_destination_in_order(self) -> None:
        queue = OutboundQueue(self.clock, concurrency=8, max_queued=100, max_bytes=10**6)
        for i in range(4):
            queue.submit("https://dead.example", self.stuck.job(f"d{i}"), f"owner{i}", 1)
        self.assertEqual(self.stuck.started, ["d0", "d1"])
        self.stuck.finish("d0")
        self.assertEqual(self.stuck.started, ["d0", "d1", "d2"])


class BoundTests(unittest.SynchronousTestCase):
    """What waits is bounded in jobs and in bytes, overall and per owner and destination; refusals are False."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.stuck = Stuck()

    def test_waiting_bytes_are_bounded(self) -> None:
        queue = OutboundQueue(
            self.clock, concurrency=1, max_queued=100, max_bytes=1000, owner_share=1, destination_share=1
        )
        self.assertTrue(queue.submit("https://h.example", self.stuck.job("running"), "A", 10**6))
        for i in range(3):
            self.assertTrue(queue.submit("https://h.example", self.stuck.job(f"w{i}"), "A", 300))
        self.assertFalse(queue.submit("https://h.example", self.stuck.job("big"), "A", 300), "1200 bytes > 1000")
        self.assertTrue(queue.submit("https://h.example", self.stuck.job("small"), "A", 100))
        self.assertEqual((len(queue), queue.bytes), (4, 1000))
        self.stuck.finish("running")
        self.assertEqual((len(queue), queue.bytes), (3, 700), "a started job's bytes are no longer waiting")

    def test_one_owner_fills_only_its_share_of_the_waiting_jobs_and_bytes(self) -> None:
        queue = OutboundQueue(self.clock, concurrency=4, max_queued=100, max_bytes=100_000)
        for i in range(26):
            self.assertTrue(queue.submit(f"https://h{i}.example", self.stuck.job(f"a{i}"), "A", 10))
        # One running, 25 waiting: a quarter of 100.
        self.assertFalse(queue.submit("https://h.example", self.stuck.job("a-more"), "A", 10))
        self.assertTrue(queue.submit("https://h.example", self.stuck.job("b0"), "B", 50_000), "started at once")
        self.assertTrue(queue.submit("https://h.example", self.stuck.job("b1"), "B", 20_000))
        self.assertFalse(
            queue.submit("https://h2.example", self.stuck.job("b2"), "B", 5_001), "B's waiting bytes past a quarter"
        )
        self.assertTrue(queue.submit("https://h2.example", self.stuck.job("b3"), "B", 5_000))
        self.assertEqual(self.stuck.started, ["a0", "b0"])
        self.assertTrue(queue.submit("https://h3.example", self.stuck.job("c0"), "C", 10))

    def test_one_destination_fills_only_its_share_of_the_waiting_jobs(self) -> None:
        queue = OutboundQueue(self.clock, concurrency=4, max_queued=40, max_bytes=100_000)
        for i in range(11):
            self.assertTrue(queue.submit("https://dead.example", self.stuck.job(f"d{i}"), f"u{i}", 10))
        self.assertFalse(queue.submit("https://dead.example:8443", self.stuck.job("d-more"), "u99", 10))
        self.assertTrue(queue.submit("https://ok.example", self.stuck.job("ok"), "u99", 10))

    def test_a_delayed_job_counts_while_it_waits_and_starts_after_its_delay_unless_dropped(self) -> None:
        queue = OutboundQueue(
            self.clock, concurrency=4, max_queued=100, max_bytes=1000, owner_share=1, destination_share=1, lane_share=1
        )
        self.assertTrue(queue.submit("https://h.example", self.stuck.job("retry"), "A", 800, delay=5))
        self.assertEqual((len(queue), queue.bytes, self.stuck.started), (1, 800, []))
        self.assertFalse(queue.submit("https://h.example", self.stuck.job("other"), "A", 300, delay=5))
        self.clock.advance(5)
        self.assertEqual((len(queue), queue.bytes, self.stuck.started), (0, 0, ["retry"]))
        self.assertTrue(queue.submit("https://h.example", self.stuck.job("later"), "A", 800, delay=5))
        for i in range(4):
            queue.submit("https://h.example", self.stuck.job(f"w{i}"), "A", 10)
        self.assertEqual((len(queue), self.stuck.started), (2, ["retry", "w0", "w1", "w2"]))
        self.assertEqual(queue.drop_waiting(), 2, "at shutdown: the delayed one and w3")
        self.clock.advance(10)
        self.stuck.finish("w0")
        self.assertEqual((len(queue), queue.bytes, self.stuck.started), (0, 0, ["retry", "w0", "w1", "w2"]))

    def test_a_failing_job_frees_its_slot(self) -> None:
        queue = OutboundQueue(self.clock, concurrency=1, max_queued=10, max_bytes=1000)
        queue.submit("https://a.example", lambda: defer.fail(RuntimeError("boom")), "A", 1)
        ran: list[int] = []
        queue.submit("https://a.example", lambda: defer.succeed(ran.append(1)), "A", 1)
        self.assertEqual(ran, [1])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class SignatureTests(unittest.SynchronousTestCase):
    def test_signature_is_hmac_sha256_of_timestamp_dot_body(self) -> None:
        body = b'{"event":"message.created"}'
        expected = hmac.new(b"secret", b"1767268800." + body, hashlib.sha256).hexdigest()
        self.assertEqual(sign_webhook("secret", "1767268800", body), "sha256=" + expected)


class PushConfigTests(unittest.SynchronousTestCase):
    def test_bad_gateways_and_webhooks_are_reported_with_their_paths(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                {
                    "push": {"gateways": {"default": "ftp://x"}},
                    "webhooks": [{"url": "https://h.example", "secret": "short", "events": ["message.sent"]}],
                }
            )
        text = str(caught.exception)
        for path in ("push.gateways.default", "webhooks[0].secret", "webhooks[0].events"):
            self.assertIn(f"'{path}'", text)

    def test_queue_bytes_are_sizes_of_at_least_one_byte(self) -> None:
        config = parse_config({"push": {"queue_bytes": "2M"}, "webhook_delivery": {"queue_bytes": 4096}})
        self.assertEqual((config.push.queue_bytes, config.webhook_delivery.queue_bytes), (2 * 1024 * 1024, 4096))
        self.assertEqual(parse_config({}).push.queue_bytes, 16 * 1024 * 1024)
        with self.assertRaises(ConfigError) as caught:
            parse_config({"push": {"queue_bytes": 0}, "webhook_delivery": {"queue_bytes": "lots"}})
        text = str(caught.exception)
        self.assertIn("'webhook_delivery.queue_bytes'", text)
        with self.assertRaises(ConfigError) as caught:
            parse_config({"push": {"queue_bytes": 0}})
        self.assertIn("'push.queue_bytes': expected at least 1", str(caught.exception))
