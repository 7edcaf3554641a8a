"""Account changes: a new account, its deletion, and what an administrator does to one.

An administrator names an account by id or by name (`AccountRef`); a user
acts on their own account only, so their records name none.
"""

from __future__ import annotations

from dataclasses import dataclass

from umoc.errors import UserError, check_text
from umoc.records.contacts import user_id

__all__ = [
    "MAX_INVITE_USES",
    "REGISTRATION_MODES",
    "AccountDeletion",
    "AccountRef",
    "AdminFlag",
    "LegalHold",
    "NewAccount",
    "NewInvite",
    "OwnDeletion",
    "PasswordReset",
    "RegistrationMode",
    "UserInfo",
]

MAX_USERNAME = 64
MAX_PASSWORD = 1024
MAX_INVITE = 256
#: Most accounts one invite code may create.
MAX_INVITE_USES = 1000
#: Who may register: anybody, nobody (administrators still create accounts), or holders of an invite.
REGISTRATION_MODES = ("open", "closed", "invite")


def _string(field: str, value: object, maximum: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= maximum:
        raise UserError(f"'{field}' must be a string of 1-{maximum} characters", code="invalid_argument")
    return check_text(field, value)


def _bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"'{field}' must be true or false", code="invalid_argument")
    return value


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account to create: by its owner (``invite`` when the mode asks for one) or by an administrator.

    The name's and the password's rules (characters, length) are the
    `umoc.domain.sessions.SessionManager`'s, checked when it is made.
    """

    username: str
    password: str
    is_admin: bool = False
    invite: str | None = None

    def __post_init__(self) -> None:
        _string("username", self.username, MAX_USERNAME)
        _string("password", self.password, MAX_PASSWORD)
        _bool("is_admin", self.is_admin)
        if self.invite is not None:
            _string("invite", self.invite, MAX_INVITE)


@dataclass(frozen=True, slots=True)
class AccountRef:
    """The account an administrator acts on: an id, or a name."""

    user: int | str

    def __post_init__(self) -> None:
        if isinstance(self.user, str):
            _string("username", self.user, MAX_USERNAME)
        else:
            user_id("user_id", self.user)


@dataclass(frozen=True, slots=True)
class AdminFlag:
    account: AccountRef
    is_admin: bool

    def __post_init__(self) -> None:
        _bool("is_admin", self.is_admin)


@dataclass(frozen=True, slots=True)
class LegalHold:
    """Set (``on``) or lift a legal hold: the purge keeps every message and file of the account."""

    account: AccountRef
    on: bool
    #: Why, for the audit log and ``legal-hold --list`` (a case number, say): at most 500 characters.
    reason: str | None = None

    def __post_init__(self) -> None:
        _bool("on", self.on)
        if self.reason is not None:
            _string("reason", self.reason, 500)


@dataclass(frozen=True, slots=True)
class PasswordReset:
    account: AccountRef
    password: str

    def __post_init__(self) -> None:
        _string("password", self.password, MAX_PASSWORD)


@dataclass(frozen=True, slots=True)
class OwnDeletion:
    """A user deletes their own account, proving it with their password; ``erase`` erases their messages."""

    password: str
    erase: bool = False

    def __post_init__(self) -> None:
        _string("password", self.password, MAX_PASSWORD)
        _bool("erase", self.erase)


@dataclass(frozen=True, slots=True)
class AccountDeletion:
    """An administrator deletes an account (no password); ``erase`` erases its messages."""

    account: AccountRef
    erase: bool = False

    def __post_init__(self) -> None:
        _bool("erase", self.erase)


@dataclass(frozen=True, slots=True)
class RegistrationMode:
    """The mode for every node; None: back to each node's ``registration.mode``."""

    mode: str | None

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in REGISTRATION_MODES:
            raise UserError("mode must be one of " + ", ".join(REGISTRATION_MODES), code="invalid_argument")


@dataclass(frozen=True, slots=True)
class NewInvite:
    """An invite code good for ``uses`` registrations."""

    uses: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.uses, bool) or not isinstance(self.uses, int) or not 1 <= self.uses <= MAX_INVITE_USES:
            raise UserError(f"uses must be 1-{MAX_INVITE_USES}", code="invalid_argument")


@dataclass(frozen=True, slots=True)
class UserInfo:
    """An account as an administrator sees it."""

    id: int
    username: str
    is_admin: bool
    #: When an administrator deactivated it (epoch seconds), or None while active.
    deactivated_at: float | None
    created_at: float
    last_seen: float | None
    #: Live login sessions.
    sessions: int
    #: When the account was deleted (its name is a tombstone then), or None.
    deleted_at: float | None = None

    @property
    def active(self) -> bool:
        return self.deactivated_at is None
