"""Verifying the JSON Web Tokens of the operator's identity provider (``auth.jwt``).

A token is accepted when, in this order::

    header   parses; its alg is in auth.jwt.algorithms ("none" never is)
    key      HS*: auth.jwt.hmac_secret (no secret configured: refused)
             others: auth.jwt.public_key_file, or the JWKS key named by the header's kid
                     (no kid, or a kid the key set lacks after a refetch: "Unknown key id");
                     the key's own kind and alg must fit the header's alg
    signature  PyJWT, told to accept that one algorithm only
    claims   iss == auth.jwt.issuer, aud names auth.jwt.audience, exp present,
             exp/nbf/iat within auth.jwt.leeway of this node's clock, the subject claim a string

An HMAC secret verifies HS* tokens only and a public key asymmetric ones
only, so a token "signed" HS256 with the provider's public key as the
secret (key confusion) is refused before any signature is computed.
Refusals are `TokenError`: ``Invalid token``, ``Token expired`` or
``Unknown key id`` (code ``not_authenticated``); which check failed is
logged, the token never is.

The key set (`JwksCache`) is fetched through the node's trusted outbound
client (bounded answer, no redirects), kept ``jwks_refresh``, then fetched
again on the next use (the old keys serve while a refetch fails).  A
``kid`` it lacks refetches it at once, but at most once per
``jwks_refresh``: a stream of tokens with made-up ids costs the provider one
request per period, whatever their number.  Concurrent fetches share one
request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import JwtAuthConfig
from umoc.errors import UserError
from umoc.outbound.http import HttpClient

__all__ = ["JwksCache", "PublicKey", "TokenError", "TokenVerifier", "VerifiedToken"]

log = Logger()

#: Longer than any sane token; refused before parsing.
MAX_TOKEN_LENGTH = 8192
#: Seconds a key set request may take.
JWKS_TIMEOUT = 10.0
INVALID = "Invalid token"
EXPIRED = "Token expired"
UNKNOWN_KID = "Unknown key id"

#: The key type (JWK ``kty``) each family of algorithms needs.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class TokenError(UserError):
    """A token that does not prove who its holder is; ``message`` is one of the three refusals above."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_authenticated")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a valid token says: who (issuer, subject), the names it offers, when it was issued and ends."""

    issuer: str
    subject: str
    username: str | None
    display_name: str | None
    #: ``iat``, None when the token has none.
    issued_at: float | None
    expires_at: float


def _refuse(reason: str, message: str = INVALID) -> TokenError:
    log.info("Token refused: {reason}", event="token_refused", reason=reason)
    return TokenError(message)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """One key of a key set: its type (``kty``), the ``alg`` it names (None: any of its type), the key."""

    kty: str
    alg: str | None
    key: Any


class JwksCache:
    """An identity provider's key set by ``kid``, fetched through the outbound agent and kept ``refresh`` seconds."""

    def __init__(self, url: str, http: HttpClient, clock: IReactorTime, refresh: float) -> None:
        self.url = url
        self._http = http
        self._clock = clock
        self._refresh = refresh
        self._keys: dict[str, PublicKey] = {}
        #: When the keys were last fetched (None: never).
        self._fetched_at: float | None = None
        #: When an unknown ``kid`` last caused a refetch.
        self._unknown_at: float | None = None
        #: Who waits for the fetch under way (None: no fetch under way).
        self._waiters: list[defer.Deferred[None]] | None = None
        #: Requests made to the provider (tests and metrics read it).
        self.fetches = 0

    async def key(self, kid: str) -> PublicKey:
        """The key named ``kid``; `TokenError` ``Unknown key id`` when the provider has none by that name."""
        now = self._clock.seconds()
        stale = self._fetched_at is None or now - self._fetched_at >= self._refresh
        if stale or self._waiters is not None:  # a fetch under way: wait for its keys too
            await self._fetch()
        found = self._keys.get(kid)
        if found is None and (self._unknown_at is None or now - self._unknown_at >= self._refresh):
            self._unknown_at = now
            await self._fetch()
            found = self._keys.get(kid)
        if found is None:
            raise _refuse("unknown kid", UNKNOWN_KID)
        return found

    async def _fetch(self) -> None:
        """Fetch the key set, or wait for the fetch already under way: one request for every waiter."""
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._waiters is None:
            self._waiters = [waiter]
            d = defer.ensureDeferred(self._load())
            d.addBoth(self._fetched)
        else:
            self._waiters.append(waiter)
        await waiter

    def _fetched(self, result: Any) -> None:
        waiters, self._waiters = self._waiters or [], None
        for waiter in waiters:
            waiter.callback(None)

    async def _load(self) -> None:
        """Fetch and parse the key set; on any failure keep the old keys (logged) and try again next time."""
        self.fetches += 1
        self._fetched_at = self._clock.seconds()
        try:
            answer = await self._http.get(self.url, {"Accept": "application/json"}, JWKS_TIMEOUT)
            if answer.code != 200:
                raise ValueError(f"HTTP {answer.code}")
            document = json.loads(answer.body)
            entries = document.get("keys") if isinstance(document, dict) else None
            if not isinstance(entries, list):
                raise ValueError("no 'keys' list")
        except Exception as exc:  # noqa: BLE001 - any failure: the old keys serve
            log.warn("Could not fetch the JWKS at {url}: {why}", event="jwks_failed", url=self.url, why=str(exc))
            return
        keys: dict[str, PublicKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry).key  # checks kty (and crv) first
            except jwt.PyJWTError:
                continue  # a key type or curve this node cannot use: the others still serve
            alg = entry.get("alg")
            keys[entry["kid"]] = PublicKey(entry["kty"], alg if isinstance(alg, str) else None, key)
        self._keys = keys
        log.info("Fetched {count} keys from {url}", event="jwks_fetched", count=len(keys), url=self.url)


