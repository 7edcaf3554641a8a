"""Sign-in with an OpenID Connect provider: the authorization code flow with PKCE (``auth.oidc``).

::

    browser                      UMOC (any node)                              provider
    GET /api/oidc/login   ->     discovery (cached): authorization, token, jwks endpoints
                                 state, nonce, code_verifier: new random values, kept in a
                                 cookie signed with UMOC's own key (any node can read it back)
                          <-     302 authorization_endpoint?response_type=code&client_id&redirect_uri
                                     &scope&state&nonce&code_challenge=S256(verifier)
    ... the user signs in at the provider ...
    GET /api/oidc/callback?code&state  (the cookie comes along: SameSite=Lax, a top-level GET)
                                 cookie's signature and expiry, state == the cookie's (constant time)
                                 POST token_endpoint {grant_type=authorization_code, code,
                                     redirect_uri, client_id, client_secret, code_verifier}
                                 the ID token: signature (the provider's JWKS), iss, aud == client_id,
                                     exp, nonce == the cookie's
                                 the user of (issuer, sub): found or created (the claims' names)
                          <-     a new session, handed to the web client in the URL's fragment

Everything that can fail answers `OidcError` with a message for the person
at the browser; the edge sends it to the web client too.  The client secret,
codes and tokens are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import Config, JwtAuthConfig
from umoc.domain.identity import Identities, SignedIn
from umoc.domain.tokens import TokenError, TokenVerifier
from umoc.errors import UserError
from umoc.outbound.http import HttpClient

__all__ = ["COOKIE", "OidcError", "OidcSignIn", "Started"]

log = Logger()

#: The cookie holding a sign-in's state between the redirect and the callback.
COOKIE = "oidc_state"
#: How long a sign-in may take at the provider.
STATE_TTL = 600
#: How long the provider's discovery document is used before it is read again.
DISCOVERY_TTL = 3600
TIMEOUT = 10.0
#: ID token algorithms: the provider signs with a key of its key set.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class OidcError(UserError):
    """A sign-in that could not finish; the message is for the person at the browser."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_authenticated")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Started:
    """Where to send the browser, and the signed state cookie to set on the way."""

    location: str
    cookie: str


