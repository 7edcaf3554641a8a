"""Full-text search over the text messages a user may read (``search_messages``).

What a user may search is what history shows them: the live messages of
the chats they are in now (``user_chats``: a direct chat they are part of,
a group they are a member of, with its whole history as
``get_chat_history`` shows it), never a deleted message, and of each
message only its current text.  File messages (whose content is JSON) are
not searchable.

The index (migration 010) holds each live text message's words and its
chat, so one index query intersects "all these words" with "in one of the
user's chats" and returns the newest matches first:

* SQLite: an FTS5 table (``messages_fts``) walked in ``rowid`` (= ``seq``)
  order, newest first, stopping after ``limit + 1`` hits; FTS5 skips
  through a common word's long posting list to the user's chats' entries.
* PostgreSQL: a GIN index on ``messages.search_vector``; GIN's fast scan
  reads the user's chats' (short) lists and probes the word's, so the work
  grows with the hits in the user's chats, never with the whole table.

Paging is by ``seq``: a page holds the hits below ``before``, newest first,
so each hit appears on exactly one page even while new messages arrive.
Search terms are passed as data: each is a quoted FTS5 phrase (its ``"``
doubled) or the text of ``plainto_tsquery``, so no input is query syntax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.storage.database import Database, Row, Txn
from umoc.storage.messages import (
    MESSAGE_COLUMNS,
    READ_COUNT,
    UNKNOWN_CHAT,
    Message,
    annotate_txn,
    message_from_row,
    read_count_params,
)

__all__ = ["Hit", "SearchPage", "SearchStore"]

#: Above every seq: the first page.
_NEWEST = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Hit:
    """One message found, as the searcher sees it."""

    message: Message
    is_read: bool
    #: What the searcher calls the chat: the peer's user id, or the group id.
    chat_id: int


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[Hit]
    #: Where the next page starts (below this seq); None when there is none.
    next_before: int | None


def _readable_chats_txn(txn: Txn, user_id: int, chat: tuple[int, bool] | None) -> dict[int, int]:
    """The chats ``user_id`` may read (or just ``chat``, if they may): internal id -> the id they call it."""
    sql = (
        "SELECT uc.chat_id, uc.peer_id, uc.is_group FROM user_chats uc JOIN chats c ON c.id = uc.chat_id"
        " WHERE uc.user_id = ? AND c.closed_at IS NULL"
    )
    params: list[object] = [user_id]
    if chat is not None:
        chat_id, is_group = chat
        sql += " AND uc.chat_id = ? AND uc.is_group = 1" if is_group else " AND uc.peer_id = ?"
        params.append(chat_id)
    rows = txn.execute(sql, params).fetchall()
    if chat is not None and not rows:
        raise RefusedError(UNKNOWN_CHAT)
    return {int(r["chat_id"]): int(r["chat_id"]) if r["is_group"] else int(r["peer_id"]) for r in rows}


def _fts5_phrase(text: str) -> str:
    """``text`` as one FTS5 string: words to match, never operators, columns or prefixes."""
    return '"' + text.replace('"', '""') + '"'


def _sqlite_hits_txn(
    txn: Txn, user_id: int, terms: Sequence[str], chats: Sequence[int], before: int, count: int
) -> list[Row]:
    # Every term in the text, and the message in one of the chats (chat_id is one token per row).
    match = (
        "content : (" + " ".join(_fts5_phrase(t) for t in terms) + ")"
        " AND chat_id : (" + " OR ".join(_fts5_phrase(str(int(c))) for c in chats) + ")"
    )
    # CROSS JOIN keeps the FTS5 table the outer loop, read newest first and stopped at the LIMIT.
    return txn.execute(
        "SELECT " + MESSAGE_COLUMNS + ", " + READ_COUNT + " FROM messages_fts"
        " CROSS JOIN messages m ON m.seq = messages_fts.rowid JOIN users su ON su.id = m.sender_id"
        " WHERE messages_fts MATCH ? AND messages_fts.rowid < ? AND m.deleted_at IS NULL"
        " ORDER BY messages_fts.rowid DESC LIMIT ?",
        (*read_count_params(user_id), match, before, count),
    ).fetchall()


def _postgres_hits_txn(
    txn: Txn, user_id: int, terms: Sequence[str], chats: Sequence[int], before: int, count: int
) -> list[Row]:
    # The words go through the same normalisation as the indexed text; the chats are
    # '#<id>' lexemes built here from integers read from the database.
    in_chats = " | ".join(f"'#{int(c)}'" for c in chats)
    return txn.execute(
        "SELECT " + MESSAGE_COLUMNS + ", " + READ_COUNT + " FROM messages m JOIN users su ON su.id = m.sender_id"
        " WHERE m.search_vector @@ (plainto_tsquery('simple'::regconfig,"
        " regexp_replace(?, '[^[:alnum:]]+', ' ', 'g')) && ?::tsquery)"
        " AND m.seq < ? AND m.deleted_at IS NULL ORDER BY m.seq DESC LIMIT ?",
        (*read_count_params(user_id), " ".join(terms), in_chats, before, count),
    ).fetchall()


_HITS = {"sqlite": _sqlite_hits_txn, "postgres": _postgres_hits_txn}


def search_txn(
    txn: Txn,
    user_id: int,
    terms: Sequence[str],
    chat: tuple[int, bool] | None,
    before: int | None,
    limit: int,
) -> SearchPage:
    """Up to ``limit`` hits below seq ``before``, newest first: three or four queries whatever the data."""
    if not terms:
        raise ValueError("search needs at least one term")
    chats = _readable_chats_txn(txn, user_id, chat)
    if not chats:
        return SearchPage([], None)
    rows = _HITS[txn.dialect.name](
        txn, user_id, terms, sorted(chats), _NEWEST if before is None else before, limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    messages = annotate_txn(txn, [message_from_row(r) for r in rows])
    hits = [
        Hit(message, int(row["read_count"]) > 0, chats[message.chat_id])
        for message, row in zip(messages, rows, strict=True)
    ]
    return SearchPage(hits, rows[-1]["seq"] if more else None)


class SearchStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def messages(
        self,
        user_id: int,
        terms: Sequence[str],
        chat: tuple[int, bool] | None = None,
        before: int | None = None,
        limit: int = 20,
    ) -> defer.Deferred[SearchPage]:
        """Live text messages holding every one of ``terms`` (whole words, any case), newest first.

        In the chats ``user_id`` may read, or only ``chat`` (``(chat_id, is_group)`` as
        clients name it: `RefusedError` ``Unknown chat`` if there is no such chat the user
        may read).  ``before`` continues a search below that seq (`SearchPage.next_before`).
        """
        return self._db.run("messages.search", search_txn, user_id, list(terms), chat, before, limit)
