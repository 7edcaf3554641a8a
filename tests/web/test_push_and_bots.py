"""``/api/push/`` and ``/api/bot/`` rendered in-process through the node's Site, over a real SQLite database."""

from __future__ import annotations

import base64

from tests.support.deferreds import inline
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
