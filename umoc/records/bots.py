"""Bot accounts: a new bot (an account acting only through ``/api/bot/`` with a token)."""

from __future__ import annotations

from dataclasses import dataclass

from umoc.errors import UserError, check_text

__all__ = ["NewBot"]


@dataclass(frozen=True, slots=True)
class NewBot:
    """A bot to create, by its name (the name rules are the `SessionManager`'s, as for any account)."""

    username: str

    def __post_init__(self) -> None:
        if not isinstance(self.username, str) or not 1 <= len(self.username) <= 64:
            raise UserError("'username' must be a string of 1-64 characters", code="invalid_argument")
        check_text("username", self.username)
