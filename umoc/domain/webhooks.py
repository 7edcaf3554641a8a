"""Webhooks: what happened, POSTed to the integrations that asked for it, signed.

Each entry of ``webhooks:`` names a URL, a secret and the event kinds it
wants.  A delivery is one JSON body, the same on every attempt::

    {"event": "message.created", "id": "<uuid>", "created_at": "2026-01-01T12:00:00Z", "data": {...}}

    X-UMOC-Timestamp: 1767268800
    X-UMOC-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

A 2xx answer delivers it.  Anything else (an error status, a refused
connection, no answer within ``webhook_delivery.timeout``) is retried after
``backoff``, doubled each time up to ``max_backoff``, for
``max_attempts`` in all; then it is a dead letter: logged with its id, kind
and URL, and counted.  Deliveries wait in a bounded queue (full: dropped
and counted); a slow receiver holds only its own slots.  Only the node
where the event happened delivers it, so with several nodes each webhook
is sent once.
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import WebhookConfig, WebhookDeliveryConfig
from umoc.metrics import Metrics
from umoc.outbound import HttpClient, OutboundQueue, webhook_headers
from umoc.outbound.http import destination
from umoc.timefmt import iso

__all__ = ["Webhooks"]

log = Logger()


class Webhooks:
    def __init__(
        self,
        hooks: tuple[WebhookConfig, ...],
        config: WebhookDeliveryConfig,
        http: HttpClient | None,
        clock: IReactorTime,
        metrics: Metrics,
    ) -> None:
        self._hooks = hooks
        self._config = config
        self._http = http
        self._clock = clock
        self._metrics = metrics
        self.queue = OutboundQueue(config.concurrency, config.queue_size)
        self._retries: set[Any] = set()

    def wants(self, kind: str) -> bool:
        return any(kind in hook.events for hook in self._hooks)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Queue ``kind`` for every webhook that wants it; returns at once."""
        if self._http is None:
            return
        for hook in self._hooks:
            if kind in hook.events:
                body = {"event": kind, "id": str(uuid.uuid4()), "created_at": iso(self._clock.seconds()), "data": data}
                encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                self._submit(hook, kind, body["id"], encoded, 1)

    def _submit(self, hook: WebhookConfig, kind: str, delivery_id: str, body: bytes, attempt: int) -> None:
        job = functools.partial(self._attempt, hook, kind, delivery_id, body, attempt)
        if not self.queue.submit(destination(hook.url), job):
            self._metrics.count_webhook("dropped")
            log.error(
                "Webhook {id} ({kind}) to {url} dropped: the delivery queue is full",
                id=delivery_id,
                kind=kind,
                url=hook.url,
            )

    def _attempt(
        self, hook: WebhookConfig, kind: str, delivery_id: str, body: bytes, attempt: int
    ) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._deliver(hook, kind, delivery_id, body, attempt))

    async def _deliver(self, hook: WebhookConfig, kind: str, delivery_id: str, body: bytes, attempt: int) -> None:
        assert self._http is not None
        headers = webhook_headers(hook.secret, int(self._clock.seconds()), body)
        try:
            result = await self._http.post(hook.url, body, headers, self._config.timeout)
            why = None if 200 <= result.code < 300 else f"HTTP {result.code}"
        except Exception as exc:  # noqa: BLE001 - timeouts and refused connections alike
            why = repr(exc)
        if why is None:
            self._metrics.count_webhook("delivered")
            return
        if attempt >= self._config.max_attempts:
            self._metrics.count_webhook("dead_letter")
            log.error(
                "Webhook dead letter: {id} ({kind}) to {url} failed {attempts} times, the last: {why}; body {body}",
                id=delivery_id,
                kind=kind,
                url=hook.url,
                attempts=attempt,
                why=why,
                body=body.decode("utf-8"),
            )
            return
        self._metrics.count_webhook("retried")
        wait = min(self._config.max_backoff, self._config.backoff * 2 ** (attempt - 1))

        def retry() -> None:
            self._retries.discard(call)
            self._submit(hook, kind, delivery_id, body, attempt + 1)

        call = self._clock.callLater(wait, retry)
        self._retries.add(call)

    async def close(self) -> None:
        """Stop retrying (what is left is logged as undelivered); let deliveries in flight finish."""
        pending = [call for call in self._retries if call.active()]
        for call in pending:
            call.cancel()
        if pending:
            log.warn("{count} webhook deliveries left undelivered at shutdown", count=len(pending))
        self._retries.clear()
        await self.queue.idle()
