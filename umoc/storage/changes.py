"""Writing the change feed: one ``changes`` row per change, in the transaction that makes it.

Every storage transaction that changes something a client is told about
calls `record_txn` (or folds its row into a statement it runs anyway, with
`with_change`), so a change is in the feed exactly when it is committed.
Rows stay O(1) per change whatever a group's size: a group message is one
row in the group's stream, read by each member through their membership
(`umoc.storage.feed` reads them; migration 011 describes the columns).

A row keeps ids, not content: a message's text, a username, a profile are
read from their own rows when the feed is read, so what was deleted or
erased since never comes back through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain
from typing import Any, Sequence

import orjson

from umoc.storage.database import Txn, values_rows

__all__ = ["KINDS", "NewChange", "record_many_txn", "record_returning_id_txn", "record_txn", "with_change"]

#: Every ``kind`` a change may have (the wire names of ``sync {cursor}`` in docs/api.md).
KINDS = (
    "message",
    "edit",
    "delete",
    "reaction",
    "read",
    "delivered",
    "contact",
    "group",
    "member_added",
    "member_removed",
    # A member's role set (``data``: role, by), in the group's stream (issue 29).
    "member_role",
    # A member banned (``data``: until, reason, by) or muted (``data``: until, by), in the group's stream.
    "member_banned",
    "member_muted",
    # A request to join (``data``: chat_id), in each moderator's own stream; its rejection in the requester's.
    "join_requested",
    "join_rejected",
    "profile",
    "chat_read",
    "chat_muted",
    # A link preview attached to a text message (``message_preview``).
    "preview",
    "pin",
    # A thread followed or unfollowed (``data``: thread_id, following): in no stream (0.2.0 reads every row of
    # the user's own stream and refuses a kind it does not know); the follower (``actor_id``) reads it.
    "thread_follow",
    "poll",
    # An account made (``user.registered``): in no stream (no user reads it in ``sync``), for the outbox.
    "registered",
    # A request to join a group (``group.join_requested``; ``data``: chat_id): in no stream, for the outbox
    # (each moderator's own stream has its ``join_requested`` row).
    "join_request",
    # A report filed or resolved (``report.created``, ``report.resolved``): in no stream, for the outbox.
    "report",
)

_COLUMNS = "chat_id, user_id, profile_id, kind, message_seq, actor_id, data, created_at"
_INSERT = f"INSERT INTO changes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True, slots=True)
class NewChange:
    """One row to write: its kind, its stream (``chat_id``, ``user_id`` or ``profile_id``), what it names."""

    kind: str
    created_at: float
    chat_id: int | None = None
    user_id: int | None = None
    profile_id: int | None = None
    message_seq: int | None = None
    actor_id: int | None = None
    #: Small JSON-able facts the rows named do not hold (an emoji, the event of a contact change).
    data: dict[str, Any] | None = None

    def params(self) -> tuple[Any, ...]:
        data = None if self.data is None else _data_text(self.data)
        return (
            self.chat_id,
            self.user_id,
            self.profile_id,
            self.kind,
            self.message_seq,
            self.actor_id,
            data,
            self.created_at,
        )


def _data_text(data: dict[str, Any]) -> str:
    """``changes.data``: compact JSON, keys sorted; orjson's (a C call) where it can write it.

    ``json.dumps`` with these options builds an encoder per call: every
    thread reply's change paid for one.  orjson writes the same text for
    ASCII strings and numbers (non-ASCII text unescaped: the same JSON value);
    what it refuses (an integer past 64 bits) goes the standard way.
    """
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":"), sort_keys=True)


def record_txn(txn: Txn, *changes: NewChange) -> None:
    """Write the changes, in order (one statement per row: a multi-row INSERT has no defined id order)."""
    for change in changes:
        txn.execute(_INSERT, change.params())


def record_many_txn(txn: Txn, changes: Sequence[NewChange]) -> None:
    """Write the changes, in order: on SQLite in one statement, whose VALUES rows it inserts in their order
    (one writer, AUTOINCREMENT ids: the ids follow the list); elsewhere as `record_txn`."""
    if txn.dialect.commit_ordered_ids and changes:
        txn.execute(
            f"INSERT INTO changes ({_COLUMNS}) VALUES " + values_rows(len(changes), 8),
            list(chain.from_iterable(map(NewChange.params, changes))),
        )
    else:
        record_txn(txn, *changes)


def record_returning_id_txn(txn: Txn, change: NewChange) -> int:
    """Write one change; its id (a group's members are its readers from that change on)."""
    return int(txn.scalar(_INSERT + " RETURNING id", change.params()))


def with_change(txn: Txn, sql: str, params: Sequence[Any], change: NewChange) -> Txn:
    """Run ``sql`` and write ``change`` with it: one round trip on PostgreSQL.

    PostgreSQL runs a data-modifying ``WITH`` exactly once whether or not the
    statement reads it, so the change rides on a statement the transaction
    runs anyway: the send path pays no extra round trip.  SQLite runs in
    this process (a statement is no round trip) and has no such ``WITH``: two
    statements.
    """
    if txn.dialect.writes_in_with:
        return txn.execute(f"WITH feed_change AS ({_INSERT}) " + sql, (*change.params(), *params))
    txn.execute(sql, params)
    return txn.execute(_INSERT, change.params())


def statements_with_change(
    txn: Txn, sql: str, params: Sequence[Any], change: NewChange
) -> list[tuple[str, Sequence[Any]]]:
    """`with_change` as statements for `Txn.execute_each`, to send with others in one round trip."""
    if txn.dialect.writes_in_with:
        return [(f"WITH feed_change AS ({_INSERT}) " + sql, (*change.params(), *params))]
    return [(sql, params), (_INSERT, change.params())]
