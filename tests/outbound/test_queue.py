"""The outbound queue's bounds, the webhook signature, and the push config checks: no ports needed."""

from __future__ import annotations

import hashlib
import hmac

from twisted.internet import defer
from twisted.trial import unittest

from umoc.config import ConfigError, parse_config
from umoc.outbound import OutboundQueue, sign_webhook


class OutboundQueueTests(unittest.SynchronousTestCase):
    def test_a_stuck_destination_holds_only_its_own_slots(self) -> None:
        queue = OutboundQueue(concurrency=4, max_queued=100, per_destination=2)
        stuck: list[defer.Deferred[None]] = []
        done: list[str] = []

        def hang() -> defer.Deferred[None]:
            d: defer.Deferred[None] = defer.Deferred()
            stuck.append(d)
            return d

        for _ in range(5):
            self.assertTrue(queue.submit("https://dead.example", hang))
        for i in range(3):
            self.assertTrue(queue.submit("https://ok.example", lambda i=i: defer.succeed(done.append(f"ok{i}"))))
        self.assertEqual(done, ["ok0", "ok1", "ok2"], "other destinations overtake the stuck one")
        self.assertEqual(len(stuck), 2)
        self.assertEqual(len(queue), 3)
        stuck[0].callback(None)
        self.assertEqual(len(stuck), 3, "a freed slot goes to the next job of that destination")

    def test_a_full_queue_refuses_instead_of_growing(self) -> None:
        queue = OutboundQueue(concurrency=1, max_queued=2, per_destination=1)
        waiting = defer.Deferred()
        self.assertTrue(queue.submit("a", lambda: waiting))
        self.assertTrue(queue.submit("a", lambda: defer.succeed(None)))
        self.assertTrue(queue.submit("a", lambda: defer.succeed(None)))
        self.assertFalse(queue.submit("a", lambda: defer.succeed(None)))
        waiting.callback(None)
        self.assertEqual((len(queue), queue.running), (0, 0))

    def test_a_failing_job_frees_its_slot(self) -> None:
        queue = OutboundQueue(concurrency=1, max_queued=10)
        queue.submit("a", lambda: defer.fail(RuntimeError("boom")))
        ran: list[int] = []
        queue.submit("a", lambda: defer.succeed(ran.append(1)))
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
