"""Past ``server.overload_wait`` the router refuses writes at once and still serves reads (issue 25).

A node on a `Clock` over a real database whose writer is held by another
transaction (SQLite: its one writing connection; PostgreSQL: a ``SHARE``
lock on ``messages``), so a ``send_message`` really waits in the group
commit; the writer is timed by the test's `Clock`, so its wait passes the
bound exactly when the test says.  Refused events answer synchronously,
before any database work; what was acknowledged is stored and nothing
refused is.
"""

from __future__ import annotations

import threading
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.support.databases import for_each_backend, hold_writer
from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from tests.support.web import request
from umoc.credentials import new_token, token_digest
from umoc.domain.overload import OVERLOADED
from umoc.events.router import build_routes
from umoc.events.routes import ROUTE_GROUPS
from umoc.storage.batching import BatchWriter

BOUND = 0.5
#: The events still served while overloaded, as docs/api.md lists them (rule 8): they change nothing.
READS = {
    "get_chats",
    "get_chat_info",
    "get_chat_history",
    "get_contacts",
    "get_profile",
    "get_read_receipts",
    "get_pinned",
    "get_threads",
    "get_push_registrations",
    "get_bans",
    "list_public_groups",
    "get_invite_links",
    "get_members",
    "search_messages",
    "sync",
    "verify_session",
    "ping",
    "typing",
}


class WritingRoutesTests(unittest.TestCase):
    def test_every_route_writes_unless_it_is_one_of_the_documented_reads(self) -> None:
        """A new route is refused while overloaded unless it says ``writes=False`` and is added here and to the docs."""
        routes = build_routes(ROUTE_GROUPS)
        self.assertEqual({event for event, route in routes.items() if not route.writes}, READS)


