"""An identity provider for tests: signing keys, a JWKS served over HTTP on 127.0.0.1, and tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet import reactor
from twisted.web import resource, server

__all__ = ["ISSUER", "JwksServer", "SigningKey", "b64", "hs256_with", "unsigned"]

ISSUER = "https://idp.example.test"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class SigningKey:
    """A private key, its ``kid`` and its algorithm; `public_jwk` is what the key set publishes."""

    kid: str
    alg: str
    private: Any

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def ed25519(cls, kid: str) -> SigningKey:
        return cls(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **header})


def unsigned(claims: dict[str, Any]) -> str:
    """An ``alg: none`` token."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def hs256_with(secret: bytes, claims: dict[str, Any], kid: str | None = None) -> str:
    """An HS256 token signed with ``secret`` by hand (PyJWT refuses a PEM as an HMAC secret: an attacker does not)."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


class _Jwks(resource.Resource):
    isLeaf = True

    def __init__(self, owner: JwksServer) -> None:
        super().__init__()
        self._owner = owner

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - twisted.web's name
        self._owner.requests += 1
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"keys": [key.public_jwk() for key in self._owner.keys]}).encode()


class JwksServer:
    """A twisted.web server on 127.0.0.1 port 0 publishing ``keys`` (change the list to rotate)."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = keys
        self.requests = 0
        root = resource.Resource()
        root.putChild(b"jwks.json", _Jwks(self))
        site = server.Site(root)
        site.noisy = False
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/jwks.json"

    def stop(self) -> Any:
        return self.port.stopListening()
