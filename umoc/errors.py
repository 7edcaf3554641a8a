"""The one client-facing refusal type, shared by every layer.

A rule that says no raises `UserError` (or its storage flavour
`RefusedError`) with a message fit for the client: the Socket.IO edge turns
it into the spec's ``error`` event, the HTTP edge into a JSON error body.
No layer translates another's errors.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RefusedError", "UserError", "check_text"]


class UserError(Exception):
    """Becomes the spec's ``error`` event ``{"message": ...}`` (plus ``extra`` fields).

    Anything else raised in a handler is a bug: it is logged with its
    traceback and the client gets a generic ``error``; the connection lives on.
    """

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


class RefusedError(UserError):
    """A rule checked inside a transaction said no; nothing was changed.

    Checking inside the transaction (not before it) is what keeps the check
    and the write atomic.  Being a `UserError`, it reaches the client as is.
    """


def check_text(field: str, value: str) -> str:
    """Refuse NUL (U+0000) in any text a client sends, on either edge, whatever the database.

    PostgreSQL cannot store it (SQLite can), so without this one rule the
    same input would be stored on one database and fail on the other.
    """
    if "\x00" in value:
        raise UserError(f"Invalid '{field}': the NUL character is not allowed")
    return value
