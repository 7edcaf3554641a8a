"""``search_messages``: full-text search over the messages the user may read.

::

    search_messages {"query": "lunch friday", "chat_id": 7, "is_group": true, "limit": 20, "cursor": "..."}
      -> search_results {"query": "lunch friday",
                         "results": [<chat_history message> + chat_id, is_group, snippet],
                         "next_cursor": "..." | null}

Newest first; ``next_cursor`` asks for the next page.  The rules (which
chats, which messages) are the store's (`umoc.storage.search`); terms,
cursors and snippets are `umoc.domain.search`'s.  Rate-limited in its own
class (``ratelimits.search``): a search costs more than a history page.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.notices import shapes
from umoc.domain.search import MAX_QUERY, decode_cursor, encode_cursor, query_terms, snippet
from umoc.events.router import EventContext, Route
from umoc.records.schema import SESSION_ID, Bool, Field, Int, Schema, Str

__all__ = ["ROUTES"]

MAX_LIMIT = 50


async def search_messages(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    terms = query_terms(payload["query"])
    chat = (payload["chat_id"], payload["is_group"]) if payload["chat_id"] is not None else None
    page = await ctx.services.storage.search.messages(ctx.user_id, terms, chat, payload["cursor"], payload["limit"])
    return {
        "query": payload["query"],
        "results": [shapes.search_result(hit, ctx.user_id, snippet(hit.message.content, terms)) for hit in page.hits],
        "next_cursor": encode_cursor(page.next_before) if page.next_before is not None else None,
    }


ROUTES = [
    Route(
        "search_messages",
        Schema(
            SESSION_ID,
            Str("query", max_length=MAX_QUERY),
            Int("chat_id", required=False),
            Bool("is_group", required=False, default=False),
            Int("limit", required=False, minimum=1, maximum=MAX_LIMIT, default=20),
            Field("cursor", decode_cursor, required=False, schema={"type": "string", "maxLength": 64}),
        ),
        search_messages,
        response=notices.SEARCH_RESULTS,
        rate_class="search",
        writes=False,
    ),
]
