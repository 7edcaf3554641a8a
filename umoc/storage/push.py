"""Push registrations, chat mutes and the per-user push switch; who a push goes to."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from umoc.records.messages import Mute
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Row, Txn, in_clause
from umoc.storage.threadrows import UNREAD_COUNT

__all__ = ["PushStore", "PushTarget", "Registration"]


@dataclass(frozen=True, slots=True)
class Registration:
    """One device or browser that receives pushes.

    ``target`` is a Web Push subscription's endpoint, or a gateway pushkey.
    """

    id: str
    user_id: int
    kind: str
    target: str
    p256dh: str | None
    auth: str | None
    app_id: str | None
    gateway: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class PushTarget:
    """A user to push to: their registrations and the unread count for the badge."""

    user_id: int
    username: str
    registrations: list[Registration]
    unread: int


_COLUMNS = "id, user_id, kind, target, p256dh, auth, app_id, gateway, created_at"


def _registration(row: Row) -> Registration:
    return Registration(
        row["id"],
        int(row["user_id"]),
        row["kind"],
        row["target"],
        row["p256dh"],
        row["auth"],
        row["app_id"],
        row["gateway"],
        float(row["created_at"]),
    )


def _register_txn(txn: Txn, registration: Registration, session_id: str, max_per_user: int) -> Registration:
    """Store a registration; the same device registered again replaces its old row (and its session)."""
    txn.execute(
        "DELETE FROM push_registrations WHERE user_id = ? AND kind = ? AND target = ?",
        (registration.user_id, registration.kind, registration.target),
    )
    txn.execute(
        f"INSERT INTO push_registrations ({_COLUMNS}, session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            registration.id,
            registration.user_id,
            registration.kind,
            registration.target,
            registration.p256dh,
            registration.auth,
            registration.app_id,
            registration.gateway,
            registration.created_at,
            session_id,
        ),
    )
    rows = txn.execute(
        "SELECT id FROM push_registrations WHERE user_id = ? ORDER BY created_at DESC, id",
        (registration.user_id,),
    ).fetchall()
    excess = [r["id"] for r in rows[max_per_user:]]
    if excess:
        txn.execute("DELETE FROM push_registrations WHERE id IN " + in_clause(excess), excess)
    return registration


def _targets_txn(txn: Txn, user_ids: list[int]) -> dict[int, PushTarget]:
    """Users among ``user_ids`` with pushes on and at least one registration."""
    if not user_ids:
        return {}
    users = txn.execute(
        "SELECT id, username FROM users WHERE push_enabled = 1 AND deactivated_at IS NULL AND id IN "
        + in_clause(user_ids),
        user_ids,
    ).fetchall()
    names = {int(r["id"]): r["username"] for r in users}
    if not names:
        return {}
    ids = list(names)
    by_user: dict[int, list[Registration]] = {}
    for row in txn.execute(
        f"SELECT {_COLUMNS} FROM push_registrations WHERE user_id IN " + in_clause(ids) + " ORDER BY created_at",
        ids,
    ).fetchall():
        by_user.setdefault(int(row["user_id"]), []).append(_registration(row))
    if not by_user:
        return {}
    ids = list(by_user)
    unread = {
        int(r["user_id"]): int(r["unread"] or 0)
        for r in txn.execute(
            # The unread count as the chat list computes it (followed threads too), summed for the badge.
            "SELECT uc.user_id, SUM(" + UNREAD_COUNT + ") AS unread"
            " FROM user_chats uc JOIN chats c ON c.id = uc.chat_id WHERE uc.user_id IN "
            + in_clause(ids)
            + " GROUP BY uc.user_id",
            ids,
        ).fetchall()
    }
    return {u: PushTarget(u, names[u], regs, unread.get(u, 0)) for u, regs in by_user.items()}


def _message_targets_txn(
    txn: Txn, message_seq: int, sender_id: int, group_id: int | None, user_ids: list[int], now: float
) -> dict[int, PushTarget]:
    """Who a stored message still needs a push for.

    Not when the message was deleted, nor for a user who read it already, has
    pushes off, or muted the chat (a direct chat is the sender's id to its
    recipient, a group its id).
    """
    if not user_ids:
        return {}
    if txn.scalar("SELECT deleted_at FROM messages WHERE seq = ?", (message_seq,)) is not None:
        return {}
    readers = {
        int(r["user_id"])
        for r in txn.execute("SELECT user_id FROM message_reads WHERE message_seq = ?", (message_seq,)).fetchall()
    }
    chat_id, is_group = (group_id, 1) if group_id is not None else (sender_id, 0)
    muted = {
        int(r["user_id"])
        for r in txn.execute(
            "SELECT user_id FROM chat_mutes WHERE chat_id = ? AND is_group = ?"
            " AND (muted_until IS NULL OR muted_until > ?) AND user_id IN " + in_clause(user_ids),
            [chat_id, is_group, now, *user_ids],
        ).fetchall()
    }
    wanted = [u for u in user_ids if u not in readers and u not in muted]
    return _targets_txn(txn, wanted)


class PushStore:
    """Registrations, mutes and the switch; `message_targets` answers who to push a message to."""

    #: Registrations kept per user; a newer one beyond this replaces the oldest.
    MAX_PER_USER = 20

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(self, registration: Registration, session_id: str) -> defer.Deferred[Registration]:
        return self._db.run("push.register", _register_txn, registration, session_id, self.MAX_PER_USER)

    def unregister(self, user_id: int, registration_id: str) -> defer.Deferred[bool]:
        """Remove one of the user's registrations; False when they have none with that id."""

        def txn_fn(txn: Txn) -> bool:
            txn.execute("DELETE FROM push_registrations WHERE id = ? AND user_id = ?", (registration_id, user_id))
            return txn.rowcount > 0

        return self._db.run("push.unregister", txn_fn)

    def remove(self, registration_id: str) -> defer.Deferred[bool]:
        """Forget a registration its push service says is gone (404/410, or a gateway's ``rejected``)."""

        def txn_fn(txn: Txn) -> bool:
            txn.execute("DELETE FROM push_registrations WHERE id = ?", (registration_id,))
            return txn.rowcount > 0

        return self._db.run("push.remove", txn_fn)

    def registrations(self, user_id: int) -> defer.Deferred[list[Registration]]:
        def txn_fn(txn: Txn) -> list[Registration]:
            rows = txn.execute(
                f"SELECT {_COLUMNS} FROM push_registrations WHERE user_id = ? ORDER BY created_at, id", (user_id,)
            ).fetchall()
            return [_registration(r) for r in rows]

        return self._db.read("push.registrations", txn_fn)

    def enabled(self, user_id: int) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            return bool(txn.scalar("SELECT push_enabled FROM users WHERE id = ?", (user_id,)))

        return self._db.read("push.enabled", txn_fn)

    def set_enabled(self, user_id: int, enabled: bool) -> defer.Deferred[None]:
        def txn_fn(txn: Txn) -> None:
            txn.execute("UPDATE users SET push_enabled = ? WHERE id = ?", (int(enabled), user_id))

        return self._db.run("push.set_enabled", txn_fn)

    def mute(self, user_id: int, change: Mute, now: float) -> defer.Deferred[None]:
        """Pushes for the chat off until ``change.until`` (None: until unmuted), or back on (``change.muted`` false).

        Recorded as a ``chat_muted`` change in the user's own stream, for their other devices' ``sync``.
        """
        key = (user_id, change.chat_id, int(change.is_group))

        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM chat_mutes WHERE user_id = ? AND chat_id = ? AND is_group = ?", key)
            if change.muted:
                txn.execute(
                    "INSERT INTO chat_mutes (user_id, chat_id, is_group, muted_until) VALUES (?, ?, ?, ?)",
                    (*key, change.until),
                )
            data = {"chat_id": change.chat_id, "is_group": change.is_group, "muted": change.muted}
            record_txn(txn, NewChange("chat_muted", now, user_id=user_id, data={**data, "until": change.until}))

        return self._db.run("push.unmute" if not change.muted else "push.mute", txn_fn)

    def message_targets(
        self, message_seq: int, sender_id: int, group_id: int | None, user_ids: list[int], now: float
    ) -> defer.Deferred[dict[int, PushTarget]]:
        return self._db.read(
            "push.message_targets", _message_targets_txn, message_seq, sender_id, group_id, user_ids, now
        )

    def targets(self, user_ids: list[int]) -> defer.Deferred[dict[int, PushTarget]]:
        """For pushes that are not messages (a contact request): pushes on, with registrations."""
        return self._db.read("push.targets", _targets_txn, user_ids)
