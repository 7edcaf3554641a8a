"""Users' TOTP secrets: set up, turned on and off, and each code's time step used once."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from umoc.storage.database import Database, Txn

__all__ = ["TotpState", "TotpStore"]


@dataclass(frozen=True, slots=True)
class TotpState:
    """A user's TOTP: the secret in force (None: off) and one set up but not confirmed yet."""

    secret: str | None
    pending: str | None


class TotpStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def state(self, user_id: int) -> defer.Deferred[TotpState]:
        def txn_fn(txn: Txn) -> TotpState:
            row = txn.execute("SELECT totp_secret, totp_pending FROM users WHERE id = ?", (user_id,)).fetchone()
            return TotpState(None, None) if row is None else TotpState(row["totp_secret"], row["totp_pending"])

        return self._db.run("totp.state", txn_fn)

    def set_pending(self, user_id: int, secret: str) -> defer.Deferred[None]:
        def txn_fn(txn: Txn) -> None:
            txn.execute("UPDATE users SET totp_pending = ? WHERE id = ?", (secret, user_id))

        return self._db.run("totp.set_pending", txn_fn)

    def enable(self, user_id: int, pending: str, step: int) -> defer.Deferred[bool]:
        """Put the pending secret in force if it is still ``pending``; the confirming code's step is spent."""

        def txn_fn(txn: Txn) -> bool:
            txn.execute(
                "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ?"
                " WHERE id = ? AND totp_pending = ?",
                (step, user_id, pending),
            )
            return txn.rowcount == 1

        return self._db.run("totp.enable", txn_fn)

    def disable(self, user_id: int) -> defer.Deferred[None]:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL WHERE id = ?",
                (user_id,),
            )

        return self._db.run("totp.disable", txn_fn)

    def use_step(self, user_id: int, step: int) -> defer.Deferred[bool]:
        """Spend a code's time step: False when it (or a later one) was used already (a replayed code).

        One conditional update, so two logins racing with the same code
        (even on two nodes) cannot both succeed.
        """

        def txn_fn(txn: Txn) -> bool:
            txn.execute(
                "UPDATE users SET totp_last_step = ? WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)",
                (step, user_id, step),
            )
            return txn.rowcount == 1

        return self._db.run("totp.use_step", txn_fn)
