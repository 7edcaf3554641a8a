"""``/api/push/`` and ``/api/bot/`` rendered in-process through the node's Site, over a real SQLite database
(the bot's thread replies over both databases)."""

from __future__ import annotations

import base64
import uuid

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.fakes import FakeSocket
from tests.support.node import NodeTestCase
from tests.support.web import request
from umoc.credentials import new_token, token_digest


class PushResourceTests(NodeTestCase):
    @inline
    async def test_the_vapid_public_key_is_an_uncompressed_p256_point(self) -> None:
        answer = await request(self.node.site, "GET", "/api/push/vapid_public_key")
        self.assertEqual(answer.code, 200)
        key = answer.json()["public_key"]
        raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        self.assertEqual((len(raw), raw[0]), (65, 4))


class BotResourceTests(NodeTestCase):
    @inline
    async def test_no_token_401_and_a_bot_obeys_the_friend_rule(self) -> None:
        answer = await request(self.node.site, "POST", "/api/bot/messages", {"recipient_id": 1, "content": "hi"})
        self.assertEqual(answer.code, 401)
        bot, stranger = await self.user("helperbot"), await self.user("carol")
        token = new_token()
        await self.storage.bots.make_bot(bot.id, token_digest(token), self.clock.seconds())
        auth = {"Authorization": f"Bearer {token}"}
        answer = await request(
            self.node.site, "POST", "/api/bot/messages", {"recipient_id": stranger.id, "content": "hi"}, auth
        )
        self.assertEqual(answer.code, 400)
        self.assertIn("friends", answer.json()["error"])
        answer = await request(
            self.node.site, "POST", "/api/bot/messages", {"recipient_id": stranger.id, "content": "a\x00"}, auth
        )
        self.assertEqual(answer.code, 400)


class BotThreadTestsMixin(NodeTestCase):
    """``POST /api/bot/messages`` with the thread and reply fields of ``send_message``, on both databases."""

    async def bot_and_friend(self) -> tuple[FakeSocket, FakeSocket, dict[str, str]]:
        alice, bot = await self.connected("alice"), await self.connected("helperbot")
        await self.call(alice, "add_contact", contact_username="helperbot")
        await self.call(bot, "accept_contact", contact_id=alice.user_id)
        token = new_token()
        await self.storage.bots.make_bot(bot.user_id, token_digest(token), self.clock.seconds())
        return alice, bot, {"Authorization": f"Bearer {token}"}

    @inline
    async def test_a_bot_replies_in_a_thread_with_mentions_and_extra(self) -> None:
        alice, bot, auth = await self.bot_and_friend()
        root = await self.call(alice, "send_message", recipient_id=bot.user_id, content="status?")
        body = {
            "recipient_id": alice.user_id,
            "content": "all green",
            "thread_id": root["message_id"].upper(),
            "also_in_chat": True,
            "reply_to": root["message_id"],
            "mentions": [alice.user_id, alice.user_id],
            "extra": {"build": 42},
        }
        answer = await request(self.node.site, "POST", "/api/bot/messages", body, auth)
        self.assertEqual(answer.code, 201, answer.json())
        sent = answer.json()
        self.assertEqual(
            (sent["thread_id"], sent["also_in_chat"], sent["reply_to"]["message_id"], sent["mentions"], sent["extra"]),
            (root["message_id"], True, root["message_id"], [alice.user_id], {"build": 42}),
        )
        page = await self.call(alice, "get_thread", thread_id=root["message_id"])
        self.assertEqual([m["message_id"] for m in page["messages"]], [sent["message_id"]])
        history = await self.call(alice, "get_chat_history", chat_id=bot.user_id)
        self.assertEqual([m["message_id"] for m in history["messages"]], [root["message_id"], sent["message_id"]])

    @inline
    async def test_the_new_fields_are_checked_as_send_message_checks_them(self) -> None:
        alice, bot, auth = await self.bot_and_friend()
        root = await self.call(alice, "send_message", recipient_id=bot.user_id, content="status?")
        base = {"recipient_id": alice.user_id, "content": "x"}
        refusals = [
            ({"thread_id": "nope"}, "Invalid 'thread_id': expected a UUID string"),
            ({"thread_id": 7}, "Invalid 'thread_id': expected a UUID string"),
            ({"reply_to": ["x"]}, "Invalid 'reply_to': expected a UUID string"),
            (
                {"also_in_chat": "yes", "thread_id": root["message_id"]},
                "Invalid 'also_in_chat': expected true or false",
            ),
            ({"also_in_chat": True}, "Invalid 'also_in_chat': only a thread reply ('thread_id') has it"),
            ({"mentions": "1"}, "Invalid 'mentions': expected a list of at most 50 ids"),
            ({"mentions": [True]}, "Invalid 'mentions': expected a list of at most 50 ids"),
            ({"mentions": list(range(1, 52))}, "Invalid 'mentions': expected a list of at most 50 ids"),
            ({"extra": [1]}, "Invalid 'extra': expected a JSON object"),
            ({"extra": {"x": "y" * 5000}}, "Invalid 'extra': at most 4096 bytes as JSON"),
            ({"thread_id": str(uuid.uuid4())}, "Thread not found"),
        ]
        for fields, error in refusals:
            answer = await request(self.node.site, "POST", "/api/bot/messages", {**base, **fields}, auth)
            self.assertEqual((answer.code, answer.json()["error"]), (400, error), fields)
        history = await self.call(alice, "get_chat_history", chat_id=bot.user_id)
        self.assertEqual([m["message_id"] for m in history["messages"]], [root["message_id"]])


for_each_backend(BotThreadTestsMixin, NodeTestCase, globals())
