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
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import Config
from umoc.domain.sessions import USERNAME, AccountDisabledError, SessionManager
from umoc.domain.tokens import INVALID, TokenError, TokenVerifier, VerifiedToken
from umoc.records.identity import ExternalUser, IdentityRecord
from umoc.records.sessions import SessionRecord
from umoc.storage.identities import IdentityStore, NoSuchIdentityError

__all__ = ["Identities", "SignedIn", "username_candidates"]

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
        #: None when ``auth.jwt`` is off: every token is refused.
        self.verifier = verifier
        self._store = store
        self._sessions = sessions
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self.verifier is not None

    async def user_for(self, token: str) -> SignedIn:
        """The user a valid token names (created on first sight when allowed); `TokenError` or
        `AccountDisabledError` otherwise."""
        if self.verifier is None:
            raise TokenError(INVALID)
        verified = await self.verifier.verify(token)
        jwt = self._config.auth.jwt
        record = ExternalUser(
            verified.issuer,
            verified.subject,
            username_candidates(verified.issuer, verified.subject, verified.username),
            verified.display_name[:64] if verified.display_name else None,
            self._clock.seconds(),
            create=jwt.auto_create_users,
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
