"""One message path: a send or a delete has the same effects whichever edge it came through.

A socket's ``send_message`` and a bot's ``POST /api/bot/messages``; a
sender's ``delete_message``, ``POST /api/admin/delete_message`` and
``umoc-admin delete-message`` (beside the running server, on its
database): each is one command of `umoc.domain.commands.messages`, so
each gives the same notices to the members' sockets, the same feed row
and the same webhook, with ``deleted_by`` a user id (or null for
``umoc-admin``) on every path.
"""

from __future__ import annotations

import json
from typing import Any

import treq

from tests.support.admin import PASSWORD, AdminCase
from tests.support.chat import Person
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.push import WebhookReceiver, serve, until
from umoc.credentials import new_token, token_digest

SECRET = "s3cret-for-the-edge-tests"
NEW_MESSAGE = {"message_id", "sender_id", "sender_username", "recipient_id", "content", "type", "timestamp", "is_group"}


class MessageEdgesMixin:
    @inline
    async def setUp(self) -> None:
        self.hooks = WebhookReceiver(SECRET)
        await serve(self, self.hooks)
        self.shared_config = {
            # A loaded machine's late answer is no reason to deliver again: the test counts one delivery.
            "webhook_delivery": {"backoff": "0.05s", "max_attempts": 3, "timeout": "20s"},
            "webhooks": [
                {"url": self.hooks.url + "/hook", "secret": SECRET, "events": ["message.created", "message.deleted"]}
            ],
        }
        await super().setUp()
        await self.cli_ok("create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD)
        self.root = await self.server.login("root")
        self.alice, self.bob = await self.person("alice"), await self.person("bob")
        await self.befriend(self.alice, self.bob)

    async def bot_token(self, bot: Person) -> str:
        token = new_token()
        storage = self.server.services.storage
        await storage.bots.make_bot(bot.id, token_digest(token), self.server.services.clock.seconds())
        return token

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        response = await treq.post(self.server.url + path, json=body, headers=headers, persistent=False)
        return response.code, json.loads(await response.text())

    async def webhook(self, event: str, message_id: str) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [
                h["data"] for h in self.hooks.received if h["event"] == event and h["data"]["message_id"] == message_id
            ]

        await until(lambda: len(found()) == 1, what=f"the {event} webhook of {message_id}")
        return found()[0]

    async def feed_rows(self, message_id: str) -> list[tuple[str, int | None]]:
        rows = await self.rows(
            "SELECT c.kind, c.actor_id FROM changes c JOIN messages m ON m.seq = c.message_seq"
            " WHERE m.id = ? ORDER BY c.id",
            message_id,
        )
        return [(r["kind"], None if r["actor_id"] is None else int(r["actor_id"])) for r in rows]

    @inline
    async def test_a_socket_and_a_bot_send_with_the_same_notices_feed_rows_and_webhooks(self) -> None:
        alice, bob = self.alice, self.bob
        bot = await self.person("helperbot")
        await self.befriend(bot, bob)
        auth = {"Authorization": f"Bearer {await self.bot_token(bot)}"}
        by_socket = await alice.call("send_message", recipient_id=bob.id, content="from a socket")
        code, by_bot = await self.post("/api/bot/messages", {"recipient_id": bob.id, "content": "from a bot"}, auth)
        self.assertEqual(code, 201, by_bot)
        for sender, payload in ((alice, by_socket), (bot, by_bot)):
            self.assertLessEqual(NEW_MESSAGE, set(payload))
            self.assertEqual((payload["sender_id"], payload["recipient_id"]), (sender.id, bob.id))
            # Every socket of both users, the sender's own included, gets the same new_message.
            self.assertEqual(await bob.client.expect("new_message"), payload)
            self.assertEqual(await sender.client.expect("new_message"), payload)
            self.assertEqual(await self.webhook("message.created", payload["message_id"]), payload)
            self.assertEqual(await self.feed_rows(payload["message_id"]), [("message", sender.id)])
        # The bot's message is checked by the same rules as the socket's: the configured bound, a JSON
        # object for a file, no NUL.
        limit = self.server.services.config.messages.max_content_length
        for body, why in (
            ({"recipient_id": bob.id, "content": "x" * (limit + 1)}, f"expected 1 to {limit} characters"),
            ({"recipient_id": bob.id, "content": "not json", "type": "file"}, "JSON object"),
            ({"recipient_id": bob.id, "content": "a\x00"}, "NUL"),
            ({"recipient_id": bob.id, "content": "hi", "type": "sticker"}, "Invalid 'type'"),
        ):
            code, answer = await self.post("/api/bot/messages", body, auth)
            self.assertEqual(code, 400, body)
            self.assertIn(why, answer["error"])
            if body.get("type") != "sticker":  # the socket's schema refuses an unknown type first
                refused = await alice.call("send_message", **body)
                self.assertIn(why, refused["error"])

    @inline
    async def test_a_sender_an_admin_and_umoc_admin_delete_with_the_same_notices_feed_rows_and_webhooks(self) -> None:
        alice, bob = self.alice, self.bob
        sent = [await alice.call("send_message", recipient_id=bob.id, content=f"m{i}") for i in range(3)]
        for person in (alice, bob):
            person.client.drain("new_message")
        own, moderated, by_cli = (m["message_id"] for m in sent)
        answers = {own: await alice.call("delete_message", message_id=own)}
        code, answers[moderated] = await self.post(
            "/api/admin/delete_message",
            {"message_id": moderated},
            {"X-Session-ID": self.root["sessionID"], "X-Session-Token": self.root["token"]},
        )
        self.assertEqual(code, 200)
        answers[by_cli] = await self.cli_json("delete-message", by_cli)
        deleted_by = {own: alice.id, moderated: self.root["user_id"], by_cli: None}
        for message_id, answer in answers.items():
            self.assertEqual(set(answer), {"message_id", "sender_id", "timestamp", "deleted_by"})
            self.assertEqual((answer["message_id"], answer["sender_id"]), (message_id, alice.id))
            hook = await self.webhook("message.deleted", message_id)
            self.assertEqual(hook, {**answer, "deleted_by": deleted_by[message_id]})
            self.assertEqual(
                await self.feed_rows(message_id), [("message", alice.id), ("delete", deleted_by[message_id])]
            )
        # The node's own sockets hear of the socket's and the admin API's deletions at once; umoc-admin's
        # reach them through the Redis bus when there is one (tests/test_admincli.py, two nodes), else
        # on the next sync, from the feed row above.
        for person in (alice, bob):
            for message_id in (own, moderated):
                self.assertEqual(await person.client.expect("message_deleted"), answers[message_id])
        history = await bob.call("get_chat_history", chat_id=alice.id)
        self.assertEqual(history["messages"], [])


for_each_backend(MessageEdgesMixin, AdminCase, globals())
