"""Users from the operator's identity provider: who a verified token names."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExternalUser", "IdentityRecord"]


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
