"""TOTP codes (RFC 6238, through pyotp): 30-second steps, six digits, one step of clock skew either way.

A code is accepted once: the step it matched is stored (`TotpStore.use_step`),
and a code of that step or an earlier one is refused afterwards, so a code
seen over a shoulder or in a log cannot be replayed within its 90 seconds.
Codes are compared in constant time.
"""

from __future__ import annotations

import hmac
import re

import pyotp

__all__ = ["ISSUER_NAME", "matching_step", "new_secret", "provisioning_uri"]

#: What authenticator apps show above the code.
ISSUER_NAME = "UMOC"
STEP = 30
CODE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """A new base32 secret of 160 bits (RFC 4226's recommended length)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (as a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER_NAME)


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step (``now // 30``, give or take one) whose code ``code`` is; None when it is none of them."""
    if not CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now // STEP)
    found = None
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP).encode(), code.encode()):
            found = step
    return found
