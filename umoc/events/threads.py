"""Thread events: ``get_thread`` -> ``thread_history``, ``get_threads`` -> ``threads``,
``follow_thread`` -> ``thread_followed``.

A reply is ``send_message`` with ``thread_id``.  The rules are
`umoc.domain.commands.threads`'; an unchanged follow is answered to the
asking socket only.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.commands import threads
from umoc.events.router import EventContext, Route
from umoc.records.messages import DEFAULT_THREAD_PAGE, MAX_THREAD_PAGE, ThreadFollow, ThreadQuery, ThreadsQuery
from umoc.records.schema import SESSION_ID, Bool, Int, Schema, Str, Uuid

__all__ = ["ROUTES"]


async def get_thread(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    query = ThreadQuery(payload["thread_id"], payload["before"], payload["limit"])
    return await threads.thread(ctx.services, ctx.actor, query)


async def get_threads(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    query = ThreadsQuery(payload["chat_id"], payload["is_group"], payload["cursor"], payload["limit"])
    return await threads.threads(ctx.services, ctx.actor, query)


async def follow_thread(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    done = await threads.follow(ctx.services, ctx.actor, ThreadFollow(payload["thread_id"], payload["follow"]))
    if not done.changed:
        ctx.socket.tell(notices.THREAD_FOLLOWED(done.payload))
    return done.payload


ROUTES = [
    Route(
        "get_thread",
        Schema(
            SESSION_ID,
            Uuid("thread_id"),
            Uuid("before", required=False),
            Int("limit", required=False, maximum=MAX_THREAD_PAGE, default=DEFAULT_THREAD_PAGE),
        ),
        get_thread,
        response=notices.THREAD_HISTORY,
        rate_class="reads",
    ),
    Route(
        "get_threads",
        Schema(
            SESSION_ID,
            Int("chat_id", required=False),
            Bool("is_group", required=False, default=False),
            Str("cursor", required=False, max_length=20),
            Int("limit", required=False, maximum=MAX_THREAD_PAGE, default=DEFAULT_THREAD_PAGE),
        ),
        get_threads,
        response=notices.THREADS,
        rate_class="reads",
        writes=False,
    ),
    Route(
        "follow_thread",
        Schema(SESSION_ID, Uuid("thread_id"), Bool("follow", required=False, default=True)),
        follow_thread,
        rate_class="messages",
    ),
]
