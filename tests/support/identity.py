"""An identity provider for tests: signing keys, a JWKS served over HTTP on 127.0.0.1, and tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet import reactor
from twisted.web import resource, server

__all__ = ["ISSUER", "JwksServer", "OpenIdProvider", "SigningKey", "b64", "hs256_with", "unsigned"]

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


class _Json(resource.Resource):
    isLeaf = True

    def __init__(self, render: Any) -> None:
        super().__init__()
        self._render = render

    def render(self, request: Any) -> bytes:
        code, body, headers = self._render(request)
        request.setResponseCode(code)
        for name, value in headers.items():
            request.setHeader(name.encode(), value.encode())
        if body is None:
            return b""
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body).encode()


class OpenIdProvider:
    """A small OpenID provider on 127.0.0.1 port 0: discovery, authorize (signs ``user`` in at once), a token
    endpoint checking the code, the redirect URI, the client's secret (``client_secret_basic`` or
    ``client_secret_post``, exactly one; `auth_used` lists which) and PKCE (S256), userinfo, and its key set.

    What the discovery document says and the provider does can be changed between sign-ins: `auth_methods`
    (``token_endpoint_auth_methods_supported``; None: absent), `iss_parameter` (RFC 9207: advertised, and
    ``iss`` added to every redirect), `names_in_id_token` (False: only ``sub`` in the ID token, the names at
    userinfo), `userinfo_sub` (another ``sub`` at userinfo), `userinfo_code` (an error status there).
    """

    def __init__(self, client_id: str, client_secret: str, redirect_uri: str) -> None:
        self.client_id, self.client_secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.key = SigningKey.rsa("op-1")
        self.user = {"sub": "op-user-1", "preferred_username": "olive", "name": "Olive Oyl"}
        #: Set to a string to sign ID tokens with another nonce than the one asked for.
        self.forced_nonce: str | None = None
        self.auth_methods: list[str] | None = None
        self.auth_used: list[str] = []
        self.iss_parameter = False
        self.names_in_id_token = True
        self.userinfo_sub: str | None = None
        self.userinfo_code = 200
        #: Requests to the userinfo endpoint (with the right access token or not).
        self.userinfo_requests = 0
        self._codes: dict[str, dict[str, str]] = {}
        self._access_tokens: set[str] = set()
        root = resource.Resource()
        well_known = resource.Resource()
        well_known.putChild(b"openid-configuration", _Json(self._discovery))
        root.putChild(b".well-known", well_known)
        root.putChild(b"authorize", _Json(self._authorize))
        root.putChild(b"token", _Json(self._token))
        root.putChild(b"userinfo", _Json(self._userinfo))
        root.putChild(b"jwks", _Json(lambda r: (200, {"keys": [self.key.public_jwk()]}, {})))
        site = server.Site(root)
        site.noisy = False
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    def stop(self) -> Any:
        return self.port.stopListening()

    def _discovery(self, request: Any) -> tuple[int, Any, dict[str, str]]:
        base = self.issuer
        document: dict[str, Any] = {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        }
        if self.auth_methods is not None:
            document["token_endpoint_auth_methods_supported"] = self.auth_methods
        if self.iss_parameter:
            document["authorization_response_iss_parameter_supported"] = True
        return 200, document, {}

    def _authorize(self, request: Any) -> tuple[int, Any, dict[str, str]]:
        args = {k.decode(): v[0].decode() for k, v in request.args.items()}
        if (
            args.get("client_id") != self.client_id
            or args.get("redirect_uri") != self.redirect_uri
            or args.get("response_type") != "code"
            or args.get("code_challenge_method") != "S256"
            or "openid" not in args.get("scope", "").split()
        ):
            return 400, {"error": "invalid_request"}, {}
        code = b64(hashlib.sha256(json.dumps(args).encode()).digest())
        self._codes[code] = args
        answer = {"code": code, "state": args["state"], **({"iss": self.issuer} if self.iss_parameter else {})}
        return 302, None, {"Location": f"{self.redirect_uri}?{urlencode(answer)}"}

    def _client_auth(self, request: Any, form: dict[str, str]) -> str | None:
        """The method the client authenticated with, None if it did not (or used two: RFC 6749 2.3)."""
        basic = (request.getHeader("authorization") or "").removeprefix("Basic ")
        used = []
        if basic:
            user, _, password = base64.b64decode(basic).decode().partition(":")
            if (unquote_plus(user), unquote_plus(password)) != (self.client_id, self.client_secret):
                return None
            used.append("client_secret_basic")
        if "client_secret" in form:
            if (form.get("client_id"), form["client_secret"]) != (self.client_id, self.client_secret):
                return None
            used.append("client_secret_post")
        return used[0] if len(used) == 1 else None

    def _token(self, request: Any) -> tuple[int, Any, dict[str, str]]:
        form = {k.decode(): v[0].decode() for k, v in request.args.items()}
        method = self._client_auth(request, form)
        if method is None:
            return 401, {"error": "invalid_client"}, {}
        self.auth_used.append(method)
        asked = self._codes.pop(form.get("code", ""), None)
        if (
            asked is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != self.redirect_uri
            or b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest()) != asked["code_challenge"]
        ):
            return 400, {"error": "invalid_grant"}, {}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": self.forced_nonce if self.forced_nonce is not None else asked["nonce"],
            **(self.user if self.names_in_id_token else {"sub": self.user["sub"]}),
        }
        access_token = b64(os.urandom(24))
        self._access_tokens.add(access_token)
        return 200, {"access_token": access_token, "token_type": "Bearer", "id_token": self.key.sign(claims)}, {}

    def _userinfo(self, request: Any) -> tuple[int, Any, dict[str, str]]:
        self.userinfo_requests += 1
        token = (request.getHeader("authorization") or "").removeprefix("Bearer ")
        if token not in self._access_tokens:
            return 401, {"error": "invalid_token"}, {}
        if self.userinfo_code != 200:
            return self.userinfo_code, {"error": "server_error"}, {}
        sub = self.userinfo_sub if self.userinfo_sub is not None else self.user["sub"]
        return 200, {**self.user, "sub": sub}, {}
