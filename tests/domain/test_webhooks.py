"""Webhook deliveries share nothing between webhooks: real receivers on loopback, and the logs on a `Clock`.

A receiver that never answers (on 127.0.0.2) must cost a healthy one (on
127.0.0.1) no delivery; a receiver taking 0.5 s per answer must get its
whole share in flight at once; a redirect is an answer, never followed
(the receiver it names sees nothing); dead letters must name the
delivery, never carry its body.  (What is delivered, from the change feed:
``tests.domain.test_outbox`` and ``tests.e2e.test_outbox``.)
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.logger import Logger, formatEvent
from twisted.trial import unittest
from twisted.web import resource

import umoc.domain.webhooks as webhooks_module
from tests.support.deferreds import inline
from tests.support.push import FloodServer, WebhookReceiver, abort, serve, serve_flood, until
from umoc.config import WebhookConfig, WebhookDeliveryConfig
from umoc.domain.webhooks import Webhooks
from umoc.logs import json_line
from umoc.metrics import Metrics
from umoc.outbound import HttpClient, HttpResult

SECRET = "s3cret-for-the-webhook-tests"
TEXT = "the words nobody else may read"


def hook(url: str) -> WebhookConfig:
    return WebhookConfig(url=url + "/hook", secret=SECRET, events=("message.created",))


class _Redirect(resource.Resource):
    """Answers every request with a 307 to ``to``: a receiver that sends its deliveries elsewhere."""

    isLeaf = True

    def __init__(self, to: str) -> None:
        super().__init__()
        self.to = to
        self.asked = 0

    def render(self, request: Any) -> bytes:
        self.asked += 1
        request.setResponseCode(307)
        request.setHeader(b"location", self.to.encode())
        return b""


class RealReceiverTests(unittest.TestCase):
    """Real HTTP receivers started in the test; the real HTTP client and reactor."""

    def start(self, hooks: tuple[WebhookConfig, ...], receivers: list[WebhookReceiver], **delivery: Any) -> Webhooks:
        http = HttpClient(reactor)
        config = WebhookDeliveryConfig(**delivery)
        self.metrics = Metrics()
        webhooks = Webhooks(hooks, config, http, reactor, self.metrics)

        async def stop() -> None:
            for receiver in receivers:
                abort(receiver)
            await webhooks.close()
            await http.close()

        self.addCleanup(lambda: defer.ensureDeferred(stop()))
        return webhooks

    @inline
    async def test_a_receiver_that_never_answers_costs_a_healthy_one_no_delivery(self) -> None:
        dead = WebhookReceiver(SECRET, hang=True)
        await serve(self, dead, interface="127.0.0.2")
        healthy = WebhookReceiver(SECRET)
        await serve(self, healthy)
        webhooks = self.start(
            (hook(dead.url), hook(healthy.url)), [dead], concurrency=10, queue_size=100, timeout=60, max_attempts=1
        )
        for batch in range(15):
            for n in range(batch * 20, batch * 20 + 20):
                webhooks.send("message.created", {"n": n}, n, 0.0)
            sent = batch * 20 + 20
            await until(lambda sent=sent: len(healthy.received) == sent, what=f"{sent} deliveries to the healthy one")
        # The receiver records a delivery before it answers; the metric counts it once the answer is read.
        await until(lambda: self.metrics.webhooks["delivered"] == 300, what="300 answers read")
        self.assertEqual(sorted(h["data"]["n"] for h in healthy.received), list(range(300)), "0 lost")
        self.assertEqual(healthy.problems, [])
        # The dead one holds its share: 5 in flight, 50 queued, the rest of its own waiting outside the queue.
        self.assertEqual(dead.attempts, 5)
        self.assertEqual(len(webhooks.queue), 50)
        self.assertEqual(webhooks.waiting, 300 - 55)
        self.assertEqual(self.metrics.webhooks["dropped"], 0)
        self.assertEqual(self.metrics.webhooks["delivered"], 300)
        self.flushLoggedErrors()

    @inline
    async def test_a_receiver_taking_half_a_second_gets_its_whole_share_in_flight(self) -> None:
        slow = WebhookReceiver(SECRET, answer_after=0.5)
        await serve(self, slow)
        webhooks = self.start((hook(slow.url),), [slow], concurrency=10, timeout=5)
        started = time.monotonic()
        for n in range(40):
            webhooks.send("message.created", {"n": n}, n, 0.0)
        await until(lambda: self.metrics.webhooks["delivered"] == 40, timeout=30, what="40 deliveries answered")
        elapsed = time.monotonic() - started
        self.assertEqual(slow.max_in_flight, 10, "several deliveries in flight to it at once, never past its share")
        # Ten at a time take about 2 s; one at a time would take 20 s.  The bound leaves room for a loaded machine.
        self.assertLess(elapsed, 12.0, "about 20 a second, not 2")
        self.assertEqual(self.metrics.webhooks["delivered"], 40)

    @inline
    async def test_an_answer_that_never_ends_is_cut_off_and_counts_as_a_failure(self) -> None:
        flood = FloodServer(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n", b"x" * 65536)
        url = await serve_flood(self, flood)
        webhooks = self.start((hook(url),), [], timeout=30, max_attempts=2, backoff=0.05)
        webhooks.send("message.created", {"n": 1}, 1, 0.0)
        await until(lambda: self.metrics.webhooks["dead_letter"] == 1, timeout=25, what="a dead letter, not 30 s reads")
        await until(lambda: flood.lost == 2, what="both connections aborted")
        self.assertEqual(flood.connections, 2)
        self.assertEqual(self.metrics.webhooks["delivered"], 0)
        self.assertLess(flood.sent, 64 * 1024 * 1024, "what the kernel buffered, not what the receiver offered")
        self.flushLoggedErrors()

    @inline
    async def test_a_redirect_is_not_followed_and_the_delivery_fails(self) -> None:
        """A webhook's answer is its answer: a 307 to another address reaches nobody there (issue 32)."""
        elsewhere = WebhookReceiver(SECRET)
        target = await serve(self, elsewhere, interface="127.0.0.2")
        redirect = _Redirect(target + "/hook")
        url = await serve(self, redirect)
        webhooks = self.start((hook(url),), [elsewhere], max_attempts=2, backoff=0.05)
        webhooks.send("message.created", {"n": 1}, 1, 0.0)
        await until(lambda: self.metrics.webhooks["dead_letter"] == 1, what="a dead letter after two 307s")
        self.assertEqual((redirect.asked, elsewhere.attempts, elsewhere.received), (2, 0, []))
        self.assertEqual(self.metrics.webhooks["delivered"], 0)
        self.flushLoggedErrors()


