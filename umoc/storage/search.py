"""Full-text search over the text messages a user may read (``search_messages``).

What a user may search: the live messages of the chats they are in now
(``user_chats``: a direct chat they are part of, a group they are a member
of, from the message after they joined: ``joined_seq``), never a deleted
message, and of each message only its current text.  (History still shows
a new member the group's earlier messages, as it always has; search keeps
to the issue's stricter rule, so the two differ only there.)  File messages (whose content is JSON) are
not searchable.

The indexes (migration 010) hold each live text message's words:

* SQLite: an FTS5 table (``messages_fts``) that also holds each message's
  chat as a token, so one FTS5 query intersects "all these words" with "in
  one of the user's chats" and walks the matches newest first (``rowid`` =
  ``seq``), stopping after ``limit + 1``; FTS5 skips through a common
  word's long posting list to the user's chats' entries.  The index trails
  the messages (migration 027): sends index what they stored a batch at a
  time, every `INDEX_EVERY` messages or so, off the per-message path.  A
  search that finds messages waiting (above ``messages_fts_upto``) has them
  indexed first, in a write of its own (`index_pending_txn`), and then
  reads: every message stored before the search was asked is found, as if
  the index were written with each message.
* PostgreSQL: a GIN index on ``messages.search_vector`` (words and the
  chat as a ``'#<id>'`` lexeme), which cannot give its matches newest
  first; `_postgres_hits_txn` picks one of two plans by how common the
  words are, so neither reads a common word's matches across the table.

Paging is by ``seq``: a page holds the hits below ``before``, newest first,
so each hit appears on exactly one page even while new messages arrive.
Search terms are passed as data: each is a quoted FTS5 phrase (its ``"``
doubled) or the text of ``plainto_tsquery``, so no input is query syntax.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

from twisted.internet import defer

from umoc.errors import RefusedError
from umoc.storage.database import Database, Row, Txn
from umoc.storage.messages import (
    MESSAGE_COLUMNS,
    READ_COUNT,
    UNKNOWN_CHAT,
    Message,
    annotate_txn,
    index_pending_txn,
    message_from_row,
    read_count_params,
)
from umoc.storage.replica import ReadRouter

__all__ = ["CommonWords", "Hit", "SearchPage", "SearchStore"]

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
        raise RefusedError(UNKNOWN_CHAT, code="not_found")
    return {int(r["chat_id"]): int(r["chat_id"]) if r["is_group"] else int(r["peer_id"]) for r in rows}


#: A group message only from after the reader joined (its ``?`` is the reader); a direct chat's all.
_SINCE_JOINED = (
    " AND (m.is_group = 0"
    " OR m.seq > (SELECT j.joined_seq FROM user_chats j WHERE j.user_id = ? AND j.chat_id = m.chat_id))"
)


def _fts5_phrase(text: str) -> str:
    """``text`` as one FTS5 string: words to match, never operators, columns or prefixes."""
    return '"' + text.replace('"', '""') + '"'


def _sqlite_hits_txn(txn: Txn, scan: _Scan, common: CommonWords) -> list[Row]:
    """One plan for every word (``common`` is PostgreSQL's concern): FTS5 reads newest first and stops."""
    user_id, terms, chats, before, count = scan
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
        + _SINCE_JOINED
        + " ORDER BY messages_fts.rowid DESC LIMIT ?",
        (*read_count_params(user_id), match, before, user_id, count),
    ).fetchall()


#: PostgreSQL: the words of ``?`` as the index holds them (the same normalisation as the content).
_PG_WORDS = "plainto_tsquery('simple'::regconfig, regexp_replace(?, '[^[:alnum:]]+', ' ', 'g'))"


class CommonWords:
    """PostgreSQL's most common words: those in more than `SHARE` of the indexed messages.

    Read from the statistics ANALYZE keeps for the planner (``pg_stats``: the
    most common lexemes of ``search_vector`` and their frequencies), at most
    every `REFRESH` seconds: the view costs milliseconds to plan, too much for
    every search.  Before the first ANALYZE no word is common.
    """

    SHARE = 0.05
    REFRESH = 300.0

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._words: frozenset[str] = frozenset()
        self._read_at: float | None = None

    def get_txn(self, txn: Txn) -> frozenset[str]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self.REFRESH:
            row = txn.execute(
                "SELECT most_common_elems::text::text[] AS words, most_common_elem_freqs AS shares FROM pg_stats"
                " WHERE schemaname = current_schema() AND tablename = 'messages' AND attname = 'search_vector'"
            ).fetchone()
            words: list[str] = (row["words"] if row is not None else None) or []
            # The frequencies are followed by three more figures (minimum, maximum, share of nulls).
            shares: list[float] = ((row["shares"] if row is not None else None) or [])[: len(words)]
            self._words = frozenset(
                w for w, share in zip(words, shares, strict=True) if share >= self.SHARE and not w.startswith("#")
            )
            self._read_at = now
        return self._words


