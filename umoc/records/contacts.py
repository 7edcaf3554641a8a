"""Contact changes: a request by name, and every other change naming the other user by id."""

from __future__ import annotations

from dataclasses import dataclass

from umoc.errors import UserError, check_text

__all__ = ["MAX_ID", "ContactChange", "ContactRequest", "user_id"]

#: The largest id a user (or any row) may have: a signed 64-bit integer.
MAX_ID = 2**63 - 1
#: The longest username a request may name.
MAX_USERNAME = 64


def user_id(field: str, value: object) -> int:
    """``value`` as a user id (a positive integer, never a bool); `UserError` naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise UserError(f"Invalid '{field}': expected an integer from 1 to {MAX_ID}", code="invalid_argument")
    return value


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """Ask the user called ``username`` (case-insensitive) to become a contact."""

    username: str

    def __post_init__(self) -> None:
        if not isinstance(self.username, str) or not 1 <= len(self.username) <= MAX_USERNAME:
            raise UserError(
                f"Invalid 'contact_username': expected 1 to {MAX_USERNAME} characters", code="invalid_argument"
            )
        check_text("contact_username", self.username)


@dataclass(frozen=True, slots=True)
class ContactChange:
    """Accept, reject, block, unblock or remove the contact ``contact_id``."""

    contact_id: int

    def __post_init__(self) -> None:
        user_id("contact_id", self.contact_id)
