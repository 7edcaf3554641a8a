"""A login's new session, as the user store writes it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LoginAttempt",
    "NewSession",
    "SessionCredentials",
    "SessionRecord",
    "OidcCallback",
    "TokenCredentials",
    "TotpCode",
]


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session for ``user_id``: its id, the digest of its token (never the token), its lifetime."""

    user_id: int
    session_id: str
    token_hash: str
    created_at: float
    expires_at: float

    def __post_init__(self) -> None:
        if not self.expires_at > self.created_at:
            raise ValueError("a session must expire after it is created")


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """``POST /api/login``: a name and password, and the ``device_token`` the client sent (None if nothing).

    A device token not of the form this server issues is treated as absent
    by the command.
    """

    username: str
    password: str
    device_token: str | None = None
    #: The TOTP code, for an account with TOTP on (None: not sent).
    totp: str | None = None


@dataclass(frozen=True, slots=True)
class SessionCredentials:
    """A session's id and its token, as its holder presents them (``POST /api/logout``)."""

    session_id: str
    token: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A live login session as stored: the digest of its token, never the token."""

    id: str
    user_id: int
    username: str
    token_hash: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenCredentials:
    """A token from the operator's identity provider, exchanged for a session (``POST /api/token/session``)."""

    token: str


@dataclass(frozen=True, slots=True)
class TotpCode:
    """``POST /api/account/totp/enable`` and ``disable``: the code the user's app shows now."""

    code: str


@dataclass(frozen=True, slots=True)
class OidcCallback:
    """``GET /api/oidc/callback``: the provider's ``code``, ``state`` and ``iss`` (RFC 9207; None: absent), and the
    state cookie the browser kept."""

    code: str
    state: str
    cookie: str | None
    iss: str | None = None