class FakeHttp:
    """Answers every POST with ``code`` at once, and remembers nothing."""

    def __init__(self, code: int) -> None:
        self.code = code

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> defer.Deferred[HttpResult]:
        return defer.succeed(HttpResult(self.code, b"", {}))


class LogTests(unittest.SynchronousTestCase):
    def test_dead_letters_name_the_delivery_and_never_carry_its_text(self) -> None:
        events: list[dict[str, Any]] = []
        self.patch(webhooks_module, "log", Logger(namespace="umoc.domain.webhooks", observer=events.append))
        clock = task.Clock()
        metrics = Metrics()
        config = WebhookDeliveryConfig(concurrency=1, queue_size=1, max_attempts=2, backoff=1)
        url = "https://hooks.example/hook"
        webhooks = Webhooks((hook("https://hooks.example"),), config, FakeHttp(500), clock, metrics)  # type: ignore[arg-type]
        # The first fails and waits 1 s for its retry, filling the queue: the second's retry waits outside it.
        first = webhooks.send("message.created", {"content": TEXT, "n": 1}, 1, 0.0)
        second = webhooks.send("message.created", {"content": TEXT, "n": 2}, 2, 0.0)
        self.assertEqual(webhooks.waiting, 1)
        for _ in range(5):
            clock.advance(1)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(len(events), 2)
        for event in events:
            for rendered in (formatEvent(event), json_line(event)):
                self.assertNotIn(TEXT, rendered)
                self.assertNotIn(json.dumps(TEXT)[1:-1], rendered)
            self.assertEqual((event["kind"], event["url"], event["attempts"]), ("message.created", url, 2))
            self.assertRegex(event["id"], r"^[0-9a-f-]{36}$")
        self.assertEqual((metrics.webhooks["dropped"], metrics.webhooks["dead_letter"]), (0, 2))
