"""Users who sign in with a token from the operator's identity provider (``auth.jwt``).

Both ways in use this: a socket's CONNECT with ``{"token"}``
(`Identities.socket_session`) and ``POST /api/token/session``
(`umoc.domain.commands.sessions.token_session`, through `Identities.user_for`)::

    token --TokenVerifier--> (issuer, subject, names, iat, exp)      refusals: TokenError
          --identities.find_or_create--> the user (made on first sight unless auto_create_users is off)
          deactivated?                      AccountDisabledError
          iat before the user's tokens_valid_after (a revocation)?    TokenError "Invalid token"
          --> the socket's session (one per token), or an ordinary new session

Every check that can refuse a token runs before anything is written, so a
refused token creates nothing; the one write before the last check (a new
user) cannot be refused by it, since a user made now has no revocation.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import jwt as pyjwt
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import Config, JwtAuthConfig
from umoc.domain.sessions import USERNAME, AccountDisabledError, SessionManager
from umoc.domain.tokens import INVALID, TokenError, TokenVerifier, VerifiedToken
from umoc.records.identity import ExternalUser, IdentityRecord
from umoc.records.sessions import SessionRecord
from umoc.storage.identities import IdentityStore, NoSuchIdentityError

__all__ = ["UMOC_ISSUER", "Identities", "SignedIn", "username_candidates"]

#: The ``iss`` of the tokens UMOC signs itself (``POST /api/server/tokens``).
UMOC_ISSUER = "urn:umoc:server-api"
#: The issuer of the server API's users when ``auth.jwt.issuer`` is not set.
DEFAULT_SERVER_ISSUER = "umoc"

log = Logger()

_NOT_USERNAME = re.compile(r"[^A-Za-z0-9_.-]+")


def username_candidates(issuer: str, subject: str, wanted: str | None) -> tuple[str, ...]:
    """The usernames a new user from a token may get, in order: the claim's, then the same made unique.

    The claim's name is used only when it is a valid username; the last
    candidate (``u_`` and a digest of issuer and subject) is, in practice,
    never taken.  Deterministic, so two nodes creating the same user try the
    same names.
    """
    digest = hashlib.sha256(f"{issuer}\x00{subject}".encode()).hexdigest()
    base = wanted if wanted is not None and USERNAME.fullmatch(wanted) else None
    candidates: list[str] = []
    if base is not None:
        candidates.append(base)
    stem = (base or _NOT_USERNAME.sub("_", wanted or subject)).strip("_")[:24]
    if len(stem) >= 2:
        candidates.append(f"{stem}_{digest[:7]}")
    candidates.append(f"u_{digest[:20]}")
    return tuple(candidates)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A token's user, checked: who they are and what the token said."""

    user: IdentityRecord
    token: VerifiedToken


