"""Webhooks: what happened, POSTed to the integrations that asked for it, signed.

Each entry of ``webhooks:`` names a URL, a secret and the event kinds it
wants.  A delivery is one JSON body, the same on every attempt::

    {"event": "message.created", "id": "<uuid>", "created_at": "2026-01-01T12:00:00Z", "data": {...}}

    X-UMOC-Timestamp: 1767268800
    X-UMOC-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

What is delivered comes from the change feed, the one durable outbox
(`umoc.domain.outbox`): a change is in the feed once it is committed, the
``webhooks`` consumer reads it (on one node at a time, whichever node or
``umoc-admin`` made it), renders the body from the rows as they are then
(a message deleted or erased since is not sent), and stores its position
past it only once every webhook's delivery of it is done.  So a crash
between the commit and the POST delays a webhook, never loses it; it may
repeat one (at least once), always with the same ``id``: a UUID derived
from the change and the webhook's URL, the same on every attempt and after
a restart.  ``created_at`` is when the change was made.

A 2xx answer delivers it.  Anything else (an error status, a refused
connection, no answer within ``webhook_delivery.timeout``) is retried after
``backoff``, doubled each time up to ``max_backoff``, for
``max_attempts`` in all; then it is a dead letter: logged with its id, kind,
URL and attempt count (never its body: that is people's messages), and
counted.

Each webhook has its own equal share of the queue: of the deliveries in
flight (``concurrency``), of those waiting for a slot or for a retry
(``queue_size``), and of the bytes their bodies hold (``queue_bytes``).  A
receiver that never answers fills only its own share and the others keep
flowing; a slow one still has its whole share in flight at once.  Past its
share a webhook's new deliveries wait outside the queue (``waiting``) and
are offered again after ``backoff``: nothing is dropped, and what waits is
bounded by the batches the consumer has read (`umoc.domain.outbox`).
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import WebhookConfig, WebhookDeliveryConfig
from umoc.domain.notices import shapes
from umoc.domain.outbox import FeedConsumer, Tail, halt_deliveries, hand_over
from umoc.metrics import Metrics
from umoc.outbound import HttpClient, OutboundQueue, webhook_headers
from umoc.storage.groups import RoleChanged
from umoc.storage.messages import Message
from umoc.storage.outbox import OutboxRow
from umoc.timefmt import iso

__all__ = ["KIND_SOURCES", "Webhooks", "render", "webhook_id"]

log = Logger()

#: The feed kind each webhook kind is rendered from.
KIND_SOURCES = {
    "message.created": "message",
    "message.edited": "edit",
    "message.deleted": "delete",
    "user.registered": "registered",
    "contact.accepted": "contact",
    "group.member_added": "member_added",
    "group.updated": "group",
    "group.member_removed": "member_removed",
    "group.member_role_changed": "member_role",
    "group.member_banned": "member_banned",
    "group.member_muted": "member_muted",
    "group.join_requested": "join_request",
    "report.created": "report",
    "report.resolved": "report",
}
_NAMESPACE = uuid.UUID("5d0b0a57-8f0e-4c5e-9a55-0f1c7ab5e0d1")


def webhook_id(change_id: int, url: str) -> str:
    """The body's ``id``: the same for one change and one webhook URL on every attempt, node and restart."""
    return str(uuid.uuid5(_NAMESPACE, f"webhooks:{change_id}:{url}"))


def _chat_id_for(message: Message, viewer_id: int | None) -> int:
    if message.is_group or message.sender_id == viewer_id:
        return message.recipient_id
    return message.sender_id


