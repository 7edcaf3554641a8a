"""Web Push: RFC 8291 message encryption (aes128gcm, RFC 8188) and RFC 8292 VAPID.

The encryption is ``http_ece``'s (the library pywebpush uses): a fresh P-256
key and salt per message, ECDH with the subscription's ``p256dh`` key, the
subscription's ``auth`` secret in the key derivation.  The VAPID JWT is
``py_vapid``'s: ES256 over ``{aud: <the push service's origin>, exp, sub}``,
sent as ``Authorization: vapid t=<jwt>, k=<public key>``.

The server's VAPID key pair is generated on first start into the data
directory (``vapid_private.pem``, mode 0600) and kept: browsers bind a
subscription to the public key, so a new key would orphan every one.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

__all__ = ["VapidKey", "b64url", "b64url_decode", "encrypt_payload", "load_or_create_vapid_key"]

#: RFC 8291 recommends at most 4096 octets per push message; this leaves room for the record overhead.
MAX_PAYLOAD = 3_800

VAPID_FILE = "vapid_private.pem"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class VapidKey:
    """The server's VAPID key pair."""

    vapid: Vapid02

    @property
    def public_key(self) -> str:
        """The uncompressed P-256 point, base64url: the ``applicationServerKey`` browsers subscribe with."""
        raw = self.vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(raw)

    def authorization(self, endpoint: str, subject: str, now: float, lifetime: float = 12 * 3600) -> str:
        """The ``Authorization`` header for one push to ``endpoint``."""
        parts = urlsplit(endpoint)
        claims = {"aud": f"{parts.scheme}://{parts.netloc}", "exp": int(now + lifetime), "sub": subject}
        return self.vapid.sign(claims)["Authorization"]


def load_or_create_vapid_key(data_dir: Path, key_file: str = "") -> VapidKey:
    """The key in ``key_file`` (``push.vapid_private_key_file``: never generated), else the one in
    ``data_dir``, generated (and written 0600) when there is none."""
    if key_file:
        return VapidKey(Vapid02.from_pem(Path(key_file).read_bytes()))
    path = data_dir / VAPID_FILE
    if path.exists():
        return VapidKey(Vapid02.from_pem(path.read_bytes()))
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    vapid = Vapid02()
    vapid.generate_keys()
    # A name of this process's own: two nodes starting together on one data directory must not
    # write (and truncate) the same file, or one of them links the other's half-written key.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(vapid.private_pem())
    # Two nodes sharing a data directory and starting together: the first key written wins.
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return VapidKey(Vapid02.from_pem(path.read_bytes()))


def encrypt_payload(payload: bytes, p256dh: str, auth: str) -> bytes:
    """The aes128gcm body for a subscription with these keys (RFC 8291 section 3.4)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("push payload too large")
    server_key = ec.generate_private_key(ec.SECP256R1())
    return http_ece.encrypt(
        payload,
        salt=os.urandom(16),
        private_key=server_key,
        dh=b64url_decode(p256dh),
        auth_secret=b64url_decode(auth),
        version="aes128gcm",
    )


def valid_subscription_keys(p256dh: str, auth: str) -> bool:
    """A P-256 point and a 16-byte secret, as browsers give them."""
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(p256dh))
        return len(b64url_decode(auth)) == 16
    except (ValueError, TypeError):
        return False
