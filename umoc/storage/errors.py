"""The one exception stores raise when a rule refuses a change."""

from __future__ import annotations

__all__ = ["RefusedError"]


class RefusedError(Exception):
    """A rule checked inside a transaction said no; nothing was changed.

    The message is fit for the client: the events layer turns it into the
    spec's ``error`` event.  Checking inside the transaction (not before it)
    is what keeps the check and the write atomic.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
