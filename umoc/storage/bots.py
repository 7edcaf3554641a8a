"""Bot accounts and their long-lived API tokens (only digests are stored)."""

from __future__ import annotations

from twisted.internet import defer

from umoc.storage.database import Database, Txn

__all__ = ["BotStore"]


class BotStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def make_bot(self, user_id: int, token_hash: str, now: float) -> defer.Deferred[None]:
        """Flag the account as a bot and add a token (older tokens stay valid until revoked)."""

        def txn_fn(txn: Txn) -> None:
            txn.execute("UPDATE users SET is_bot = 1 WHERE id = ?", (user_id,))
            txn.execute(
                "INSERT INTO bot_tokens (token_hash, user_id, created_at) VALUES (?, ?, ?)", (token_hash, user_id, now)
            )

        return self._db.run("bots.make_bot", txn_fn)

    def is_bot(self, user_id: int) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            row = txn.execute("SELECT is_bot FROM users WHERE id = ?", (user_id,)).fetchone()
            return row is not None and bool(row["is_bot"])

        return self._db.read("bots.is_bot", txn_fn)

    def revoke_tokens(self, user_id: int) -> defer.Deferred[int]:
        def txn_fn(txn: Txn) -> int:
            txn.execute("DELETE FROM bot_tokens WHERE user_id = ?", (user_id,))
            return txn.rowcount

        return self._db.run("bots.revoke_tokens", txn_fn)

    def by_token(self, token_hash: str) -> defer.Deferred[tuple[int, str] | None]:
        """``(user id, username)`` of the active bot holding this token, else None."""

        def txn_fn(txn: Txn) -> tuple[int, str] | None:
            row = txn.execute(
                "SELECT u.id, u.username FROM bot_tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = ? AND u.is_bot = 1 AND u.deactivated_at IS NULL",
                (token_hash,),
            ).fetchone()
            return None if row is None else (int(row["id"]), row["username"])

        return self._db.read("bots.by_token", txn_fn)
