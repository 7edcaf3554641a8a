"""Push notifications for users with no socket anywhere: the rules, and the sending.

What to push comes from the change feed, the one durable outbox
(`umoc.domain.outbox`): the ``push`` consumer reads each new message and
contact request (on one node at a time, whichever node stored it), waits
until ``push.delay`` after it was made, asks `Presence` which recipients are
online on any node, and for the others asks storage in one transaction who
still needs it: not a user who read the message meanwhile, muted the chat,
or switched pushes off, and only while the message is not deleted (what is
pushed is read from the rows then: an erased message is never sent).  Each
of their registrations gets one push, through a bounded `OutboundQueue`;
nothing on the event path waits for any of it.  The queue is fair per user
and per host: one user's registrations at servers that never answer hold
at most a quarter of the slots (and of the room to wait), so everyone
else's pushes keep flowing.

A push that fails (no answer, an error status but 404/410) is tried again
after ``push.backoff``, doubled up to ``push.max_backoff``, for
``push.max_attempts`` in all.  The consumer's position passes a change only
once its pushes are done, so a crash between the commit and the push
delays it, never loses it; a push may be repeated after a crash (at least
once: the same ``message_id`` / ``event_id``), and with several nodes only
the node holding the consumer's lease pushes, so each is sent once.

Two kinds of registration::

    webpush   POST <subscription endpoint>        RFC 8291 aes128gcm body, RFC 8292 VAPID
    gateway   POST <push.gateways[NAME]>/_matrix/push/v1/notify     Matrix Push Gateway API (Sygnal)

A Web Push endpoint is the client's choice, so it goes through the guarded
HTTP client (`umoc.outbound.agent`): ``register_push`` refuses an endpoint
that is not https, is longer than 2048 characters, carries credentials, or
whose host is a refused address in any spelling (``127.1``,
``2130706433``, ``[::ffff:127.0.0.1]``); a name is checked when the push
is sent, after DNS and again at connect.  What the target answered never
shows in the registration's fate except for the one answer meant for it: a
push service's 404 or 410 (never followed from a redirect, which is never
followed) removes the registration; a refused address, a redirect, an
answer too large, a timeout or any other status is a failure and leaves it.
A gateway (the operator's URL, through the trusted client) listing the
pushkey in ``rejected`` removes it too.  Outcomes are counted in
``umoc_pushes_total{kind,outcome}``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.cluster.presence import Presence
from umoc.config import PushConfig
from umoc.domain.outbox import FeedConsumer, Tail, halt_deliveries, hand_over
from umoc.errors import UserError
from umoc.metrics import Metrics
from umoc.outbound import AddressPolicy, HttpClient, OutboundQueue, RefusedAddressError, VapidKey, encrypt_payload
from umoc.outbound.agent import ip_literal
from umoc.storage import Storage
from umoc.storage.messages import Message
from umoc.storage.outbox import OutboxRow
from umoc.storage.push import PushTarget, Registration
from umoc.timefmt import iso

__all__ = ["Notice", "PushNotifier", "registration_json"]

log = Logger()

NOTIFY_PATH = "/_matrix/push/v1/notify"
#: Longest text a push carries with ``push.include_content`` (the rest is cut): even at four UTF-8
#: bytes a character, the Web Push payload stays under RFC 8291's 4096 octets.
MAX_CONTENT = 700
#: How long a push service keeps a Web Push message for an unreachable device.
WEBPUSH_TTL = 24 * 3600
#: What a waiting push holds besides its text and URL (the notice, the registration, the job), for
#: ``push.queue_bytes``: an estimate on the high side.
PUSH_OVERHEAD = 1024
#: Longest Web Push endpoint accepted.
MAX_ENDPOINT = 2048
#: A host name: letters, digits and hyphens in dot-separated labels, the last one (the top-level
#: domain) starting with a letter, so that no spelling of a number passes for a name.
_HOST_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\.?")


@dataclass(frozen=True)
class Notice:
    """What one push says, before it is shaped for a kind of registration."""

    #: ``new_message``, ``mention`` or ``contact_request``.
    type: str
    event_id: str
    #: The chat as the recipient names it: the other user's id, or the group id.
    chat_id: int
    is_group: bool
    sender_id: int
    sender_username: str
    unread: int
    content: str | None = None
    message_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def webpush_payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "chat_id": self.chat_id,
            "is_group": self.is_group,
            "sender_id": self.sender_id,
            "sender_username": self.sender_username,
            "unread": self.unread,
        }
        if self.type != "contact_request":
            body["message_id"] = self.event_id
            body["message_type"] = self.message_type
        if self.content is not None:
            body["content"] = self.content
        return body

    def gateway_body(self, registration: Registration) -> dict[str, Any]:
        notification: dict[str, Any] = {
            "event_id": self.event_id,
            "room_id": f"{'group' if self.is_group else 'dm'}:{self.chat_id}",
            "type": "m.room.message" if self.type != "contact_request" else "umoc.contact_request",
            "sender": self.sender_username,
            "sender_display_name": self.sender_username,
            "prio": "high",
            "counts": {"unread": self.unread},
            "devices": [
                {
                    "app_id": registration.app_id,
                    "pushkey": registration.target,
                    "pushkey_ts": int(registration.created_at),
                    "data": {},
                }
            ],
        }
        if self.type == "mention":
            notification["user_is_target"] = True
        if self.content is not None:
            notification["content"] = {"msgtype": "m.text", "body": self.content}
        return {"notification": notification}


def registration_json(registration: Registration) -> dict[str, Any]:
    """A registration as ``push_registrations`` lists it."""
    body: dict[str, Any] = {
        "registration_id": registration.id,
        "kind": registration.kind,
        "created_at": iso(registration.created_at),
    }
    if registration.kind == "webpush":
        body["endpoint"] = registration.target
    else:
        body.update(app_id=registration.app_id, pushkey=registration.target, gateway=registration.gateway)
    return body


def check_endpoint(endpoint: str, policy: AddressPolicy, allow_http: bool = False) -> None:
    """`UserError` for a Web Push endpoint the server must not send to, decided without asking DNS.

    A name is allowed here (its addresses are checked when a push is
    sent); an address, in any spelling ``inet_aton`` or IPv6 accepts, must
    be one ``policy`` permits.
    """
    expected = "an http:// or https:// URL" if allow_http else "an https:// URL"
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise UserError(f"Invalid 'subscription.endpoint': expected {expected}", code="invalid_argument") from None
    schemes = ("https", "http") if allow_http else ("https",)
    host = parts.hostname or ""
    address = ip_literal(host)
    if (
        parts.scheme not in schemes
        or not endpoint.isascii()
        or "@" in parts.netloc  # credentials: no push service needs them
        or port == 0
        or (address is None and not _HOST_NAME.fullmatch(host))
    ):
        raise UserError(f"Invalid 'subscription.endpoint': expected {expected}", code="invalid_argument")
    if address is not None and not policy.permits(address):
        raise UserError("Invalid 'subscription.endpoint': this address is not allowed", code="invalid_argument")


class PushNotifier:
    """Registrations, and pushes for messages and contact requests."""

    def __init__(
        self,
        storage: Storage,
        presence: Presence,
        clock: IReactorTime,
        config: PushConfig,
        metrics: Metrics,
        http: HttpClient | None,
        vapid: VapidKey | None,
        gateway_http: HttpClient | None = None,
        tail: Tail | None = None,
    ) -> None:
        """``http`` is the guarded client (Web Push endpoints are the clients' choice); ``gateway_http``
        the client for the operator's gateways (by default ``http`` too).  With a ``tail`` (a node) the
        ``push`` consumer of the feed decides and sends; without (``umoc-admin``) nothing is pushed from here."""
        self._storage = storage
        self._presence = presence
        self._clock = clock
        self.config = config
        self._metrics = metrics
        self._http = http
        self._gateway_http = gateway_http or http
        #: The addresses Web Push endpoints may reach (`check_endpoint` at registration, the agent at send).
        self.policy = (http.agent.policy if http is not None else None) or AddressPolicy()
        self.vapid = vapid
        self.queue = OutboundQueue(clock, config.concurrency, config.queue_size, config.queue_bytes)
        #: Pushes past a share of the queue, to be offered again after ``push.backoff``.
        self.waiting = 0
        self._timers: set[Any] = set()
        self._deciding: set[defer.Deferred[None]] = set()
        self.consumer: FeedConsumer | None = None
        if tail is not None and http is not None:
            # Rows wait here for push.delay: as many as the queue may hold, not only a few batches.
            self.consumer = FeedConsumer(
                "push",
                tail,
                clock,
                ("message", "contact"),
                self.deliver_row,
                max(config.queue_size, 1),
                push_only=True,
            )

    # -- what to push ------------------------------------------------------

    def start(self) -> defer.Deferred[Any]:
        return self.consumer.start() if self.consumer is not None else defer.succeed(None)

    def wake(self) -> None:
        """A message or contact request was committed here: the consumer reads it now, not at its next poll."""
        if self.consumer is not None:
            self.consumer.wake()

    def deliver_row(self, row: OutboxRow) -> defer.Deferred[None]:
        """Push one change (a message, a contact request) once ``push.delay`` after it; fires when done."""
        change = row.change
        if change is None:
            return defer.succeed(None)
        if row.kind == "message" and change.message is not None and row.audience:
            work: Any = functools.partial(self._push_message, change.message, list(row.audience))
        elif (
            row.kind == "contact"
            and change.data.get("event") == "contact_request"
            and row.owner_id is not None
            and change.actor_id is not None
        ):
            work = functools.partial(
                self._push_contact_request, row.owner_id, change.actor_id, change.actor_username or "", row.change_id
            )
        else:
            return defer.succeed(None)
        return self._after_delay(change.created_at + self.config.delay, work)

    def _after_delay(self, when: float, fn: Any) -> defer.Deferred[None]:
        finished: defer.Deferred[None] = defer.Deferred()

        def run() -> None:
            d = defer.ensureDeferred(fn())
            self._deciding.add(d)
            d.addErrback(lambda f: log.failure("Deciding a push failed", f))
            d.addBoth(lambda _: self._deciding.discard(d))
            d.chainDeferred(finished)

        wait = when - self._clock.seconds()
        if wait <= 0:
            run()
            return finished

        def fire() -> None:
            self._timers.discard(call)
            run()

        call = self._clock.callLater(wait, fire)
        self._timers.add(call)
        return finished

    async def _offline(self, user_ids: list[int]) -> list[int]:
        online = await self._presence.online_among(user_ids)
        return [u for u in user_ids if u not in online]

    async def _push_message(self, message: Message, recipients: list[int]) -> None:
        offline = await self._offline(recipients)
        if not offline:
            return
        group_id = message.recipient_id if message.is_group else None
        targets = await self._storage.push.message_targets(
            message.seq, message.sender_id, group_id, offline, self._clock.seconds()
        )
        await self._send_all_and_wait([(target, self._message_notice(message, target)) for target in targets.values()])

    def _message_notice(self, message: Message, target: PushTarget) -> Notice:
        # The ids the sender's client gave, as the unread-mention badge counts them: not "@name" in the text.
        mentioned = target.user_id in message.mentions
        content = None
        if self.config.include_content and message.type == "text":
            content = message.content[:MAX_CONTENT]
        return Notice(
            type="mention" if mentioned else "new_message",
            event_id=message.id,
            chat_id=message.recipient_id if message.is_group else message.sender_id,
            is_group=message.is_group,
            sender_id=message.sender_id,
            sender_username=message.sender_username,
            unread=target.unread,
            content=content,
            message_type=message.type,
        )

    async def _push_contact_request(self, user_id: int, from_id: int, from_username: str, change_id: int) -> None:
        if not await self._offline([user_id]):
            return
        targets = await self._storage.push.targets([user_id])
        notices = [
            (
                target,
                Notice(
                    type="contact_request",
                    # The same on a repeat after a crash: the change it comes from.
                    event_id=f"contact_request:{change_id}",
                    chat_id=from_id,
                    is_group=False,
                    sender_id=from_id,
                    sender_username=from_username,
                    unread=target.unread,
                ),
            )
            for target in targets.values()
        ]
        await self._send_all_and_wait(notices)

    # -- sending -----------------------------------------------------------

    async def _send_all_and_wait(self, notices: list[tuple[PushTarget, Notice]]) -> None:
        sent = [self.send(registration, notice) for target, notice in notices for registration in target.registrations]
        if sent:
            await defer.DeferredList(sent, consumeErrors=True)

    def send(self, registration: Registration, notice: Notice) -> defer.Deferred[None]:
        """Queue one push (tried again on failure); fires when it is sent, gone, refused or out of attempts.

        Counted as ``dropped`` when there is nowhere to send it (no HTTP client, a gateway no longer
        configured).  Past its user's or host's share of the queue it waits and is offered again.
        """
        finished: defer.Deferred[None] = defer.Deferred()
        if self._http is None:
            self._metrics.count_push(registration.kind, "dropped")
            finished.callback(None)
            return finished
        if registration.kind == "webpush":
            url = registration.target
        else:
            base = self.config.gateways.get(registration.gateway or "default")
            if base is None:
                log.warn("Push gateway {name} is no longer configured", name=registration.gateway)
                self._metrics.count_push(registration.kind, "dropped")
                finished.callback(None)
                return finished
            url = base.rstrip("/") + NOTIFY_PATH
        self._submit(_Push(registration, notice, url, finished), 1)
        return finished

    def _submit(self, push: _Push, attempt: int, delay: float = 0) -> None:
        notice = push.notice
        size = PUSH_OVERHEAD + len(push.url) + len(notice.content.encode("utf-8") if notice.content else b"")
        job = functools.partial(self._job, push, attempt)
        if self.queue.submit(push.url, job, owner=push.registration.user_id, size=size, delay=delay):
            return
        # Past a share of the queue: wait outside it (the feed position waits for this push) and offer it again.
        self.waiting += 1

        def again() -> None:
            self._timers.discard(call)
            self.waiting -= 1
            self._submit(push, attempt)

        call = self._clock.callLater(max(delay, self.config.backoff), again)
        self._timers.add(call)

    def _job(self, push: _Push, attempt: int) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._attempt(push, attempt))

    async def _attempt(self, push: _Push, attempt: int) -> None:
        registration = push.registration
        if registration.kind == "webpush":
            why = await self._webpush(registration, push.notice)
        else:
            why = await self._gateway(push.url, registration, push.notice)
        if why is None:
            push.finished.callback(None)
            return
        if attempt >= self.config.max_attempts:
            self._failed(registration, why)
            push.finished.callback(None)
            return
        self._metrics.count_push(registration.kind, "retried")
        wait = min(self.config.max_backoff, self.config.backoff * 2 ** (attempt - 1))
        self._submit(push, attempt + 1, delay=wait)

    async def _webpush(self, registration: Registration, notice: Notice) -> str | None:
        """One attempt; None when it is done for good, else why it failed (to try again)."""
        assert self._http is not None and self.vapid is not None
        data = json.dumps(notice.webpush_payload(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert registration.p256dh is not None and registration.auth is not None
        body = encrypt_payload(data, registration.p256dh, registration.auth)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Encoding": "aes128gcm",
            "TTL": str(WEBPUSH_TTL),
            "Urgency": "high",
            "Authorization": self.vapid.authorization(
                registration.target, self.config.vapid_subject, self._clock.seconds()
            ),
        }
        try:
            result = await self._http.post(registration.target, body, headers, self.config.timeout)
        except RefusedAddressError as exc:
            # Never sent: the registration stays, so its fate tells nothing about the address.
            self._metrics.count_push("webpush", "refused")
            log.warn("Push to registration {id} (webpush) refused: {why}", id=registration.id, why=str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - timeouts, refused connections, answers too large alike
            return repr(exc)
        # A redirect (3xx) is not followed and is a failure like any other status but 404 and 410.
        if 200 <= result.code < 300:
            self._metrics.count_push("webpush", "sent")
        elif result.code in (404, 410):
            await self._gone(registration, f"HTTP {result.code}")
        else:
            return f"HTTP {result.code}"
        return None

    async def _gateway(self, url: str, registration: Registration, notice: Notice) -> str | None:
        """One attempt; None when it is done for good, else why it failed (to try again)."""
        assert self._gateway_http is not None
        body = json.dumps(notice.gateway_body(registration), separators=(",", ":")).encode("utf-8")
        try:
            result = await self._gateway_http.post(url, body, {"Content-Type": "application/json"}, self.config.timeout)
        except Exception as exc:  # noqa: BLE001 - timeouts and refused connections alike
            return repr(exc)
        if not 200 <= result.code < 300:
            return f"HTTP {result.code}"
        try:
            rejected = json.loads(result.body or b"{}").get("rejected", [])
        except (ValueError, AttributeError):
            rejected = []
        if isinstance(rejected, list) and registration.target in rejected:
            await self._gone(registration, "rejected by the gateway")
        else:
            self._metrics.count_push("gateway", "sent")
        return None

    async def _gone(self, registration: Registration, why: str) -> None:
        self._metrics.count_push(registration.kind, "gone")
        log.info(
            "Push registration {id} of user {user} removed: {why}",
            id=registration.id,
            user=registration.user_id,
            why=why,
        )
        await self._storage.push.remove(registration.id)

    def _failed(self, registration: Registration, why: str) -> None:
        self._metrics.count_push(registration.kind, "failed")
        log.warn(
            "Push to registration {id} ({kind}) failed: {why}", id=registration.id, kind=registration.kind, why=why
        )

    @property
    def waiting_timers(self) -> int:
        """Pushes waiting for ``push.delay`` or a retry: a node that stops reading the feed may still send these."""
        return len(self._timers)

    def decided(self) -> defer.Deferred[Any]:
        """Fires when the feed reads and the push decisions under way (presence, then storage) are made."""

        async def wait() -> None:
            if self.consumer is not None:
                await self.consumer.idle()
            await defer.DeferredList(list(self._deciding), consumeErrors=True)

        return defer.ensureDeferred(wait())

    # -- stopping ----------------------------------------------------------

    async def close(self) -> None:
        """Stop reading the feed; drop pushes waiting for ``push.delay``, a slot or a retry (the next node to tail
        the feed sends them); let those deciding and sending finish, then store how far the consumer got.

        Waiting pushes are dropped first: otherwise each push that ends
        (a dead endpoint's, say) would start another while the node stops.
        """
        halt_deliveries(self.consumer, self._timers)
        await defer.DeferredList(list(self._deciding), consumeErrors=True)
        left, self.waiting = self.queue.drop_waiting() + self.waiting, 0
        await hand_over(self.consumer, self.queue, left, "pushes")


@dataclass(frozen=True, slots=True)
class _Push:
    """One notice for one registration: the same on every attempt."""

    registration: Registration
    notice: Notice
    url: str
    finished: defer.Deferred[None]