def render(row: OutboxRow) -> tuple[str, dict[str, Any]] | None:
    """The webhook kind and ``data`` for a change, from the rows as they are now; None when there is none."""
    change = row.change
    if change is None:
        return None
    message, data = change.message, change.data
    if row.kind == "message" and message is not None:
        return "message.created", shapes.new_message(message)
    if row.kind == "edit" and message is not None:
        edited_at = message.edited_at if message.edited_at is not None else change.created_at
        shown = shapes.message_edited(
            message.id, _chat_id_for(message, change.actor_id), message.is_group, message.content, edited_at
        )
        return "message.edited", {**shown, "sender_id": change.actor_id}
    if row.kind == "delete" and message is not None:
        return "message.deleted", {
            "message_id": message.id,
            "sender_id": message.sender_id,
            "timestamp": iso(change.created_at),
            "deleted_by": change.actor_id,
        }
    if row.kind == "registered" and change.actor_id is not None and change.actor_username is not None:
        return "user.registered", {"user_id": change.actor_id, "username": change.actor_username}
    if (
        row.kind == "contact"
        and data.get("event") == "contact_accepted"
        and row.owner_id is not None
        and data.get("accepted_by") == row.owner_id
    ):
        return "contact.accepted", {
            "user_id": row.owner_id,
            "username": row.owner_username,
            "requester_id": change.actor_id,
            "requester_username": change.actor_username,
        }
    if row.kind == "report" and data.get("event") in ("report_created", "report_resolved"):
        # The ids only: the report (its evidence too) is read through the admin API.
        kind = "report.created" if data["event"] == "report_created" else "report.resolved"
        key = "reporter_id" if kind == "report.created" else "resolved_by"
        return kind, {"report_id": str(data["id"]), key: change.actor_id, **data.get("shown", {})}
    if row.kind == "member_added":
        return "group.member_added", {
            "chat_id": change.chat_id,
            "user_id": change.actor_id,
            "username": change.actor_username,
            "added_by": data.get("added_by"),
        }
    return _render_group(row)


def _render_group(row: OutboxRow) -> tuple[str, dict[str, Any]] | None:
    """The group webhooks of issue 29, each the payload members got live (``by``: who acted; null when automatic)."""
    change = row.change
    assert change is not None
    data, chat_id, user_id = change.data, change.chat_id or 0, change.actor_id or 0
    if row.kind == "group" and data.get("event") == "group_updated":
        return "group.updated", shapes.group_updated(
            {"chat_id": chat_id, **{k: v for k, v in data.items() if k != "event"}}
        )
    if row.kind == "member_removed":
        return "group.member_removed", {"chat_id": chat_id, "user_id": user_id}
    if row.kind == "member_role":
        return "group.member_role_changed", shapes.member_role_changed(
            chat_id, RoleChanged(user_id, data["role"], data.get("by"))
        )
    if row.kind == "member_banned":
        return "group.member_banned", shapes.member_banned(
            chat_id, user_id, data.get("until"), data.get("reason"), data.get("by")
        )
    if row.kind == "member_muted":
        return "group.member_muted", {**shapes.member_muted(chat_id, user_id, data.get("until")), "by": data.get("by")}
    if row.kind == "join_request":
        # What a moderator is told live (``join_requested``).
        return "group.join_requested", {
            "chat_id": data.get("chat_id"),
            "user_id": change.actor_id,
            "username": change.actor_username,
        }
    return None