@dataclass(frozen=True, slots=True)
class _Provider:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class OidcSignIn:
    """The provider's endpoints (discovered once an hour), the state cookie, the code exchange."""

    def __init__(self, config: Config, identities: Identities, http: HttpClient, clock: IReactorTime) -> None:
        self._config = config.auth.oidc
        self._jwt = config.auth.jwt
        self._identities = identities
        self._http = http
        self._clock = clock
        self._provider: _Provider | None = None
        self._discovered_at = 0.0
        self._verifier: TokenVerifier | None = None

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    async def _discover(self) -> _Provider:
        now = self._clock.seconds()
        if self._provider is not None and now - self._discovered_at < DISCOVERY_TTL:
            return self._provider
        url = self._config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            answer = await self._http.get(url, {"Accept": "application/json"}, TIMEOUT)
            if answer.code != 200:
                raise ValueError(f"HTTP {answer.code}")
            document = json.loads(answer.body)
            provider = _Provider(
                str(document["authorization_endpoint"]), str(document["token_endpoint"]), str(document["jwks_uri"])
            )
            if document["issuer"] != self._config.issuer:
                raise ValueError("issuer mismatch")
        except Exception as exc:  # noqa: BLE001 - any failure: the sign-in cannot start now
            log.warn("OIDC discovery at {url} failed: {why}", event="oidc_failed", url=url, why=str(exc)[:200])
            if self._provider is not None:
                return self._provider  # the last good document serves while the provider is away
            raise OidcError("The sign-in provider is not reachable; try again shortly") from None
        if self._provider is None or provider.jwks_uri != self._provider.jwks_uri:
            self._verifier = TokenVerifier(
                JwtAuthConfig(
                    enabled=True,
                    jwks_url=provider.jwks_uri,
                    algorithms=ID_TOKEN_ALGORITHMS,
                    issuer=self._config.issuer,
                    audience=self._config.client_id,
                    leeway=self._jwt.leeway,
                    jwks_refresh=self._jwt.jwks_refresh,
                    claims=self._jwt.claims,
                ),
                self._clock,
                self._http,
            )
        self._provider, self._discovered_at = provider, now
        return provider

    async def _seal(self, state: dict[str, Any]) -> str:
        payload = _b64(json.dumps(state, separators=(",", ":")).encode())
        mac = hmac.new(await self._identities.signing_key(), b"oidc." + payload.encode(), hashlib.sha256).digest()
        return f"{payload}.{_b64(mac)}"

    async def _unseal(self, cookie: str | None) -> dict[str, Any]:
        payload, _, mac = (cookie or "").partition(".")
        expected = hmac.new(await self._identities.signing_key(), b"oidc." + payload.encode(), hashlib.sha256)
        try:
            good = hmac.compare_digest(_unb64(mac), expected.digest())
            state = json.loads(_unb64(payload)) if good else None
        except (ValueError, TypeError):
            state = None
        if not isinstance(state, dict) or not state.get("exp", 0) > self._clock.seconds():
            raise OidcError("The sign-in expired or was started elsewhere; sign in again")
        return state

    async def start(self) -> Started:
        """The redirect to the provider, and the cookie that lets the callback check what comes back."""
        if not self.enabled:
            raise OidcError("Sign-in with a provider is not enabled")
        provider = await self._discover()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        challenge = _b64(hashlib.sha256(verifier.encode("ascii")).digest())
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self._config.client_id,
                "redirect_uri": self._config.redirect_url,
                "scope": " ".join(self._config.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        sep = "&" if "?" in provider.authorization_endpoint else "?"
        cookie = await self._seal(
            {"state": state, "nonce": nonce, "verifier": verifier, "exp": self._clock.seconds() + STATE_TTL}
        )
        return Started(f"{provider.authorization_endpoint}{sep}{query}", cookie)

    async def finish(self, code: str, state: str, cookie: str | None) -> SignedIn:
        """The user the provider signed in, after every check above; `OidcError` (or `TokenError`) otherwise."""
        if not self.enabled:
            raise OidcError("Sign-in with a provider is not enabled")
        kept = await self._unseal(cookie)
        if not hmac.compare_digest(str(kept.get("state", "")).encode(), state.encode()):
            raise OidcError("The sign-in expired or was started elsewhere; sign in again")
        provider = await self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._config.redirect_url,
            "client_id": self._config.client_id,
            "code_verifier": str(kept["verifier"]),
        }
        if self._config.client_secret:
            form["client_secret"] = self._config.client_secret
        try:
            answer = await self._http.post(
                provider.token_endpoint,
                urlencode(form).encode("ascii"),
                {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                TIMEOUT,
            )
            tokens = json.loads(answer.body) if answer.code == 200 else None
            id_token = tokens["id_token"] if isinstance(tokens, dict) else None
            if not isinstance(id_token, str):
                raise ValueError(f"HTTP {answer.code}")
        except Exception as exc:  # noqa: BLE001 - the provider refused the code, or is away
            log.warn("OIDC code exchange failed: {why}", event="oidc_failed", why=str(exc)[:200])
            raise OidcError("The sign-in provider did not confirm the sign-in; sign in again") from None
        assert self._verifier is not None  # made by _discover
        try:
            verified = await self._verifier.verify(id_token)
            claims = json.loads(_unb64(id_token.split(".")[1]))
        except TokenError:
            raise OidcError("The sign-in provider's answer could not be verified; sign in again") from None
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), str(kept["nonce"]).encode()):
            log.warn("OIDC sign-in refused: nonce mismatch", event="oidc_failed")
            raise OidcError("The sign-in provider's answer could not be verified; sign in again")
        return await self._identities.sign_in(verified, self._jwt.auto_create_users)