def _string_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def _number(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim; `TokenError` if present but not a number."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(f"{name} is not a number")
    return float(value)


class TokenVerifier:
    """Checks tokens against ``auth.jwt``: the key, the signature, the claims (see the module's docstring)."""

    def __init__(self, config: JwtAuthConfig, clock: IReactorTime, http: HttpClient | None) -> None:
        self.config = config
        self._clock = clock
        self._public_key: Any = None
        if config.public_key_file:
            # The PEM read once, at start: PyJWT loads it per algorithm family and refuses a wrong kind.
            self._public_key = Path(config.public_key_file).read_bytes()
        self.jwks: JwksCache | None = None
        if config.jwks_url and http is not None:
            self.jwks = JwksCache(config.jwks_url, http, clock, config.jwks_refresh)

    async def verify(self, token: str) -> VerifiedToken:
        """The token's claims if it is valid now; `TokenError` otherwise."""
        config = self.config
        if not 0 < len(token) <= MAX_TOKEN_LENGTH:
            raise _refuse("length")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refuse("malformed header") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in config.algorithms:
            raise _refuse(f"algorithm {str(alg)[:16]!r} not allowed")
        key = await self._key_for(alg, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=config.audience,
                issuer=config.issuer,
                options={
                    "require": ["exp", "iss", "aud"],
                    # Times are checked below against this node's (injectable) clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise _refuse("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise _refuse("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise _refuse("bad signature") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise _refuse(type(exc).__name__) from None
        return self._checked(claims)

    async def _key_for(self, alg: str, kid: Any) -> Any:
        """The key verifying ``alg``; never a public key for HS*, never the HMAC secret for anything else."""
        config = self.config
        if alg.startswith("HS"):
            if not config.hmac_secret:
                raise _refuse("HMAC token but no hmac_secret")
            return config.hmac_secret.encode("utf-8")
        if self._public_key is not None:
            return self._public_key
        if self.jwks is None:
            raise _refuse("asymmetric token but no public key")
        if not isinstance(kid, str) or not kid:
            raise _refuse("no kid", UNKNOWN_KID)
        found = await self.jwks.key(kid)
        wanted = _KEY_TYPES.get(alg[:2])
        if found.kty != wanted or (found.alg is not None and found.alg != alg):
            raise _refuse(f"key {kid[:32]!r} does not fit {alg}")
        return found.key

    def _checked(self, claims: dict[str, Any]) -> VerifiedToken:
        config = self.config
        now = self._clock.seconds()
        leeway = config.leeway
        expires_at = _number(claims, "exp")
        not_before = _number(claims, "nbf")
        issued_at = _number(claims, "iat")
        assert expires_at is not None  # required above
        if expires_at <= now - leeway:
            raise _refuse("expired", EXPIRED)
        if not_before is not None and not_before > now + leeway:
            raise _refuse("not yet valid")
        if issued_at is not None and issued_at > now + leeway:
            raise _refuse("issued in the future")
        names = config.claims
        subject = _string_claim(claims, names.subject)
        if subject is None or len(subject) > 255:
            raise _refuse("no subject")
        return VerifiedToken(
            config.issuer,
            subject,
            _string_claim(claims, names.username),
            _string_claim(claims, names.display_name),
            issued_at,
            expires_at,
        )
