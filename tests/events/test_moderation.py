"""``moderation`` over sockets, on either database: the blocklist refuses or masks; new accounts' limits."""

from __future__ import annotations

from typing import Any

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from umoc.domain.moderation import BLOCKED, LINKS_REFUSED, UPLOADS_REFUSED
from umoc.storage.database import Txn


class RejectMixin:
    config_overrides: dict[str, Any] = {
        "ratelimits": {"enabled": False},
        "moderation": {"blocklist": {"words": ["spam"], "regexes": ["fr[e3]{2}\\s*money"]}},
    }

    @inline
    async def test_a_blocked_word_refuses_the_message_and_its_edit_and_stores_nothing(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        for text in ("this is SPAM", "get fr33 money"):
            answer = await alice.call("send_message", recipient_id=bob.id, content=text)
            self.assertEqual((answer["error"], answer["code"]), (BLOCKED, "forbidden"))
        self.assertEqual(await self.scalar("SELECT COUNT(*) FROM messages"), 0)
        sent = await alice.call("send_message", recipient_id=bob.id, content="spammers are words apart")
        self.assertNotIn("error", sent)
        edited = await alice.call("edit_message", message_id=sent["message_id"], content="now spam")
        self.assertEqual(edited["error"], BLOCKED)
        self.assertEqual(await self.scalar("SELECT content FROM messages"), "spammers are words apart")


class MaskMixin:
    config_overrides: dict[str, Any] = {
        "ratelimits": {"enabled": False},
        "moderation": {
            "blocklist": {"words": ["spam"], "action": "mask"},
            "new_accounts": {"age": "1h", "no_links": True, "no_uploads": True},
        },
    }

    @inline
    async def test_masked_words_are_stored_and_delivered_masked_and_new_accounts_wait_for_links(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        sent = await alice.call("send_message", recipient_id=bob.id, content="Spam and eggs")
        self.assertEqual(sent["content"], "**** and eggs")
        self.assertEqual((await bob.client.expect("new_message"))["content"], "**** and eggs")
        self.assertEqual(await self.scalar("SELECT content FROM messages"), "**** and eggs")
        # alice is minutes old: no links, no uploads; plain text is fine.
        refused = await alice.call("send_message", recipient_id=bob.id, content="see https://example.test")
        self.assertEqual((refused["error"], refused["code"]), (LINKS_REFUSED, "forbidden"))
        upload = await alice.call(
            "upload_file_prepare",
            recipient_id=bob.id,
            is_group=False,
            file_name="a.txt",
            file_size=4,
            file_type="text/plain",
        )
        self.assertEqual(upload["error"], UPLOADS_REFUSED)
        # Once the account is older than moderation.new_accounts.age, links pass.

        def age(txn: Txn) -> None:
            txn.execute("UPDATE users SET created_at = created_at - ? WHERE id = ?", (7200, alice.id))

        await self.storage.db.run("test.age", age)
        allowed = await alice.call("send_message", recipient_id=bob.id, content="see https://example.test")
        self.assertNotIn("error", allowed)


for_each_backend(RejectMixin, InProcessChatCase, globals())
for_each_backend(MaskMixin, InProcessChatCase, globals())
