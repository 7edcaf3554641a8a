"""Webhook signatures: ``X-UMOC-Signature: sha256=<hex HMAC-SHA256 of "timestamp.body">``.

The timestamp is signed with the body, so a receiver that refuses old
timestamps (say, five minutes) also refuses replays.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["sign_webhook", "webhook_headers"]


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    stamp = str(timestamp)
    return {
        "Content-Type": "application/json",
        "User-Agent": "UMOC-Webhooks",
        "X-UMOC-Timestamp": stamp,
        "X-UMOC-Signature": sign_webhook(secret, stamp, body),
    }
