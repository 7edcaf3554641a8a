"""Sign-in with an OpenID Connect provider: the authorization code flow with PKCE (``auth.oidc``).

::

    browser                      UMOC (any node)                              provider
    GET /api/oidc/login   ->     discovery (cached): authorization, token, jwks, userinfo endpoints,
                                     token_endpoint_auth_methods_supported,
                                     authorization_response_iss_parameter_supported
                                 state, nonce, code_verifier: new random values, kept in a
                                 cookie signed with UMOC's own key (any node can read it back)
                          <-     302 authorization_endpoint?response_type=code&client_id&redirect_uri
                                     &scope&state&nonce&code_challenge=S256(verifier)
    ... the user signs in at the provider ...
    GET /api/oidc/callback?code&state[&iss]  (the cookie comes along: SameSite=Lax, a top-level GET)
                                 cookie's signature and expiry, state == the cookie's (constant time)
                                 iss == the issuer (RFC 9207) when the provider advertises it, or when
                                     the callback has one: the code goes to no other provider's token
                                     endpoint (mix-up attacks)
                                 POST token_endpoint {grant_type=authorization_code, code,
                                     redirect_uri, code_verifier} and the client's credentials:
                                     client_secret_basic (Authorization: Basic) or client_secret_post
                                     (client_id, client_secret in the body), see `_auth_method`
                                 the ID token: signature (the provider's JWKS), iss, aud == client_id,
                                     exp, nonce == the cookie's
                                 a username or display name claim the ID token lacks: GET
                                     userinfo_endpoint with the access token; its sub must be the
                                     ID token's, or the sign-in is refused
                                 the user of (issuer, sub): found or created (the claims' names)
                          <-     a new session, handed to the web client in the URL's fragment

Everything that can fail answers `OidcError` with a message for the person
at the browser; the edge sends it to the web client too.  The client secret,
codes and tokens are never logged.  Every request to the provider goes
through the node's trusted outbound client (bounded answers, no redirects).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote_plus, urlencode

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import Config, JwtAuthConfig
from umoc.domain.identity import Identities, SignedIn
from umoc.domain.tokens import TokenError, TokenVerifier, VerifiedToken
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
    #: None: the provider has none (the ID token's claims are all there is).
    userinfo_endpoint: str | None
    #: ``token_endpoint_auth_methods_supported``; None when the document has no such list.
    auth_methods: tuple[str, ...] | None
    #: ``authorization_response_iss_parameter_supported`` (RFC 9207): every callback must then carry ``iss``.
    iss_parameter: bool

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> _Provider:
        """The endpoints and capabilities UMOC uses; `KeyError` when a required endpoint is missing."""
        userinfo = document.get("userinfo_endpoint")
        methods = document.get("token_endpoint_auth_methods_supported")
        return cls(
            str(document["authorization_endpoint"]),
            str(document["token_endpoint"]),
            str(document["jwks_uri"]),
            userinfo if isinstance(userinfo, str) and userinfo else None,
            tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else None,
            document.get("authorization_response_iss_parameter_supported") is True,
        )


def _string_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


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
            provider = _Provider.from_document(document)
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

    def _auth_method(self, provider: _Provider) -> str:
        """How to prove the client at the token endpoint: ``none`` (a public client: no secret),
        ``auth.oidc.token_endpoint_auth_method`` when forced, else ``client_secret_basic`` (OIDC Discovery's
        default when the document lists no methods) unless the provider lists ``client_secret_post`` and not
        ``client_secret_basic``."""
        if not self._config.client_secret:
            return "none"
        forced = self._config.token_endpoint_auth_method
        if forced != "auto":
            return forced
        supported = provider.auth_methods if provider.auth_methods is not None else ("client_secret_basic",)
        if "client_secret_post" in supported and "client_secret_basic" not in supported:
            return "client_secret_post"
        return "client_secret_basic"

    def _token_request(self, provider: _Provider, code: str, verifier: str) -> tuple[bytes, dict[str, str]]:
        """The token request's body and headers, the client's credentials placed as `_auth_method` says."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._config.redirect_url,
            "code_verifier": verifier,
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        method = self._auth_method(provider)
        if method == "client_secret_basic":
            # RFC 6749 section 2.3.1: each part form-urlencoded, then joined by ":" and base64'd.
            pair = f"{quote_plus(self._config.client_id)}:{quote_plus(self._config.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        else:
            form["client_id"] = self._config.client_id
            if method == "client_secret_post":
                form["client_secret"] = self._config.client_secret
        return urlencode(form).encode("ascii"), headers

    def _check_iss(self, provider: _Provider, iss: str | None) -> None:
        """RFC 9207: the callback's ``iss`` must be the issuer; it must be there when the provider says it
        always sends one.  Checked before the code goes anywhere."""
        if iss is None and not provider.iss_parameter:
            return
        if iss != self._config.issuer:
            log.warn(
                "OIDC sign-in refused: the callback's iss is {iss!r}, not the issuer",
                event="oidc_failed",
                iss=None if iss is None else iss[:200],
            )
            raise OidcError("The sign-in did not come back from this server's provider; sign in again")

    async def _userinfo(
        self, provider: _Provider, access_token: Any, subject: Any, verified: VerifiedToken
    ) -> VerifiedToken:
        """``verified`` with the username and display name the ID token lacks taken from the userinfo
        endpoint, when the provider has one.  Its ``sub`` must be the ID token's (else `OidcError`: the
        answer is about someone else); an unreachable or unreadable endpoint leaves the names as they were."""
        if provider.userinfo_endpoint is None or not isinstance(access_token, str) or not access_token:
            return verified
        url = provider.userinfo_endpoint
        try:
            answer = await self._http.get(
                url, {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}, TIMEOUT
            )
            if answer.code != 200:
                raise ValueError(f"HTTP {answer.code}")
            info = json.loads(answer.body)
            if not isinstance(info, dict):
                raise ValueError("not a JSON object")
        except Exception as exc:  # noqa: BLE001 - the names are a nicety: sign in with the ID token's
            log.warn("OIDC userinfo at {url} failed: {why}", event="oidc_failed", url=url, why=str(exc)[:200])
            return verified
        if not isinstance(subject, str) or info.get("sub") != subject:
            log.warn("OIDC sign-in refused: the userinfo's sub is not the ID token's", event="oidc_failed")
            raise OidcError("The sign-in provider's answer could not be verified; sign in again")
        names = self._jwt.claims
        return replace(
            verified,
            username=verified.username or _string_claim(info, names.username),
            display_name=verified.display_name or _string_claim(info, names.display_name),
        )

    async def finish(self, code: str, state: str, cookie: str | None, iss: str | None = None) -> SignedIn:
        """The user the provider signed in, after every check above; `OidcError` (or `TokenError`) otherwise.
        ``iss`` is the callback's parameter (None: absent)."""
        if not self.enabled:
            raise OidcError("Sign-in with a provider is not enabled")
        kept = await self._unseal(cookie)
        if not hmac.compare_digest(str(kept.get("state", "")).encode(), state.encode()):
            raise OidcError("The sign-in expired or was started elsewhere; sign in again")
        provider = await self._discover()
        self._check_iss(provider, iss)
        body, headers = self._token_request(provider, code, str(kept["verifier"]))
        try:
            answer = await self._http.post(provider.token_endpoint, body, headers, TIMEOUT)
            tokens = json.loads(answer.body) if answer.code == 200 else None
            id_token = tokens["id_token"] if isinstance(tokens, dict) else None
            if not isinstance(tokens, dict) or not isinstance(id_token, str):
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
        if verified.username is None or verified.display_name is None:
            verified = await self._userinfo(provider, tokens.get("access_token"), claims.get("sub"), verified)
        return await self._identities.sign_in(verified, self._jwt.auto_create_users)
