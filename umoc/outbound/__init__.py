"""Outbound HTTP that must never hold up the event path: Web Push, push gateways, webhooks.

``agent`` is the one HTTP agent every request goes through: client-chosen
URLs through its guarded form, which never reaches loopback, private,
metadata and other refused addresses (checked on the URL, after DNS and at
connect); every answer read with a byte limit, never inflated, redirects
never followed.
``queue`` bounds what waits (in jobs and in bytes) and what runs, fairly per
owner and per destination host, so one dead endpoint or one user's dead
registrations cannot take every slot; ``http`` is treq with a deadline on the
whole exchange; ``webpush`` holds the RFC 8291 encryption and RFC 8292
VAPID signature; ``signing`` the webhook HMAC.  Nothing here knows about
users or chats: ``umoc.domain.push`` and ``umoc.domain.webhooks`` decide
what to send to whom.
"""

from umoc.outbound.agent import AddressPolicy, AnswerTooLargeError, RefusedAddressError
from umoc.outbound.http import HttpClient, HttpClients, HttpResult
from umoc.outbound.queue import OutboundQueue
from umoc.outbound.signing import sign_webhook, webhook_headers
from umoc.outbound.webpush import VapidKey, encrypt_payload, load_or_create_vapid_key

__all__ = [
    "AddressPolicy",
    "AnswerTooLargeError",
    "HttpClient",
    "HttpClients",
    "HttpResult",
    "OutboundQueue",
    "RefusedAddressError",
    "VapidKey",
    "encrypt_payload",
    "load_or_create_vapid_key",
    "sign_webhook",
    "webhook_headers",
]
