"""Webhooks: what happened, POSTed to the integrations that asked for it, signed.

Each entry of ``webhooks:`` names a URL, a secret and the event kinds it
wants.  A delivery is one JSON body, the same on every attempt::

    {"event": "message.created", "id": "<uuid>", "created_at": "2026-01-01T12:00:00Z", "data": {...}}

    X-UMOC-Timestamp: 1767268800
    X-UMOC-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

A 2xx answer delivers it.  Anything else (an error status, a refused
connection, no answer within ``webhook_delivery.timeout``) is retried after
``backoff``, doubled each time up to ``max_backoff``, for
``max_attempts`` in all; then it is a dead letter: logged with its id, kind,
URL and attempt count (never its body: that is people's messages), and
counted.

Each webhook has its own equal share of the queue: of the deliveries in
flight (``concurrency``), of those waiting for a slot or for a retry
(``queue_size``), and of the bytes their bodies hold (``queue_bytes``).  A
receiver that never answers fills only its own share (past it, its own new
deliveries are dropped, logged and counted) and the others keep flowing; a
slow one still has its whole share in flight at once.  Only the node where
the event happened delivers it, so with several nodes each webhook is sent
once.
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
        # Shares by webhook only: the URLs are the operator's, and two webhooks on one host must
        # not share one webhook's slots (a dead one would then hold the healthy one's).
        self.queue = OutboundQueue(
            clock,
            config.concurrency,
            config.queue_size,
            config.queue_bytes,
            owner_share=1 / max(1, len(hooks)),
            destination_share=1.0,
            lane_share=1.0,
        )

    def wants(self, kind: str) -> bool:
        return any(kind in hook.events for hook in self._hooks)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Queue ``kind`` for every webhook that wants it; returns at once."""
        if self._http is None:
            return
        for index, hook in enumerate(self._hooks):
            if kind in hook.events:
                body: dict[str, Any] = {
                    "event": kind,
                    "id": str(uuid.uuid4()),
                    "created_at": iso(self._clock.seconds()),
                    "data": data,
                }
                encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                self._submit(index, kind, body["id"], encoded, 1)

    def _submit(self, index: int, kind: str, delivery_id: str, body: bytes, attempt: int, delay: float = 0) -> None:
        hook = self._hooks[index]
        job = functools.partial(self._attempt, index, kind, delivery_id, body, attempt)
        if not self.queue.submit(hook.url, job, owner=index, size=len(body), delay=delay):
            self._metrics.count_webhook("dropped")
            log.error(
                "Webhook {id} ({kind}) to {url} dropped before attempt {attempt}: its share of the delivery "
                "queue is full",
                id=delivery_id,
                kind=kind,
                url=hook.url,
                attempt=attempt,
            )

    def _attempt(self, index: int, kind: str, delivery_id: str, body: bytes, attempt: int) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._deliver(index, kind, delivery_id, body, attempt))

    async def _deliver(self, index: int, kind: str, delivery_id: str, body: bytes, attempt: int) -> None:
        hook = self._hooks[index]
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
                "Webhook dead letter: {id} ({kind}) to {url} failed {attempts} times, the last: {why}",
                id=delivery_id,
                kind=kind,
                url=hook.url,
                attempts=attempt,
                why=why,
            )
            return
        self._metrics.count_webhook("retried")
        wait = min(self._config.max_backoff, self._config.backoff * 2 ** (attempt - 1))
        # Queued now, to start after the backoff: its body counts against the bounds meanwhile.
        self._submit(index, kind, delivery_id, body, attempt + 1, delay=wait)

    async def close(self) -> None:
        """Start nothing more (what is left is logged as undelivered); let deliveries in flight finish."""
        pending = self.queue.drop_waiting()
        if pending:
            log.warn("{count} webhook deliveries left undelivered at shutdown", count=pending)
        await self.queue.idle()
