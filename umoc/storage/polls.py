"""Polls: a message of type ``poll`` plus one ``polls`` row; one vote set per user.

A vote writes O(1) rows whatever the chat's size or the poll's voters: the
voter's ``poll_votes`` row (replaced by a new vote, deleted by an empty one),
the poll's tallies (``counts``, ``voters``) and one feed row (``poll``).  The
message row is locked first (PostgreSQL), so votes on one poll are
serialised and the tallies stay exact.  A poll takes no vote once closed:
by its sender or a group admin (``closed_at``), or when ``closes_at`` passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.records.messages import NewPoll, PollClose, PollVote
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Row, Txn, in_clause
from umoc.storage.targets import Target, require_writable_txn, target_txn

__all__ = ["Poll", "PollChange", "PollStore", "insert_poll_txn", "polls_for_txn"]

POLL_CLOSED = "This poll is closed"
NOT_A_POLL = "Invalid 'message_id': not a poll"


@dataclass(frozen=True, slots=True)
class Poll:
    options: tuple[str, ...]
    counts: tuple[int, ...]
    multiple: bool
    closes_at: float | None
    closed_at: float | None
    voters: int
    #: The reading user's own choice (empty: none, or read for nobody in particular).
    my_votes: tuple[int, ...] = ()

    def closed(self, now: float | None) -> bool:
        """Closed by hand, or (with ``now``) past ``closes_at``."""
        return self.closed_at is not None or (self.closes_at is not None and now is not None and now >= self.closes_at)


@dataclass(frozen=True, slots=True)
class PollChange:
    target: Target
    poll: Poll
    #: False for a close of a poll closed already.
    changed: bool


def insert_poll_txn(txn: Txn, seq: int, poll: NewPoll) -> Poll:
    """The poll of a message just stored (``messages.post``)."""
    counts = (0,) * len(poll.options)
    txn.execute(
        "INSERT INTO polls (message_seq, options, multiple, closes_at, counts) VALUES (?, ?, ?, ?, ?)",
        (
            seq,
            json.dumps(list(poll.options), ensure_ascii=False),
            int(poll.multiple),
            poll.closes_at,
            json.dumps(list(counts)),
        ),
    )
    return Poll(poll.options, counts, poll.multiple, poll.closes_at, None, 0)


def _poll(r: Row) -> Poll:
    return Poll(
        tuple(json.loads(r["options"])),
        tuple(json.loads(r["counts"])),
        bool(r["multiple"]),
        None if r["closes_at"] is None else float(r["closes_at"]),
        None if r["closed_at"] is None else float(r["closed_at"]),
        int(r["voters"]),
    )


def polls_for_txn(txn: Txn, seqs: Iterable[int], viewer_id: int | None = None) -> dict[int, Poll]:
    """Each poll by message ``seq``, with ``viewer_id``'s own votes: two queries (one without a viewer)."""
    seqs = sorted(set(seqs))
    if not seqs:
        return {}
    rows = txn.execute(
        "SELECT message_seq, options, counts, multiple, closes_at, closed_at, voters FROM polls"
        " WHERE message_seq IN " + in_clause(seqs),
        seqs,
    ).fetchall()
    polls = {int(r["message_seq"]): _poll(r) for r in rows}
    if viewer_id is not None and polls:
        found = list(polls)
        for r in txn.execute(
            "SELECT message_seq, option_ids FROM poll_votes WHERE user_id = ? AND message_seq IN " + in_clause(found),
            (viewer_id, *found),
        ).fetchall():
            seq = int(r["message_seq"])
            old = polls[seq]
            polls[seq] = Poll(
                old.options,
                old.counts,
                old.multiple,
                old.closes_at,
                old.closed_at,
                old.voters,
                tuple(json.loads(r["option_ids"])),
            )
    return polls


def _poll_target_txn(txn: Txn, user_id: int, message_id: str, now: float) -> tuple[Target, Poll]:
    target = target_txn(txn, user_id, message_id, lock=True)
    require_writable_txn(txn, user_id, target, "vote", "react", now)
    polls = polls_for_txn(txn, [target.seq], user_id)
    if target.type != "poll" or target.seq not in polls:
        raise RefusedError(NOT_A_POLL, code="invalid_argument")
    return target, polls[target.seq]


def _vote_txn(txn: Txn, user_id: int, vote: PollVote, now: float) -> PollChange:
    target, poll = _poll_target_txn(txn, user_id, vote.message_id, now)
    if poll.closed(now):
        raise RefusedError(POLL_CLOSED, code="conflict")
    chosen = vote.option_ids
    if any(i >= len(poll.options) for i in chosen):
        raise RefusedError(
            f"Invalid 'option_ids': this poll's options are 0 to {len(poll.options) - 1}", code="invalid_argument"
        )
    if len(chosen) > 1 and not poll.multiple:
        raise RefusedError("Invalid 'option_ids': this poll takes one option", code="invalid_argument")
    counts = list(poll.counts)
    for i in poll.my_votes:
        counts[i] -= 1
    for i in chosen:
        counts[i] += 1
    voters = poll.voters - (1 if poll.my_votes else 0) + (1 if chosen else 0)
    if chosen:
        txn.execute(
            "INSERT INTO poll_votes (message_seq, user_id, option_ids, voted_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (message_seq, user_id) DO UPDATE SET option_ids = excluded.option_ids,"
            " voted_at = excluded.voted_at",
            (target.seq, user_id, json.dumps(list(chosen)), now),
        )
    else:
        txn.execute("DELETE FROM poll_votes WHERE message_seq = ? AND user_id = ?", (target.seq, user_id))
    txn.execute(
        "UPDATE polls SET counts = ?, voters = ? WHERE message_seq = ?", (json.dumps(counts), voters, target.seq)
    )
    record_txn(
        txn,
        NewChange(
            "poll", now, chat_id=target.chat_id, message_seq=target.seq, actor_id=user_id, data={"event": "vote"}
        ),
    )
    after = Poll(poll.options, tuple(counts), poll.multiple, poll.closes_at, poll.closed_at, voters, chosen)
    return PollChange(target, after, True)


def _close_txn(txn: Txn, user_id: int, close: PollClose, now: float) -> PollChange:
    target, poll = _poll_target_txn(txn, user_id, close.message_id, now)
    if target.sender_id != user_id:
        admin = txn.scalar(
            "SELECT is_admin FROM user_chats WHERE chat_id = ? AND user_id = ?", (target.chat_id, user_id)
        )
        if not target.is_group or not admin:
            raise RefusedError("Only the poll's sender or a group admin may close it", code="forbidden")
    if poll.closed_at is not None:
        return PollChange(target, poll, False)
    txn.execute("UPDATE polls SET closed_at = ? WHERE message_seq = ?", (now, target.seq))
    record_txn(
        txn,
        NewChange(
            "poll", now, chat_id=target.chat_id, message_seq=target.seq, actor_id=user_id, data={"event": "close"}
        ),
    )
    after = Poll(poll.options, poll.counts, poll.multiple, poll.closes_at, now, poll.voters, poll.my_votes)
    return PollChange(target, after, True)


class PollStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def vote(self, user_id: int, vote: PollVote, now: float) -> defer.Deferred[PollChange]:
        """Replace the user's vote set on a poll of a chat they may write to. Raises `RefusedError`."""
        return self._db.write("polls.vote", user_id, _vote_txn, user_id, vote, now)

    def close(self, user_id: int, close: PollClose, now: float) -> defer.Deferred[PollChange]:
        """Close a poll (its sender, or a group admin). Raises `RefusedError`."""
        return self._db.write("polls.close", user_id, _close_txn, user_id, close, now)
