"""One path per change: the socket, the bot API, the admin API and ``umoc-admin`` call the same command.

So the same change tells the same people the same notices, writes the same
feed rows and fires the same webhooks whichever edge asked for it.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.admin import PASSWORD, AdminCase
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase, LocalPerson
from tests.support.push import WebhookReceiver, serve, until
from umoc.domain.commands import bots
from umoc.domain.webhooks import render
from umoc.records import Actor
from umoc.records.bots import NewBot

SECRET = "one-path-webhook-secret"


class ContactAcceptTests(InProcessChatCase):
    """``accept_contact`` from a user's socket and from a bot's ``POST /api/bot/accept_contact``."""

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.hooks: list[tuple[str, dict[str, Any]]] = []

    async def webhooks_since(self, position: str) -> list[tuple[str, dict[str, Any]]]:
        """The webhooks the feed's rows since ``position`` make (what the ``webhooks`` consumer sends)."""
        batch = await self.storage.outbox.read(position, ("contact",), 100)
        return [rendered for rendered in map(render, batch.rows) if rendered is not None]

    async def feed_rows(self, user_id: int) -> list[tuple[str, str | None]]:
        """The ``contact`` changes in ``user_id``'s own stream: (event, status), oldest first."""
        rows = await self.rows("SELECT data FROM changes WHERE kind = 'contact' AND user_id = ? ORDER BY id", user_id)
        return [(json.loads(r["data"])["event"], json.loads(r["data"])["status"]) for r in rows]

    async def through_the_socket(self, requester: LocalPerson) -> tuple[int, str]:
        friend = await self.person("bob")
        await requester.call("add_contact", contact_username="bob")
        await friend.call("accept_contact", contact_id=requester.id)
        return friend.id, "bob"

    async def through_the_bot_api(self, requester: LocalPerson) -> tuple[int, str]:
        operator = Actor.operator("test", "cli")
        bot, token = await bots.create(self.node.services, operator, NewBot("botty"))
        await requester.call("add_contact", contact_username="botty")
        code, answer = await self.server.post(
            "/api/bot/accept_contact", {"contact_id": requester.id}, {"Authorization": f"Bearer {token}"}
        )
        self.assertEqual((code, answer), (200, {"user_id": requester.id, "username": "alice", "status": "FRIEND"}))
        return bot.id, "botty"

    @inline
    async def test_both_edges_tell_record_and_fire_the_same(self) -> None:
        seen = []
        for accept in (self.through_the_socket, self.through_the_bot_api):
            await self.storage.db.run("test", lambda txn: txn.execute("DELETE FROM changes"))
            requester = await self.person("alice")
            position = await self.storage.feed.position()
            friend_id, friend_name = await accept(requester)
            self.hooks = await self.webhooks_since(position)
            told = await requester.client.expect("contact_accepted")
            self.assertEqual(told, {"user_id": friend_id, "username": friend_name, "status": "FRIEND"})
            self.assertEqual(
                self.hooks,
                [
                    (
                        "contact.accepted",
                        {
                            "user_id": friend_id,
                            "username": friend_name,
                            "requester_id": requester.id,
                            "requester_username": "alice",
                        },
                    )
                ],
            )
            seen.append((await self.feed_rows(requester.id), await self.feed_rows(friend_id)))
            requester.client.close()
            await self.storage.db.run("test", lambda txn: txn.execute("DELETE FROM users WHERE username = 'alice'"))
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[0][0], [("contact_added", "NEW"), ("contact_accepted", "FRIEND")])


class AccountWebhookTests(AdminCase):
    """``user.registered`` fires for ``/api/register``, the admin API and ``umoc-admin`` alike."""

    backend = "sqlite"

    @inline
    async def setUp(self) -> None:
        self.receiver = WebhookReceiver(SECRET)
        await serve(self, self.receiver)
        await super().setUp()

    def sections(self, data_dir: str) -> dict[str, dict[str, Any]]:
        sections = super().sections(data_dir)
        sections["webhook_delivery"] = {"backoff": "0.05s", "max_attempts": 3, "timeout": "2s"}
        sections.setdefault("feed", {})["consumer_poll_interval"] = "0.2s"
        sections["webhooks"] = [  # type: ignore[assignment]
            {"url": self.receiver.url + "/hook", "secret": SECRET, "events": ["user.registered"]}
        ]
        return sections

    def registered(self) -> list[str]:
        return [h["data"]["username"] for h in self.receiver.received if h["event"] == "user.registered"]

    @inline
    async def test_every_edge_that_creates_an_account_fires_user_registered(self) -> None:
        await self.cli_ok("create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD)
        # umoc-admin writes the account's feed row; the running node finds it (its poll) and delivers it.
        await until(lambda: self.registered() == ["root"], what="user.registered for umoc-admin's account")
        root = await self.server.login("root")
        headers = {"X-Session-ID": root["sessionID"], "X-Session-Token": root["token"]}
        code, _ = await self.server.post("/api/admin/users", {"username": "bob", "password": PASSWORD}, headers=headers)
        self.assertEqual(code, 201)
        await self.server.register("carol")
        await until(lambda: len(self.registered()) == 3, what="user.registered from the API edges")
        self.assertEqual(sorted(self.registered()), ["bob", "carol", "root"])
        shapes = {frozenset(h["data"]) for h in self.receiver.received}
        self.assertEqual(shapes, {frozenset({"user_id", "username"})})
        self.assertEqual(self.receiver.problems, [])