class OverloadedRouterMixin:
    # The production default, which tests.support.server.test_config raises for the other tests.
    config_overrides = {"ratelimits": {"enabled": False}, "server": {"overload_wait": f"{BOUND}s"}}

    @inline
    async def setUp(self) -> None:
        await super().setUp()  # type: ignore[misc]
        self.alice, self.bob = await self.connected("alice"), await self.connected("bob")
        now = self.clock.seconds()
        await self.storage.contacts.request(self.alice.user_id, "bob", now)
        await self.storage.contacts.accept(self.bob.user_id, self.alice.user_id, now)
        self.db.writer = BatchWriter(self.db.run, now=self.clock.seconds)
        self.ack_ids = iter(range(1, 1000))

    def send(self, socket: Any, event: str, **payload: Any) -> defer.Deferred[Any]:
        ack_id = next(self.ack_ids)
        answer = socket.answer(ack_id)
        self.node.socketapp.on_event(socket, event, [payload], ack_id)
        return answer

    async def hold_writer(self) -> threading.Event:
        """A transaction that keeps new writes from committing until the returned event is set."""
        release, self.holding = await hold_writer(self, self.db, self.backend == "postgres", 10)
        return release

    def refusal(self, answer: defer.Deferred[Any]) -> dict[str, Any]:
        """The answer, which must be there already (no database work was awaited)."""
        return self.successResultOf(answer)

    @inline
    async def test_a_write_that_waited_past_the_bound_behind_its_socket_is_refused_when_it_starts(self) -> None:
        """The backlog of a socket's own queue, which neither the writer's nor the reactor's shows."""
        alice, bob = self.alice, self.bob
        router = self.node.socketapp.router
        payload = {"recipient_id": bob.user_id, "content": "late"}
        late = alice.answer(7)
        # As `_drain` starts an event that arrived 0.7 s ago, behind the socket's earlier ones.
        await router.handle(alice, "send_message", [payload], 7, received=self.clock.seconds() - 0.7)
        self.assertEqual(self.refusal(late), {"error": OVERLOADED, "code": "overloaded", "retry_after": 0.7})
        on_time = alice.answer(8)
        await router.handle(alice, "send_message", [payload], 8, received=self.clock.seconds() - (BOUND - 0.1))
        self.assertIn("message_id", await on_time, "under the bound it runs")
        stored = await self.db.run("t", lambda txn: txn.execute("SELECT content FROM messages").fetchall())
        self.assertEqual([row["content"] for row in stored], ["late"])

    @inline
    async def test_writes_are_refused_at_once_reads_served_and_only_the_acked_stored(self) -> None:
        alice, bob = self.alice, self.bob
        carol = await self.connected("carol")
        release = await self.hold_writer()
        first = self.send(alice, "send_message", recipient_id=bob.user_id, content="first")
        self.clock.advance(BOUND - 0.1)
        early = self.send(bob, "send_message", recipient_id=alice.user_id, content="early")
        self.assertNoResult(early)  # under the bound: admitted, waits for its batch

        self.clock.advance(0.2)
        self.assertGreater(self.db.writer.oldest_wait(), BOUND)
        overloaded = {"error": OVERLOADED, "code": "overloaded", "retry_after": 0.6}
        # alice's first send still runs: her next one is answered on arrival, before it.
        behind = self.send(alice, "send_message", recipient_id=bob.user_id, content="behind")
        self.assertEqual(self.refusal(behind), overloaded)
        # carol's socket is idle: refused when it starts, before validation (the payload is not even valid).
        self.assertEqual(self.refusal(self.send(carol, "send_message", recipient_id=0)), overloaded)
        self.assertEqual(self.refusal(self.send(carol, "update_profile", display_name="C")), overloaded)
        self.assertEqual(carol.events("error"), [{"message": OVERLOADED, "code": "overloaded", "retry_after": 0.6}] * 2)
        # Reads are served meanwhile (SQLite: on the WAL readers; PostgreSQL: other pool connections).
        chats = await self.send(carol, "get_chats")
        self.assertEqual(chats, [])
        self.assertEqual((await self.send(carol, "ping", timestamp=1))["timestamp"], 1)
        metrics = self.services.metrics.registry
        self.assertEqual(metrics.get_sample_value("umoc_overload_refusals_total", {"edge": "socket"}), 3)
        self.assertAlmostEqual(metrics.get_sample_value("umoc_write_wait_seconds"), 0.6, places=3)

        # The bot API says 503 with Retry-After before looking its token up.
        answer = await request(self.node.site, "POST", "/api/bot/messages", {"recipient_id": 1, "content": "hi"})
        self.assertEqual((answer.code, answer.header("Retry-After")), (503, "1"))
        self.assertEqual(answer.json(), {"error": OVERLOADED, "code": "overloaded"})

        release.set()
        await self.holding
        sent_first, sent_early = await first, await early
        self.assertIn("message_id", sent_first)
        self.assertIn("message_id", sent_early)
        self.assertEqual(self.db.writer.oldest_wait(), 0)
        after = await self.send(alice, "send_message", recipient_id=bob.user_id, content="after")
        self.assertIn("message_id", after, "admitted again once the backlog drained")
        acked = {sent_first["message_id"], sent_early["message_id"], after["message_id"]}
        stored = await self.db.run("t", lambda txn: txn.execute("SELECT id, content FROM messages").fetchall())
        self.assertEqual({str(row["id"]) for row in stored}, acked)
        self.assertEqual(sorted(row["content"] for row in stored), ["after", "early", "first"])

    @inline
    async def test_a_bot_is_refused_with_503_and_served_once_the_writer_catches_up(self) -> None:
        bot = await self.user("helperbot")
        token = new_token()
        await self.storage.bots.make_bot(bot.id, token_digest(token), self.clock.seconds())
        await self.storage.contacts.request(self.alice.user_id, "helperbot", self.clock.seconds())
        await self.storage.contacts.accept(bot.id, self.alice.user_id, self.clock.seconds())
        auth = {"Authorization": f"Bearer {token}"}
        body = {"recipient_id": self.alice.user_id, "content": "hi"}
        release = await self.hold_writer()
        first = self.send(self.alice, "send_message", recipient_id=self.bob.user_id, content="first")
        self.clock.advance(2.4)
        answer = await request(self.node.site, "POST", "/api/bot/messages", body, auth)
        self.assertEqual((answer.code, answer.header("Retry-After")), (503, "3"))
        answer = await request(self.node.site, "POST", "/api/bot/accept_contact", {"contact_id": 1}, auth)
        self.assertEqual(answer.code, 503)
        self.assertEqual(
            self.services.metrics.registry.get_sample_value("umoc_overload_refusals_total", {"edge": "bot"}), 2
        )
        release.set()
        await first
        answer = await request(self.node.site, "POST", "/api/bot/messages", body, auth)
        self.assertEqual(answer.code, 201)


for_each_backend(OverloadedRouterMixin, NodeTestCase, globals())