class Identities:
    """Tokens to users, and users to sessions."""

    def __init__(
        self,
        config: Config,
        verifier: TokenVerifier | None,
        store: IdentityStore,
        sessions: SessionManager,
        clock: IReactorTime,
    ) -> None:
        self._config = config
        #: None when ``auth.jwt`` is off: only UMOC's own tokens are accepted.
        self.verifier = verifier
        self._store = store
        self._sessions = sessions
        self._clock = clock
        #: Checks UMOC's own tokens, made at first use (`_own_verifier`).
        self._own: TokenVerifier | None = None

    @property
    def server_issuer(self) -> str:
        """The issuer of the server API's users: ``auth.jwt.issuer``, so its ``external_id`` is the provider's
        subject and one person is one user whichever way they come in; ``umoc`` when no provider is set."""
        return self._config.auth.jwt.issuer or DEFAULT_SERVER_ISSUER

    async def _own_verifier(self) -> TokenVerifier:
        """Checks UMOC's own tokens: HS256 with the secret every node reads from the database (made once)."""
        if self._own is None:
            secret = await self._store.signing_secret(secrets.token_urlsafe(48), self._clock.seconds())
            own = JwtAuthConfig(
                enabled=True,
                hmac_secret=secret,
                algorithms=("HS256",),
                issuer=UMOC_ISSUER,
                audience=self._config.auth.jwt.audience or "umoc",
                leeway=self._config.auth.jwt.leeway,
            )
            self._own = TokenVerifier(own, self._clock, None)
        return self._own

    async def mint(self, subject: str, ttl: float) -> str:
        """A token UMOC signs for the server API's user ``subject``, good for ``ttl`` seconds.

        ``iat`` keeps milliseconds: a token minted just after a revocation is
        not refused as one issued in the same second before it.
        """
        own = await self._own_verifier()
        now = self._clock.seconds()
        claims = {
            "iss": UMOC_ISSUER,
            "aud": own.config.audience,
            "sub": subject,
            "iat": round(now, 3),
            "exp": int(now + ttl),
            "jti": secrets.token_urlsafe(12),
        }
        return pyjwt.encode(claims, own.config.hmac_secret, algorithm="HS256", headers={"kid": "umoc"})

    async def _verify(self, token: str) -> tuple[VerifiedToken, bool]:
        """UMOC's own tokens by their ``iss`` (as the server API's users), the provider's with ``auth.jwt``."""
        try:
            issuer = pyjwt.decode(token, options={"verify_signature": False}).get("iss")
        except pyjwt.PyJWTError:
            issuer = None
        if issuer == UMOC_ISSUER:
            verified = await (await self._own_verifier()).verify(token)
            names = VerifiedToken(
                self.server_issuer, verified.subject, None, None, verified.issued_at, verified.expires_at
            )
            return names, True
        if self.verifier is None:
            raise TokenError(INVALID)
        return await self.verifier.verify(token), False

    async def user_for(self, token: str) -> SignedIn:
        """The user a valid token names (created on first sight when allowed); `TokenError` or
        `AccountDisabledError` otherwise."""
        verified, own = await self._verify(token)
        # UMOC's own tokens are minted for users the server API made: never a new one from them.
        return await self.sign_in(verified, self._config.auth.jwt.auto_create_users and not own)

    async def signing_key(self) -> bytes:
        """The secret of UMOC's own signatures (its tokens, the OIDC sign-in's state cookie)."""
        return (await self._own_verifier()).config.hmac_secret.encode("utf-8")

    async def sign_in(self, verified: VerifiedToken, create: bool) -> SignedIn:
        """The user a verified token (or OIDC ID token) names, made when new if ``create``; the checks every
        way in shares: an active account, no revocation since the token was issued."""
        record = ExternalUser(
            verified.issuer,
            verified.subject,
            username_candidates(verified.issuer, verified.subject, verified.username),
            verified.display_name[:64] if verified.display_name else None,
            self._clock.seconds(),
            create=create,
        )
        try:
            user = await self._store.find_or_create(record)
        except NoSuchIdentityError:
            log.info("Token refused: unknown subject", event="token_refused", reason="unknown subject")
            raise TokenError(INVALID) from None
        if not user.active:
            raise AccountDisabledError("This account has been deactivated")
        valid_after = user.tokens_valid_after
        if valid_after is not None and (verified.issued_at is None or verified.issued_at < valid_after):
            log.info(
                "Token refused: issued before the user's revocation",
                event="token_refused",
                reason="revoked",
                user_id=user.user_id,
            )
            raise TokenError(INVALID)
        if user.created:
            log.info(
                "User {username} created from a token",
                event="register",
                username=user.username,
                user_id=user.user_id,
                via="token",
            )
        return SignedIn(user, verified)

    async def socket_session(self, token: str) -> tuple[SessionRecord, str]:
        """The session of a socket connecting with ``token``, and the token's subject (``external_id``)."""
        signed_in = await self.user_for(token)
        now = self._clock.seconds()
        expires_at = min(signed_in.token.expires_at, now + self._config.sessions.ttl)
        session = await self._sessions.token_session(signed_in.user.user_id, token, expires_at)
        return session, signed_in.token.subject
