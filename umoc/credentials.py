"""Password hashes and bearer tokens.

Passwords are hashed with Argon2id (argon2-cffi) at OWASP's recommended
minimum (19 MiB, two passes, one lane): memory-hard and salted, verified in
constant time.  Hashes made by earlier versions with scrypt
(``scrypt$n$r$p$salt$hash``) still verify, and `needs_rehash` says so, so a
successful login can store an Argon2id hash in their place.  Tokens are
random and only their SHA-256 is stored, so a leaked database does not
hand out live sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["hash_password", "needs_rehash", "new_token", "token_digest", "token_matches", "verify_password"]

#: OWASP Password Storage Cheat Sheet, Argon2id: m=19 MiB, t=2, p=1.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    """An Argon2id hash in the PHC string format; parameters travel with it."""
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (Argon2id, or a legacy scrypt hash); never raises."""
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError, ValueError):
        return False


def needs_rehash(stored: str) -> bool:
    """A hash to replace at the next successful login: scrypt, or Argon2id with other parameters."""
    if stored.startswith("scrypt$"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _scheme, n, r, p, salt, digest = stored.split("$")
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