def _postgres_hits_txn(txn: Txn, scan: _Scan, common: CommonWords) -> list[Row]:
    """Two plans, chosen by how common the words are; neither reads a common word's matches across the table.

    A GIN index cannot return its matches newest first, and a common word
    matches most of the table.  So when every word is common, each of the
    user's chats is read newest first (``messages_chat_live``) until
    ``count`` matches: a few rows per chat.  Otherwise the GIN index finds
    the messages holding the words and one of the user's chats (the
    ``'#<chat id>'`` lexemes), which it does inside the index, starting from
    the shorter lists.  (The planner alone, with one query for both, walked
    the whole table backwards by ``seq`` for common words in the chats of a
    user with few messages: seconds on a million messages.)
    """
    user_id, terms, chats, before, count = scan
    text = " ".join(terms)
    if all(term.lower() in common.get_txn(txn) for term in terms):
        sql = (
            "SELECT " + MESSAGE_COLUMNS + ", " + READ_COUNT + " FROM unnest(?::bigint[]) AS c (chat_id)"
            " CROSS JOIN LATERAL (SELECT h.seq FROM messages h WHERE h.chat_id = c.chat_id AND h.deleted_at IS NULL"
            " AND h.seq < ? AND h.search_vector @@ " + _PG_WORDS + " ORDER BY h.seq DESC LIMIT ?) hit"
            " JOIN messages m ON m.seq = hit.seq JOIN users su ON su.id = m.sender_id"
            " WHERE TRUE" + _SINCE_JOINED + " ORDER BY m.seq DESC LIMIT ?"
        )
        params: tuple[object, ...] = (list(chats), before, text, count, user_id, count)
    else:
        # The chats as '#<id>' lexemes, built here from integers read from the database.
        sql = (
            "SELECT " + MESSAGE_COLUMNS + ", " + READ_COUNT + " FROM messages m JOIN users su ON su.id = m.sender_id"
            " WHERE m.search_vector @@ (" + _PG_WORDS + " && ?::tsquery)"
            " AND m.deleted_at IS NULL AND m.seq < ?" + _SINCE_JOINED + " ORDER BY m.seq DESC LIMIT ?"
        )
        params = (text, " | ".join(f"'#{int(c)}'" for c in chats), before, user_id, count)
    return txn.execute(sql, (*read_count_params(user_id), *params)).fetchall()


_HITS = {"sqlite": _sqlite_hits_txn, "postgres": _postgres_hits_txn}


class SearchQuery(NamedTuple):
    """What one ``search_messages`` page asks: the user's words, in one chat or all, below a position."""

    user_id: int
    terms: Sequence[str]
    chat: tuple[int, bool] | None
    before: int | None
    limit: int


class _Scan(NamedTuple):
    """A query resolved against the user's chats, as the dialect's hit function reads it."""

    user_id: int
    terms: Sequence[str]
    chats: Sequence[int]
    before: int
    #: How many rows to read (one more than the page, to know whether another follows).
    rows: int


#: SQLite: whether messages wait for the full-text index (migration 027); the index's position is a one-row table
#: and the newest seq the end of the primary key's b-tree, so this costs two lookups.
_INDEX_BEHIND = "SELECT (SELECT MAX(seq) FROM messages) > (SELECT seq FROM messages_fts_upto)"


def search_txn(txn: Txn, query: SearchQuery, common: CommonWords, exact: bool = False) -> SearchPage | None:
    """Up to ``limit`` hits below seq ``before``, newest first: three or four queries whatever the data.

    None (SQLite) when messages stored before this read wait for the index and
    ``exact`` is not set: the caller indexes them and reads again with ``exact``.
    """
    user_id, terms, chat, before, limit = query
    if not terms:
        raise ValueError("search needs at least one term")
    if txn.dialect.batched_search_index and not exact and txn.scalar(_INDEX_BEHIND):
        return None
    chats = _readable_chats_txn(txn, user_id, chat)
    if not chats:
        return SearchPage([], None)
    scan = _Scan(user_id, terms, sorted(chats), _NEWEST if before is None else before, limit + 1)
    rows = _HITS[txn.dialect.name](txn, scan, common)
    more = len(rows) > limit
    rows = rows[:limit]
    messages = annotate_txn(txn, [message_from_row(r) for r in rows])
    hits = [
        Hit(message, int(row["read_count"]) > 0, chats[message.chat_id])
        for message, row in zip(messages, rows, strict=True)
    ]
    return SearchPage(hits, rows[-1]["seq"] if more else None)


class SearchStore:
    def __init__(
        self, db: Database, clock: Callable[[], float] = time.monotonic, reads: ReadRouter | None = None
    ) -> None:
        self._db = db
        #: Searches may come from the replica (`ReadRouter`).
        self._reads = reads if reads is not None else ReadRouter(db)
        self._common = CommonWords(clock)

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
        query = SearchQuery(user_id, list(terms), chat, before, limit)
        return defer.ensureDeferred(self._messages(query))

    async def _messages(self, query: SearchQuery) -> SearchPage:
        page = await self._reads.read("messages.search", query.user_id, search_txn, query, self._common)
        if page is None:
            # Messages wait for the index (SQLite): index them, in the next batch of the writer, then read again.
            # The second read sees the index up to at least every message the first one saw.
            while await self._db.write("search.index", 0, index_pending_txn):
                pass
            page = await self._reads.read("messages.search", query.user_id, search_txn, query, self._common, True)
        assert page is not None
        return page