class Webhooks:
    def __init__(
        self,
        hooks: tuple[WebhookConfig, ...],
        config: WebhookDeliveryConfig,
        http: HttpClient | None,
        clock: IReactorTime,
        metrics: Metrics,
        tail: Tail | None = None,
    ) -> None:
        """With a ``tail`` (a node), the ``webhooks`` consumer of the feed delivers; without (``umoc-admin``),
        nothing is sent from this process: the changes it makes are in the feed, for the nodes to deliver."""
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
        #: Deliveries past their webhook's share of the queue, to be offered again after ``backoff``.
        self.waiting = 0
        self._timers: set[Any] = set()
        kinds = tuple(sorted({KIND_SOURCES[k] for hook in hooks for k in hook.events if k in KIND_SOURCES}))
        self.consumer: FeedConsumer | None = None
        if tail is not None and http is not None and kinds:
            self.consumer = FeedConsumer("webhooks", tail, clock, kinds, self.deliver_row)

    def wants(self, kind: str) -> bool:
        return any(kind in hook.events for hook in self._hooks)

    def start(self) -> defer.Deferred[Any]:
        return self.consumer.start() if self.consumer is not None else defer.succeed(None)

    def wake(self) -> None:
        """A change was committed here: the consumer reads it now rather than at its next poll."""
        if self.consumer is not None:
            self.consumer.wake()

    def deliver_row(self, row: OutboxRow) -> defer.Deferred[None]:
        """Deliver one change to every webhook that wants it; fires when each delivery is done."""
        rendered = render(row)
        if rendered is None:
            return defer.succeed(None)
        kind, data = rendered
        assert row.change is not None
        return self.send(kind, data, row.change_id, row.change.created_at)

    def send(self, kind: str, data: dict[str, Any], change_id: int, created_at: float) -> defer.Deferred[None]:
        """Queue ``kind`` for every webhook that wants it; fires when every delivery is delivered or dead."""
        if self._http is None:
            return defer.succeed(None)
        done = []
        for index, hook in enumerate(self._hooks):
            if kind in hook.events:
                body: dict[str, Any] = {
                    "event": kind,
                    "id": webhook_id(change_id, hook.url),
                    "created_at": iso(created_at),
                    "data": data,
                }
                encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                finished: defer.Deferred[None] = defer.Deferred()
                self._submit(_Delivery(index, kind, body["id"], encoded, finished), 1)
                done.append(finished)
        if not done:
            return defer.succeed(None)
        return defer.DeferredList(done, consumeErrors=True).addCallback(lambda _: None)

    def _submit(self, delivery: _Delivery, attempt: int, delay: float = 0) -> None:
        hook = self._hooks[delivery.index]
        job = functools.partial(self._attempt, delivery, attempt)
        if self.queue.submit(hook.url, job, owner=delivery.index, size=len(delivery.body), delay=delay):
            return
        # Past this webhook's share: wait outside the queue and offer it again (never dropped: the feed
        # position waits for it).
        self.waiting += 1

        def again() -> None:
            self._timers.discard(call)
            self.waiting -= 1
            self._submit(delivery, attempt, delay)

        call = self._clock.callLater(max(delay, self._config.backoff), again)
        self._timers.add(call)

    def _attempt(self, delivery: _Delivery, attempt: int) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._deliver(delivery, attempt))

    async def _deliver(self, delivery: _Delivery, attempt: int) -> None:
        hook = self._hooks[delivery.index]
        assert self._http is not None
        headers = webhook_headers(hook.secret, int(self._clock.seconds()), delivery.body)
        try:
            result = await self._http.post(hook.url, delivery.body, headers, self._config.timeout)
            why = None if 200 <= result.code < 300 else f"HTTP {result.code}"
        except Exception as exc:  # noqa: BLE001 - timeouts and refused connections alike
            why = repr(exc)
        if why is None:
            self._metrics.count_webhook("delivered")
            delivery.finished.callback(None)
            return
        if attempt >= self._config.max_attempts:
            self._metrics.count_webhook("dead_letter")
            log.error(
                "Webhook dead letter: {id} ({kind}) to {url} failed {attempts} times, the last: {why}",
                id=delivery.id,
                kind=delivery.kind,
                url=hook.url,
                attempts=attempt,
                why=why,
            )
            delivery.finished.callback(None)
            return
        self._metrics.count_webhook("retried")
        wait = min(self._config.max_backoff, self._config.backoff * 2 ** (attempt - 1))
        # Queued now, to start after the backoff: its body counts against the bounds meanwhile.
        self._submit(delivery, attempt + 1, delay=wait)

    async def close(self) -> None:
        """Stop the consumer; start nothing more (it is delivered again from the feed by whoever tails it next);
        let deliveries in flight finish."""
        halt_deliveries(self.consumer, self._timers)
        left, self.waiting = self.queue.drop_waiting() + self.waiting, 0
        await hand_over(self.consumer, self.queue, left, "webhook deliveries")


@dataclass(frozen=True, slots=True)
class _Delivery:
    """One change for one webhook: the same body and ``id`` on every attempt."""

    index: int
    kind: str
    id: str
    body: bytes
    finished: defer.Deferred[None]
