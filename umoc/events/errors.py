"""The one error type handlers raise on purpose."""

from __future__ import annotations

from typing import Any

__all__ = ["UserError"]


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
