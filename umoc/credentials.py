"""Password hashes and bearer tokens.

Passwords are hashed with scrypt (memory-hard, salted) and verified in
constant time.  Tokens are random and only their SHA-256 is stored, so a
leaked database does not hand out live sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random

__all__ = ["hash_password", "verify_password", "new_token", "token_digest", "token_matches"]

_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, *, n: int = _N) -> str:
    """``scrypt$n$r$p$salt$hash``: parameters travel with the hash so they can grow later."""
    salt = _random.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=_R, p=_P, dklen=_DKLEN, maxmem=64 * 1024 * 1024)
    return f"scrypt${n}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; never raises on a malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


#: A hash to check against when the user does not exist, so that a failed
#: login takes as long whether or not the name is taken.
DUMMY_HASH = hash_password("not a real password")


def new_token() -> str:
    """32 random bytes, URL-safe: session tokens and upload tokens."""
    return _random.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, digest: str) -> bool:
    """Constant-time comparison of a presented token with a stored digest."""
    return hmac.compare_digest(token_digest(token).encode("ascii"), digest.encode("ascii"))
