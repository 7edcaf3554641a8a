"""What a client sends to read the change feed (``sync {cursor}``)."""

from __future__ import annotations

__all__ = ["MAX_CURSOR_LENGTH"]

#: The longest cursor a client may send: a PostgreSQL cursor holds two snapshots, which grow with the
#: transactions in progress; anything longer was not made by this server.
MAX_CURSOR_LENGTH = 16384
