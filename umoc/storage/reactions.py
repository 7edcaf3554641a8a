"""Reactions: emoji that users put on messages.

One row per (message, user, emoji).  Adding what is there already and
removing what is not change nothing (both are safe to repeat); a user may
put at most ``max_per_user`` different emoji on one message.  The message
row is locked first (PostgreSQL), so two racing adds by one user cannot
pass that bound together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.records import messages as records
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Txn, in_clause
from umoc.storage.targets import Target, require_writable_txn, target_txn

__all__ = ["Reaction", "ReactionChange", "ReactionStore", "reactions_for_txn"]


@dataclass(frozen=True, slots=True)
class Reaction:
    """One emoji on one message: who put it there, in the order they did."""

    emoji: str
    user_ids: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True, slots=True)
class ReactionChange:
    target: Target
    #: False when the add or remove found things already so.
    changed: bool
    #: The message's reactions after the change.
    reactions: list[Reaction]


def reactions_for_txn(txn: Txn, seqs: Iterable[int]) -> dict[int, list[Reaction]]:
    """Each message's reactions by ``seq`` (emoji in the order first used): one query."""
    seqs = sorted(set(seqs))
    if not seqs:
        return {}
    by_message: dict[int, dict[str, list[int]]] = {}
    for r in txn.execute(
        "SELECT message_seq, emoji, user_id FROM message_reactions WHERE message_seq IN "
        + in_clause(seqs)
        + " ORDER BY message_seq, created_at, user_id",
        seqs,
    ).fetchall():
        by_message.setdefault(int(r["message_seq"]), {}).setdefault(r["emoji"], []).append(int(r["user_id"]))
    return {
        seq: [Reaction(emoji, tuple(users)) for emoji, users in emojis.items()] for seq, emojis in by_message.items()
    }


def _react_txn(
    txn: Txn, user_id: int, reaction: records.Reaction, add: bool, now: float, max_per_user: int
) -> ReactionChange:
    emoji = reaction.emoji
    target = target_txn(txn, user_id, reaction.message_id, lock=True)
    require_writable_txn(txn, user_id, target, "react", "react", now)
    key = (target.seq, user_id, emoji)
    if add:
        exists = txn.scalar("SELECT 1 FROM message_reactions WHERE message_seq = ? AND user_id = ? AND emoji = ?", key)
        changed = exists is None
        if changed:
            mine = int(
                txn.scalar(
                    "SELECT COUNT(*) FROM message_reactions WHERE message_seq = ? AND user_id = ?",
                    (target.seq, user_id),
                )
            )
            if mine >= max_per_user:
                raise RefusedError(
                    f"Too many reactions: at most {max_per_user} different ones per message", code="conflict"
                )
            txn.execute(
                "INSERT INTO message_reactions (message_seq, user_id, emoji, created_at) VALUES (?, ?, ?, ?)",
                (*key, now),
            )
    else:
        changed = (
            txn.execute(
                "DELETE FROM message_reactions WHERE message_seq = ? AND user_id = ? AND emoji = ?", key
            ).rowcount
            > 0
        )
    if changed:
        record_txn(
            txn,
            NewChange(
                "reaction",
                now,
                chat_id=target.chat_id,
                message_seq=target.seq,
                actor_id=user_id,
                data={"emoji": emoji, "action": "added" if add else "removed"},
            ),
        )
    return ReactionChange(target, changed, reactions_for_txn(txn, [target.seq]).get(target.seq, []))


class ReactionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self, user_id: int, reaction: records.Reaction, now: float, max_per_user: int
    ) -> defer.Deferred[ReactionChange]:
        """Put the emoji on a message of a chat the user may write to. Raises `RefusedError`."""
        return self._db.write("reactions.add", user_id, _react_txn, user_id, reaction, True, now, max_per_user)

    def remove(self, user_id: int, reaction: records.Reaction, now: float) -> defer.Deferred[ReactionChange]:
        """Take the user's emoji off a message. Raises `RefusedError`."""
        return self._db.write("reactions.remove", user_id, _react_txn, user_id, reaction, False, now, 0)
