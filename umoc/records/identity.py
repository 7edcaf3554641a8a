"""Users from the operator's identity provider: who a verified token names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from umoc.errors import UserError

__all__ = [
    "MAX_EXTRA",
    "ExternalRef",
    "ExternalUser",
    "IdentityRecord",
    "NewServerKey",
    "ServerUser",
    "TokenRequest",
]

#: Bytes of the server API's ``extra`` JSON kept per user.
MAX_EXTRA = 4096
#: A UMOC-signed token lives at least a minute and at most 30 days.
MIN_TOKEN_TTL = 60
MAX_TOKEN_TTL = 30 * 86400
SERVER_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class ExternalUser:
    """A verified token's user: its (issuer, subject), and the names to give them if they are new.

    ``usernames`` are tried in order (the first not taken wins); they are
    already valid usernames.  ``create`` is False when only existing users
    may sign in (``auth.jwt.auto_create_users: false``).
    """

    issuer: str
    subject: str
    usernames: tuple[str, ...]
    display_name: str | None
    now: float
    create: bool = True
    #: The server API's ``extra`` JSON: stored with a new user, replacing an existing one's (None: kept).
    extra: str | None = None

    def __post_init__(self) -> None:
        if not self.issuer or not self.subject:
            raise ValueError("an external user needs an issuer and a subject")
        if self.create and not self.usernames:
            raise ValueError("a user to create needs a username to try")


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """The user an (issuer, subject) is, as stored."""

    user_id: int
    username: str
    active: bool
    #: Tokens issued before this (epoch seconds) are refused; None: no revocation.
    tokens_valid_after: float | None
    created: bool


@dataclass(frozen=True, slots=True)
class ServerUser:
    """``PUT /api/server/users/<external_id>``: the user to make or update, by the operator's own id for them."""

    external_id: str
    username: str | None = None
    display_name: str | None = None
    #: A JSON object, serialised (at most `MAX_EXTRA` bytes).
    extra: str | None = None

    def __post_init__(self) -> None:
        _check_external_id(self.external_id)
        if self.extra is not None and len(self.extra.encode("utf-8")) > MAX_EXTRA:
            raise UserError(f"'extra' must be at most {MAX_EXTRA} bytes of JSON", code="too_large")


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """``POST /api/server/tokens``: a UMOC-signed token for the user with ``external_id``, valid ``ttl`` seconds."""

    external_id: str
    ttl: int

    def __post_init__(self) -> None:
        _check_external_id(self.external_id)
        if not MIN_TOKEN_TTL <= self.ttl <= MAX_TOKEN_TTL:
            raise UserError(f"'ttl' must be {MIN_TOKEN_TTL}-{MAX_TOKEN_TTL} seconds", code="invalid_argument")


@dataclass(frozen=True, slots=True)
class ExternalRef:
    """A user named by the operator's own id for them (``/api/server/users/<external_id>/revoke``)."""

    external_id: str

    def __post_init__(self) -> None:
        _check_external_id(self.external_id)


@dataclass(frozen=True, slots=True)
class NewServerKey:
    """``umoc-admin create-server-key NAME``: a label for the key, 1-64 of ``[A-Za-z0-9_.-]``."""

    name: str

    def __post_init__(self) -> None:
        if not SERVER_KEY_NAME.fullmatch(self.name):
            raise UserError(
                "a server key's name must be 1-64 of letters, digits, '_', '.' or '-'", code="invalid_argument"
            )


def _check_external_id(external_id: str) -> None:
    if not 0 < len(external_id) <= 255 or not external_id.isprintable():
        raise UserError("'external_id' must be 1-255 printable characters", code="invalid_argument")
