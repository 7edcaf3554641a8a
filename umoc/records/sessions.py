"""A login's new session, as the user store writes it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NewSession"]


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
