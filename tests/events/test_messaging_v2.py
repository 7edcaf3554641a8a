"""Messaging v2 over real sockets, on both databases: edits, replies, reactions, mentions,
delivery receipts, unblock and unfriend, profiles and avatars.

Every event: the happy path, each refusal (which changes nothing), delivery to
the sender's other sockets and to every group member, and what history,
``sync`` and ``get_chats`` show afterwards.
"""

from __future__ import annotations

import re
from typing import Any

from tests.support.chat import Person
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline, sleep
from tests.support.inprocess import InProcessChatCase
from umoc.errors import CODES

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MISSING = "00000000-0000-4000-8000-000000000000"
NOT_FRIENDS = "You can only send direct messages to your friends"


class MessagingCase:
    """Helpers for the mixins below (each becomes a SQLite and a PostgreSQL `ChatCase`)."""

    config_overrides = {"ratelimits": {"enabled": False}}

    async def pair(self) -> tuple[Person, Person]:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        return alice, bob

    async def team(self) -> tuple[Person, Person, Person, Person, int]:
        """alice (admin), bob and carol in a group; dave is alice's friend but not a member."""
        alice, bob, carol, dave = [await self.person(n) for n in ("alice", "bob", "carol", "dave")]
        for other in (bob, carol, dave):
            await self.befriend(alice, other)
        created = await alice.call("create_group", name="Team", member_ids=[bob.id, carol.id])
        for person in (alice, bob, carol):
            await person.client.expect("group_created")
        return alice, bob, carol, dave, created["id"]

    async def send(
        self, sender: Person, recipient_id: int, content: str = "hello", is_group: bool = False, **extra: Any
    ) -> dict[str, Any]:
        answer = await sender.call(
            "send_message", recipient_id=recipient_id, content=content, is_group=is_group, **extra
        )
        self.assertNotIn("error", answer)
        return answer

    async def drain(self, *people: Person) -> None:
        """Forget what the people's first sockets received, once deliveries in flight have arrived."""
        await sleep(0.2)
        for person in people:
            person.client.drain_all()

    async def sql(self, statement: str, *params: Any) -> None:
        await self.server.services.storage.db.run("test", lambda txn: txn.execute(statement, params))

    async def download(self, url: str, who: Person) -> int:
        response = await self.server.http(
            "GET", url, None, {"X-Session-ID": who.login["sessionID"], "X-Session-Token": who.login["token"]}
        )
        return response.code

    async def refused(self, person: Person, event: str, message: str, **payload: Any) -> None:
        """The event answers ``error`` with exactly ``message`` and a registered code, as the ack and as the event."""
        answer = await person.call(event, **payload)
        self.assertEqual(answer, {"error": message, "code": answer.get("code")}, event)
        self.assertIn(answer["code"], CODES, event)
        self.assertEqual((await person.client.expect("error"))["message"], message)


# -- edits ------------------------------------------------------------------


class EditTestsMixin(MessagingCase):
    @inline
    async def test_edit_reaches_both_users_and_the_senders_other_socket_and_shows_everywhere(self) -> None:
        alice, bob = await self.pair()
        phone = await self.second_socket(alice)
        sent = await self.send(alice, bob.id, "helo")
        await self.drain(alice, bob)
        phone.drain_all()
        edited = await alice.call("edit_message", message_id=sent["message_id"], content="hello")
        self.assertEqual(set(edited), {"message_id", "chat_id", "is_group", "content", "edited_at"})
        self.assertEqual(
            (edited["message_id"], edited["chat_id"], edited["is_group"], edited["content"]),
            (sent["message_id"], bob.id, False, "hello"),
        )
        self.assertRegex(edited["edited_at"], ISO)
        self.assertEqual(await alice.client.expect("message_edited"), edited)
        self.assertEqual(await phone.expect("message_edited"), edited)
        # The recipient calls the chat by the sender's id.
        self.assertEqual(await bob.client.expect("message_edited"), {**edited, "chat_id": alice.id})

        history = await bob.call("get_chat_history", chat_id=alice.id)
        self.assertEqual(
            (history["messages"][0]["content"], history["messages"][0]["edited_at"]), ("hello", edited["edited_at"])
        )
        last = (await bob.call("get_chats"))[0]["last_message"]
        self.assertEqual((last["content"], last["edited_at"]), ("hello", edited["edited_at"]))
        synced = await bob.call("sync", since=0)
        self.assertEqual([(m["content"], m["edited_at"]) for m in synced["messages"]], [("hello", edited["edited_at"])])
        # The version it replaced is kept.
        versions = await self.server.services.storage.edits.versions(sent["message_id"])
        self.assertEqual([v[0] for v in versions], ["helo"])
        await alice.call("edit_message", message_id=sent["message_id"], content="hello!")
        versions = await self.server.services.storage.edits.versions(sent["message_id"])
        self.assertEqual([v[0] for v in versions], ["helo", "hello"])

    @inline
    async def test_group_edit_reaches_every_member_only(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        sent = await self.send(bob, gid, "hi all", is_group=True)
        await self.drain(alice, bob, carol, dave)
        edited = await bob.call("edit_message", message_id=sent["message_id"], content="hi everyone")
        self.assertEqual((edited["chat_id"], edited["is_group"]), (gid, True))
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("message_edited"), edited)
        await dave.client.expect_none("message_edited", within=0.1)
        # A member who is not the sender, and an outsider, are refused.
        await self.refused(
            alice, "edit_message", "Only the sender may edit a message", message_id=sent["message_id"], content="x"
        )
        await self.refused(dave, "edit_message", "Message not found", message_id=sent["message_id"], content="x")

    @inline
    async def test_every_refused_edit_changes_nothing(self) -> None:
        alice, bob = await self.pair()
        carol = await self.person("carol")
        text = await self.send(alice, bob.id, "text")
        old = await self.send(alice, bob.id, "old")
        image = await self.send(alice, bob.id, '{"file_id": "x"}', type="image")
        gone = await self.send(alice, bob.id, "gone")
        await alice.call("delete_message", message_id=gone["message_id"])
        await self.sql("UPDATE messages SET created_at = created_at - 86401 WHERE id = ?", old["message_id"])
        await self.drain(alice, bob, carol)
        before = await self.snapshot()
        await self.refused(
            bob, "edit_message", "Only the sender may edit a message", message_id=text["message_id"], content="x"
        )
        await self.refused(carol, "edit_message", "Message not found", message_id=text["message_id"], content="x")
        await self.refused(alice, "edit_message", "Message not found", message_id=MISSING, content="x")
        await self.refused(alice, "edit_message", "Message not found", message_id=gone["message_id"], content="x")
        await self.refused(
            alice, "edit_message", "Only text messages can be edited", message_id=image["message_id"], content="x"
        )
        await self.refused(
            alice,
            "edit_message",
            "Too late to edit: messages can be edited for 1 day after sending",
            message_id=old["message_id"],
            content="x",
        )
        await self.refused(
            alice,
            "edit_message",
            "Invalid 'content': expected 1 to 1000000 characters",
            message_id=text["message_id"],
            content="",
        )
        await self.refused(
            alice, "edit_message", "Invalid 'message_id': expected a UUID string", message_id="nope", content="x"
        )
        self.assertEqual(await self.snapshot(), before)
        await bob.client.expect_none("message_edited", within=0.1)
        # After a block, and after the friendship ended, the chat is no longer writable.
        await alice.call("block_contact", contact_id=bob.id)
        await self.refused(
            alice,
            "edit_message",
            "You have blocked this user: unblock them to edit messages",
            message_id=text["message_id"],
            content="x",
        )
        await alice.call("unblock_contact", contact_id=bob.id)
        await self.refused(
            alice,
            "edit_message",
            "You can only edit messages in chats with your friends",
            message_id=text["message_id"],
            content="x",
        )


class NoEditWindowTestsMixin(MessagingCase):
    config_overrides = {"ratelimits": {"enabled": False}, "messages": {"edit_window": 0}}

    @inline
    async def test_an_edit_window_of_zero_means_no_limit(self) -> None:
        alice, bob = await self.pair()
        sent = await self.send(alice, bob.id, "old")
        await self.sql("UPDATE messages SET created_at = created_at - 86400 * 365 WHERE id = ?", sent["message_id"])
        edited = await alice.call("edit_message", message_id=sent["message_id"], content="new")
        self.assertEqual(edited["content"], "new")


# -- replies ------------------------------------------------------------------


class ReplyTestsMixin(MessagingCase):
    @inline
    async def test_a_reply_carries_its_target_which_follows_edits_and_deletion(self) -> None:
        alice, bob = await self.pair()
        long_text = "x" * 150
        first = await self.send(alice, bob.id, long_text)
        reply = await self.send(bob, alice.id, "answer", reply_to=first["message_id"])
        expected = {
            "message_id": first["message_id"],
            "sender_id": alice.id,
            "sender_username": "alice",
            "type": "text",
            "content": "x" * 100,
        }
        self.assertEqual(reply["reply_to"], expected)
        self.assertEqual((await alice.client.expect("new_message")), first)
        self.assertEqual((await alice.client.expect("new_message"))["reply_to"], expected)

        def replied(messages: list[dict[str, Any]]) -> Any:
            return [m["reply_to"] for m in messages if m["message_id"] == reply["message_id"]][0]

        self.assertEqual(replied((await alice.call("get_chat_history", chat_id=bob.id))["messages"]), expected)
        self.assertEqual(replied((await alice.call("sync", since=0))["messages"]), expected)
        await alice.call("edit_message", message_id=first["message_id"], content="short")
        self.assertEqual(
            replied((await bob.call("get_chat_history", chat_id=alice.id))["messages"])["content"], "short"
        )
        await alice.call("delete_message", message_id=first["message_id"])
        gone = {"message_id": first["message_id"], "deleted": True}
        self.assertEqual(replied((await bob.call("get_chat_history", chat_id=alice.id))["messages"]), gone)
        self.assertEqual(replied((await bob.call("sync", since=0))["messages"]), gone)

    @inline
    async def test_replies_across_chats_to_unknown_or_deleted_messages_are_refused(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        in_group = await self.send(bob, gid, "group message", is_group=True)
        direct = await self.send(alice, dave.id, "direct")
        gone = await self.send(alice, dave.id, "gone")
        await alice.call("delete_message", message_id=gone["message_id"])
        await self.drain(alice, bob, carol, dave)
        before = await self.snapshot()
        bad = "Invalid 'reply_to': no such message in this chat"
        await self.refused(
            alice, "send_message", bad, recipient_id=dave.id, content="x", reply_to=in_group["message_id"]
        )
        await self.refused(
            alice, "send_message", bad, recipient_id=gid, is_group=True, content="x", reply_to=direct["message_id"]
        )
        await self.refused(alice, "send_message", bad, recipient_id=dave.id, content="x", reply_to=MISSING)
        await self.refused(alice, "send_message", bad, recipient_id=dave.id, content="x", reply_to=gone["message_id"])
        self.assertEqual(await self.snapshot(), before)
        for person in (bob, carol, dave):
            await person.client.expect_none("new_message", within=0.05)


# -- reactions ------------------------------------------------------------------


class ReactionTestsMixin(MessagingCase):
    @inline
    async def test_reactions_reach_every_member_and_show_in_history_and_sync(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        phone = await self.second_socket(bob)
        sent = await self.send(alice, gid, "lunch?", is_group=True)
        await self.drain(alice, bob, carol, dave)
        phone.drain_all()
        added = await bob.call("add_reaction", message_id=sent["message_id"], emoji="👍")
        self.assertEqual(
            added,
            {
                "message_id": sent["message_id"],
                "chat_id": gid,
                "is_group": True,
                "user_id": bob.id,
                "emoji": "👍",
                "action": "added",
                "reactions": [{"emoji": "👍", "count": 1, "user_ids": [bob.id]}],
            },
        )
        for client in (alice.client, bob.client, phone, carol.client):
            self.assertEqual(await client.expect("reaction_updated"), added)
        await dave.client.expect_none("reaction_updated", within=0.1)
        await carol.call("add_reaction", message_id=sent["message_id"], emoji="👍")
        await carol.call("add_reaction", message_id=sent["message_id"], emoji=":tada:")
        family = "👨\u200d👩\u200d👧"
        last = await alice.call("add_reaction", message_id=sent["message_id"], emoji=family)
        expected = [
            {"emoji": "👍", "count": 2, "user_ids": [bob.id, carol.id]},
            {"emoji": ":tada:", "count": 1, "user_ids": [carol.id]},
            {"emoji": family, "count": 1, "user_ids": [alice.id]},
        ]
        self.assertEqual(last["reactions"], expected)
        history = await carol.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual(history["messages"][0]["reactions"], expected)
        synced = await carol.call("sync", since=0)
        self.assertEqual([m["reactions"] for m in synced["messages"]], [expected])

        removed = await carol.call("remove_reaction", message_id=sent["message_id"], emoji="👍")
        self.assertEqual(
            (removed["action"], removed["reactions"][0]), ("removed", {"emoji": "👍", "count": 1, "user_ids": [bob.id]})
        )
        await self.drain(alice, bob, carol)
        phone.drain_all()
        # Idempotent: a repeat changes nothing and only the asking socket hears of it.
        again = await carol.call("remove_reaction", message_id=sent["message_id"], emoji="👍")
        self.assertEqual(again, {**removed})
        twice = await bob.call("add_reaction", message_id=sent["message_id"], emoji="👍")
        self.assertEqual(twice["reactions"], removed["reactions"])
        self.assertEqual(await bob.client.expect("reaction_updated"), twice)
        for client in (alice.client, phone):
            await client.expect_none("reaction_updated", within=0.1)
        rows = await self.rows("SELECT COUNT(*) FROM message_reactions")
        self.assertEqual(int(rows[0][0]), 3)

    @inline
    async def test_direct_reactions_name_the_chat_as_each_side_calls_it(self) -> None:
        alice, bob = await self.pair()
        sent = await self.send(alice, bob.id, "hi")
        added = await bob.call("add_reaction", message_id=sent["message_id"], emoji="❤️")
        self.assertEqual((added["chat_id"], added["is_group"]), (alice.id, False))
        self.assertEqual((await alice.client.expect("reaction_updated"))["chat_id"], bob.id)

    @inline
    async def test_bad_emoji_too_many_reactions_outsiders_and_blocks_are_refused(self) -> None:
        alice, bob = await self.pair()
        carol = await self.person("carol")
        sent = await self.send(alice, bob.id, "react to me")
        message_id = sent["message_id"]
        for i in range(20):
            self.assertNotIn("error", await bob.call("add_reaction", message_id=message_id, emoji=f"e{i}"))
        await self.drain(alice, bob, carol)
        before = await self.snapshot()
        bad = "Invalid 'emoji': expected 1 to 32 characters with no whitespace"
        for emoji in ("", "a b", "x" * 33, "tab\t", "\n", "\u00a0"):
            await self.refused(alice, "add_reaction", bad, message_id=message_id, emoji=emoji)
        await self.refused(
            bob,
            "add_reaction",
            "Too many reactions: at most 20 different ones per message",
            message_id=message_id,
            emoji="e20",
        )
        await self.refused(carol, "add_reaction", "Message not found", message_id=message_id, emoji="👍")
        await self.refused(carol, "remove_reaction", "Message not found", message_id=message_id, emoji="e1")
        await self.refused(alice, "add_reaction", "Message not found", message_id=MISSING, emoji="👍")
        self.assertEqual(await self.snapshot(), before)
        await alice.client.expect_none("reaction_updated", within=0.1)
        # Someone else still may; an emoji already there is no new one.
        self.assertNotIn("error", await alice.call("add_reaction", message_id=message_id, emoji="e20"))
        self.assertNotIn("error", await bob.call("add_reaction", message_id=message_id, emoji="e3"))
        await bob.call("block_contact", contact_id=alice.id)
        await self.refused(
            bob, "add_reaction", "You have blocked this user: unblock them to react", message_id=message_id, emoji="x"
        )
        await self.refused(
            alice, "add_reaction", "You can only react in chats with your friends", message_id=message_id, emoji="x"
        )
        await alice.call("delete_message", message_id=message_id)
        await self.refused(alice, "remove_reaction", "Message not found", message_id=message_id, emoji="e20")


# -- mentions -------------------------------------------------------------------


class MentionTestsMixin(MessagingCase):
    @inline
    async def test_mentions_count_until_read_and_show_on_messages(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        sent = await self.send(bob, gid, "@carol @alice look", is_group=True, mentions=[carol.id, alice.id, carol.id])
        self.assertEqual(sent["mentions"], sorted([alice.id, carol.id]))
        self.assertEqual((await carol.client.expect("new_message"))["mentions"], sent["mentions"])
        other = await self.send(bob, gid, "@carol again", is_group=True, mentions=[carol.id])
        await self.send(bob, gid, "nobody", is_group=True)
        self_mention = await self.send(bob, gid, "me", is_group=True, mentions=[bob.id])
        # One row per mention of someone else, none per member.
        self.assertEqual(int((await self.rows("SELECT COUNT(*) FROM unread_mentions"))[0][0]), 3)

        def group_entry(chats: list[dict[str, Any]]) -> dict[str, Any]:
            return [c for c in chats if c["is_group"]][0]

        self.assertEqual(group_entry(await carol.call("get_chats"))["mention_count"], 2)
        self.assertEqual(group_entry(await alice.call("get_chats"))["mention_count"], 1)
        self.assertEqual(group_entry(await bob.call("get_chats"))["mention_count"], 0)
        self.assertEqual((await carol.call("get_chat_info", chat_id=gid, is_group=True))["mention_count"], 2)
        history = await carol.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual(
            [m["mentions"] for m in history["messages"]], [sorted([alice.id, carol.id]), [carol.id], [], [bob.id]]
        )
        self.assertEqual(self_mention["mentions"], [bob.id])
        # Read receipts clear them as they clear unread counts.
        await carol.call("read_receipt", message_ids=[sent["message_id"]], sender_id=bob.id)
        entry = group_entry(await carol.call("get_chats"))
        self.assertEqual((entry["mention_count"], entry["unread_count"]), (1, 3))
        await carol.call("read_receipt", message_ids=[other["message_id"]], sender_id=bob.id)
        self.assertEqual(group_entry(await carol.call("get_chats"))["mention_count"], 0)
        # A deleted message's mention no longer counts.
        self.assertEqual(group_entry(await alice.call("get_chats"))["mention_count"], 1)
        await bob.call("delete_message", message_id=sent["message_id"])
        self.assertEqual(group_entry(await alice.call("get_chats"))["mention_count"], 0)

    @inline
    async def test_direct_mentions_and_mentions_of_outsiders(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        sent = await self.send(alice, bob.id, "hey @bob", mentions=[bob.id])
        self.assertEqual(sent["mentions"], [bob.id])
        direct = [c for c in await bob.call("get_chats") if not c["is_group"]][0]
        self.assertEqual((direct["id"], direct["mention_count"]), (alice.id, 1))
        self.assertEqual((await bob.call("get_chat_info", chat_id=alice.id))["mention_count"], 1)
        await self.drain(alice, bob, carol, dave)
        before = await self.snapshot()
        await self.refused(
            alice,
            "send_message",
            f"Invalid 'mentions': user {dave.id} is not a member of this chat",
            recipient_id=gid,
            is_group=True,
            content="x",
            mentions=[bob.id, dave.id],
        )
        await self.refused(
            alice,
            "send_message",
            f"Invalid 'mentions': user {carol.id} is not a member of this chat",
            recipient_id=bob.id,
            content="x",
            mentions=[carol.id],
        )
        await self.refused(
            alice,
            "send_message",
            "Invalid 'mentions': expected a list of at most 50 ids",
            recipient_id=bob.id,
            content="x",
            mentions=["bob"],
        )
        await self.refused(
            alice,
            "send_message",
            "Invalid 'mentions': expected a list of at most 50 ids",
            recipient_id=bob.id,
            content="x",
            mentions=list(range(1, 52)),
        )
        self.assertEqual(await self.snapshot(), before)
        await bob.client.expect_none("new_message", within=0.05)


# -- delivery receipts ---------------------------------------------------------


class DeliveryTestsMixin(MessagingCase):
    @inline
    async def test_delivery_receipts_reach_the_senders_sockets_and_show_in_their_history(self) -> None:
        alice, bob = await self.pair()
        phone = await self.second_socket(alice)
        first = await self.send(alice, bob.id, "one")
        second = await self.send(alice, bob.id, "two")
        await self.drain(alice, bob)
        phone.drain_all()
        ids = [first["message_id"], second["message_id"]]
        ack = await bob.call("message_delivered", message_ids=ids)
        self.assertEqual(ack, {"message_ids": ids})
        delivered = await alice.client.expect("messages_delivered")
        self.assertEqual(
            {k: v for k, v in delivered.items() if k != "delivered_at"},
            {"chat_id": bob.id, "is_group": False, "user_id": bob.id, "message_ids": ids},
        )
        self.assertRegex(delivered["delivered_at"], ISO)
        self.assertEqual(await phone.expect("messages_delivered"), delivered)
        await bob.client.expect_none("messages_delivered", within=0.05)
        history = await alice.call("get_chat_history", chat_id=bob.id)
        self.assertEqual([m["delivered_at"] for m in history["messages"]], [delivered["delivered_at"]] * 2)
        # The recipient's view has no delivery times of others' messages.
        self.assertNotIn("delivered_at", (await bob.call("get_chat_history", chat_id=alice.id))["messages"][0])
        # A direct message is reported once.
        self.assertEqual(await bob.call("message_delivered", message_ids=ids), {"message_ids": []})
        await alice.client.expect_none("messages_delivered", within=0.1)

    @inline
    async def test_group_receipts_are_relayed_live_to_the_sender_and_kept_per_member(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        sent = await self.send(alice, gid, "hello team", is_group=True)
        rows_before = await self.snapshot()
        await carol.call("message_delivered", message_ids=[sent["message_id"]])
        delivered = await alice.client.expect("messages_delivered")
        self.assertEqual(
            (delivered["chat_id"], delivered["is_group"], delivered["user_id"], delivered["message_ids"]),
            (gid, True, carol.id, [sent["message_id"]]),
        )
        await bob.client.expect_none("messages_delivered", within=0.05)
        # One row for the member who reported it (for get_read_receipts), none for the others.
        after = await self.snapshot()
        self.assertEqual([int(r["user_id"]) for r in after.pop("message_deliveries")], [carol.id])
        rows_before.pop("message_deliveries")
        self.assertEqual(after, rows_before)

    @inline
    async def test_the_privacy_setting_stops_receipts_and_refusals_change_nothing(self) -> None:
        alice, bob = await self.pair()
        carol = await self.person("carol")
        phone = await self.second_socket(bob)
        sent = await self.send(alice, bob.id, "one")
        self.assertEqual(await bob.call("update_settings"), {"send_delivery_receipts": True})
        off = await bob.call("update_settings", send_delivery_receipts=False)
        self.assertEqual(off, {"send_delivery_receipts": False})
        self.assertEqual(await phone.expect("settings_updated"), {"send_delivery_receipts": True})
        self.assertEqual(await phone.expect("settings_updated"), off)
        await self.drain(alice, bob)
        self.assertEqual(await bob.call("message_delivered", message_ids=[sent["message_id"]]), {"message_ids": []})
        await alice.client.expect_none("messages_delivered", within=0.1)
        self.assertIsNone((await alice.call("get_chat_history", chat_id=bob.id))["messages"][0]["delivered_at"])
        before = await self.snapshot()
        for who, ids in ((alice, [sent["message_id"]]), (carol, [sent["message_id"]]), (bob, [MISSING])):
            await self.refused(who, "message_delivered", "Message not found", message_ids=ids)
        await self.refused(
            bob,
            "update_settings",
            "Invalid 'send_delivery_receipts': expected true or false",
            send_delivery_receipts="no",
        )
        self.assertEqual(await self.snapshot(), before)


# -- unblock and remove ---------------------------------------------------------


class ContactV2TestsMixin(MessagingCase):
    @inline
    async def test_remove_contact_tells_both_sides_stops_messages_and_keeps_history(self) -> None:
        alice, bob = await self.pair()
        phone = await self.second_socket(bob)
        sent = await self.send(alice, bob.id, "before")
        await self.drain(alice, bob)
        removed = await alice.call("remove_contact", contact_id=bob.id)
        self.assertEqual(removed, {"user_id": bob.id})
        self.assertEqual(await alice.client.expect("contact_removed"), removed)
        self.assertEqual(await bob.client.expect("contact_removed"), {"user_id": alice.id})
        self.assertEqual(await phone.expect("contact_removed"), {"user_id": alice.id})
        self.assertEqual((await alice.call("get_contacts"))["contacts"], [])
        self.assertEqual((await bob.call("get_contacts"))["contacts"], [])
        for sender, recipient in ((alice, bob), (bob, alice)):
            await self.refused(sender, "send_message", NOT_FRIENDS, recipient_id=recipient.id, content="x")
            history = await sender.call("get_chat_history", chat_id=recipient.id)
            self.assertEqual([m["message_id"] for m in history["messages"]], [sent["message_id"]])
            self.assertEqual([c["id"] for c in await sender.call("get_chats")], [recipient.id])
            info = await sender.call("get_chat_info", chat_id=recipient.id)
            self.assertEqual((info["status"], info["is_online"]), (None, False))
        await self.refused(alice, "remove_contact", "This user is not your contact", contact_id=bob.id)
        # Friends again: the same chat goes on.
        await self.befriend(bob, alice)
        await self.send(bob, alice.id, "after")
        history = await alice.call("get_chat_history", chat_id=bob.id)
        self.assertEqual([m["content"] for m in history["messages"]], ["before", "after"])

    @inline
    async def test_remove_contact_withdraws_a_pending_request(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await alice.call("add_contact", contact_username="bob")
        self.assertEqual(await alice.call("remove_contact", contact_id=bob.id), {"user_id": bob.id})
        self.assertEqual((await bob.call("get_contacts"))["contacts"], [])
        self.assertEqual(
            await bob.call("accept_contact", contact_id=alice.id),
            {"error": "No pending contact request from this user", "code": "not_found"},
        )

    @inline
    async def test_unblock_tells_only_the_unblocker_and_leaves_strangers(self) -> None:
        alice, bob = await self.pair()
        carol = await self.person("carol")
        await alice.call("block_contact", contact_id=bob.id)
        await self.refused(
            alice, "remove_contact", "You have blocked this user: use unblock_contact", contact_id=bob.id
        )
        await self.drain(alice, bob)
        unblocked = await alice.call("unblock_contact", contact_id=bob.id)
        self.assertEqual(unblocked, {"user_id": bob.id, "username": "bob"})
        self.assertEqual(await alice.client.expect("contact_unblocked"), unblocked)
        await bob.client.expect_none("contact_unblocked", within=0.1)
        self.assertEqual((await alice.call("get_contacts"))["contacts"], [])
        await self.refused(bob, "send_message", NOT_FRIENDS, recipient_id=alice.id, content="x")
        before = await self.snapshot()
        await self.refused(alice, "unblock_contact", "This user is not blocked", contact_id=bob.id)
        await self.refused(alice, "unblock_contact", "This user is not blocked", contact_id=carol.id)
        await self.refused(alice, "unblock_contact", "User not found", contact_id=99999)
        await self.refused(alice, "remove_contact", "This user is not your contact", contact_id=carol.id)
        self.assertEqual(await self.snapshot(), before)
        # A block the other made stays in place.
        await bob.call("block_contact", contact_id=alice.id)
        await alice.call("block_contact", contact_id=bob.id)
        await alice.call("unblock_contact", contact_id=bob.id)
        self.assertEqual(
            await alice.call("add_contact", contact_username="bob"),
            {"error": "You cannot add this user", "code": "forbidden"},
        )
        await bob.call("unblock_contact", contact_id=alice.id)
        await self.befriend(alice, bob)
        await self.send(alice, bob.id, "friends again")


# -- profiles -------------------------------------------------------------------


class ProfileTestsMixin(MessagingCase):
    async def upload_image(
        self, owner: Person, chat_id: int, is_group: bool = False, file_type: str = "image/png"
    ) -> str:
        return (await self.upload(owner, b"\x89PNG", file_type=file_type, recipient_id=chat_id, is_group=is_group))[
            "file_id"
        ]

    @inline
    async def test_profile_updates_reach_self_and_contacts_and_show_everywhere(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        erin = await self.person("erin")
        phone = await self.second_socket(alice)
        await self.drain(alice, bob, carol, dave)
        updated = await alice.call("update_profile", display_name="  Alice A. ", status_text="On holiday")
        self.assertEqual(
            updated,
            {
                "user_id": alice.id,
                "username": "alice",
                "display_name": "Alice A.",
                "status_text": "On holiday",
                "avatar_url": None,
            },
        )
        for client in (alice.client, phone, bob.client, carol.client, dave.client):
            self.assertEqual(await client.expect("profile_updated"), updated)
        await erin.client.expect_none("profile_updated", within=0.1)
        self.assertEqual(await bob.call("get_profile", user_id=alice.id), updated)
        self.assertEqual(await bob.client.expect("profile"), updated)
        await self.refused(erin, "get_profile", "User not found", user_id=alice.id)
        await self.refused(erin, "get_profile", "User not found", user_id=99999)
        # One's own profile says whether one is a server administrator; nobody else's does.
        self.assertEqual(await alice.call("get_profile", user_id=alice.id), {**updated, "is_admin": False})
        await self.storage.admin.set_admin(alice.id, True)
        self.assertTrue((await alice.call("get_profile", user_id=alice.id))["is_admin"])
        self.assertNotIn("is_admin", await bob.call("get_profile", user_id=alice.id))

        sent = await self.send(alice, bob.id, "hi")
        self.assertEqual((sent["display_name"], sent["avatar_url"]), ("Alice A.", None))
        contact = (await bob.call("get_contacts"))["contacts"]
        self.assertEqual([(c["username"], c["display_name"]) for c in contact], [("alice", "Alice A.")])
        direct = [c for c in await bob.call("get_chats") if not c["is_group"]][0]
        self.assertEqual(direct["display_name"], "Alice A.")
        self.assertEqual((await bob.call("get_chat_info", chat_id=alice.id))["display_name"], "Alice A.")
        members = (await bob.call("get_chat_info", chat_id=gid, is_group=True))["members"]
        self.assertEqual([m["display_name"] for m in members], ["Alice A.", None, None])
        history = await bob.call("get_chat_history", chat_id=alice.id)
        self.assertEqual(history["messages"][0]["display_name"], "Alice A.")
        # Group co-members who are not contacts see the profile too (bob and carol are not friends).
        self.assertEqual((await carol.call("get_profile", user_id=bob.id))["username"], "bob")
        # "" clears a field; null leaves it alone.
        cleared = await alice.call("update_profile", display_name="", status_text=None)
        self.assertEqual((cleared["display_name"], cleared["status_text"]), (None, "On holiday"))

    @inline
    async def test_an_avatar_is_an_uploaded_image_served_to_contacts_and_co_members_only(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        erin = await self.person("erin")
        file_id = await self.upload_image(alice, bob.id)
        updated = await alice.call("update_profile", avatar_file_id=file_id)
        url = f"/api/files/{file_id}"
        self.assertEqual(updated["avatar_url"], url)
        sent = await self.send(alice, gid, "hi", is_group=True)
        self.assertEqual(sent["avatar_url"], url)
        self.assertEqual((await bob.call("get_contacts"))["contacts"][0]["avatar_url"], url)
        for who in (alice, bob, carol, dave):
            self.assertEqual(await self.download(url, who), 200, who.name)
        self.assertEqual(await self.download(url, erin), 404)
        # The avatar outlives the upload's expiry: it is never purged as abandoned.
        self.assertEqual(await self.server.services.files.purge_expired(), 0)
        self.assertEqual(len(await self.rows("SELECT id FROM files WHERE id = ?", file_id)), 1)
        cleared = await alice.call("update_profile", avatar_file_id="")
        self.assertIsNone(cleared["avatar_url"])
        self.assertEqual(await self.download(url, dave), 404)

    @inline
    async def test_an_avatar_needs_no_chat_and_is_never_a_message(self) -> None:
        erin = await self.person("erin")  # no contacts, no groups
        ready = await self.upload(erin, b"\x89PNG", purpose="avatar")
        # It was prepared for no chat: it cannot be posted anywhere.
        frank = await self.person("frank")
        await self.befriend(erin, frank)
        await self.drain(erin, frank)
        await self.refused(
            erin,
            "upload_file_complete",
            "The file was prepared for another chat",
            file_id=ready["file_id"],
            recipient_id=frank.id,
            is_group=False,
            file_name="me.png",
            file_type="image/png",
        )
        updated = await erin.call("update_profile", avatar_file_id=ready["file_id"])
        url = updated["avatar_url"]
        self.assertEqual(url, f"/api/files/{ready['file_id']}")
        self.assertEqual(await self.download(url, frank), 200)
        self.assertEqual(await self.download(url, await self.person("gina")), 404)
        await self.refused(
            erin,
            "upload_file_prepare",
            "An avatar must be an image: 'text/plain' is not an allowed image type",
            purpose="avatar",
            file_name="a.txt",
            file_size=4,
            file_type="text/plain",
        )
        await self.refused(
            erin,
            "upload_file_prepare",
            "Missing 'recipient_id' or 'is_group' (only an avatar needs no chat)",
            file_name="a.png",
            file_size=4,
            file_type="image/png",
        )
        await self.refused(
            erin,
            "upload_file_prepare",
            "Invalid 'purpose': expected one of message, avatar",
            purpose="banner",
            file_name="a.png",
            file_size=4,
            file_type="image/png",
        )

    @inline
    async def test_refused_profile_updates_change_nothing(self) -> None:
        alice, bob = await self.pair()
        theirs = await self.upload_image(bob, alice.id)
        text_file = await self.upload_image(alice, bob.id, file_type="text/plain")
        pending = await alice.call(
            "upload_file_prepare",
            recipient_id=bob.id,
            is_group=False,
            file_name="a.png",
            file_size=4,
            file_type="image/png",
        )
        await self.drain(alice, bob)
        before = await self.snapshot()
        for payload, message in [
            ({}, "Nothing to update: give 'display_name', 'status_text', 'avatar_file_id' or 'extra'"),
            ({"display_name": "two\nlines"}, "Invalid 'display_name': no control characters or line breaks allowed"),
            ({"display_name": "x" * 65}, "Invalid 'display_name': expected a string of at most 64 characters"),
            ({"status_text": "x" * 201}, "Invalid 'status_text': expected a string of at most 200 characters"),
            ({"avatar_file_id": theirs}, "Invalid 'avatar_file_id': unknown file"),
            ({"avatar_file_id": MISSING}, "Invalid 'avatar_file_id': unknown file"),
            ({"avatar_file_id": "nope"}, "Invalid 'avatar_file_id': expected a UUID string"),
            ({"avatar_file_id": text_file}, "Invalid 'avatar_file_id': an avatar must be an image"),
            ({"avatar_file_id": pending["file_id"]}, "Invalid 'avatar_file_id': the file has not arrived whole yet"),
        ]:
            await self.refused(alice, "update_profile", message, **payload)
        self.assertEqual(await self.snapshot(), before)
        await bob.client.expect_none("profile_updated", within=0.1)


# -- who sees a profile (issue 22, G13) ------------------------------------------


class ProfileVisibilityTestsMixin(MessagingCase):
    """A contact request nobody answered shows its two sides each other's name, never their profiles."""

    @inline
    async def test_an_unanswered_contact_request_shows_no_profile_either_way(self) -> None:
        alice, mallory = await self.person("alice"), await self.person("mallory")
        ready = await self.upload(alice, b"\x89PNG", purpose="avatar")
        mine = await alice.call("update_profile", display_name="Alice A.", avatar_file_id=ready["file_id"])
        await mallory.call("update_profile", display_name="Mal")
        self.assertEqual((await mallory.call("add_contact", contact_username="alice"))["status"], "NEW")
        self.assertEqual(await alice.client.expect("contact_request"), {"user_id": mallory.id, "username": "mallory"})
        phone = await self.connect(mallory.login)
        cursor = (await phone.expect("connection_successful"))["cursor"]
        await self.drain(alice, mallory)

        await self.refused(mallory, "get_profile", "User not found", user_id=alice.id)
        await self.refused(alice, "get_profile", "User not found", user_id=mallory.id)
        self.assertEqual(await self.download(mine["avatar_url"], mallory), 404)
        for viewer, other in ((mallory, alice), (alice, mallory)):
            (entry,) = (await viewer.call("get_contacts"))["contacts"]
            self.assertEqual(
                (entry["user_id"], entry["username"], entry["status"], entry["display_name"], entry["avatar_url"]),
                (other.id, other.name, "NEW", None, None),
            )
        changed = await alice.call("update_profile", status_text="in Lisbon")
        self.assertEqual(await alice.client.expect("profile_updated"), changed)
        await mallory.client.expect_none("profile_updated", within=0.2)
        synced = await mallory.call("sync", cursor=cursor, limit=500)
        self.assertEqual([c for c in synced["changes"] if c["kind"] == "profile"], [])

        # Once accepted, each sees the other's profile.
        await alice.call("accept_contact", contact_id=mallory.id)
        self.assertEqual((await mallory.call("get_profile", user_id=alice.id))["display_name"], "Alice A.")
        self.assertEqual((await alice.call("get_profile", user_id=mallory.id))["display_name"], "Mal")
        self.assertEqual(await self.download(mine["avatar_url"], mallory), 200)


# -- invisible characters (issue 22, G12) -------------------------------------------


class InvisibleCharacterTestsMixin(MessagingCase):
    """Names and reactions others see refuse characters that draw nothing or turn text around."""

    HIDDEN = (
        ("a\u200bb", "200B"),  # zero-width space
        ("\u200e", "200E"),  # left-to-right mark
        ("ab\u200f", "200F"),  # right-to-left mark
        ("\u202eevil", "202E"),  # right-to-left override
        ("x\u2066y\u2069", "2066"),  # isolates
        ("\ufeffhi", "FEFF"),  # byte order mark
        ("w\u2060j", "2060"),  # word joiner
        ("\u2064", "2064"),  # invisible plus
        ("\U000e0041", "E0041"),  # a tag outside an emoji tag sequence
        ("a\u200db", "200D"),  # ZWJ between letters
        ("\u3164", "3164"),  # Hangul filler
    )

    @inline
    async def test_invisible_and_direction_changing_characters_are_refused(self) -> None:
        alice, bob = await self.pair()
        message_id = (await self.send(alice, bob.id, "react to me"))["message_id"]
        await self.drain(alice, bob)
        before = await self.snapshot()
        for text, code in self.HIDDEN:
            message = f"invisible or direction-changing characters are not allowed (U+{code})"
            await self.refused(alice, "add_reaction", f"Invalid 'emoji': {message}", message_id=message_id, emoji=text)
            await self.refused(alice, "update_profile", f"Invalid 'display_name': {message}", display_name=text)
        self.assertEqual(await self.snapshot(), before)
        await bob.client.expect_none("reaction_updated", within=0.1)
        await bob.client.expect_none("profile_updated", within=0.1)

    @inline
    async def test_emoji_sequences_and_scripts_that_need_joiners_are_accepted(self) -> None:
        alice, bob = await self.pair()
        message_id = (await self.send(alice, bob.id, "react to me"))["message_id"]
        england = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
        for emoji in ("👨\u200d👩\u200d👧", "🏳️\u200d🌈", "👩🏽\u200d💻", england, "❤️"):
            answer = await bob.call("add_reaction", message_id=message_id, emoji=emoji)
            self.assertEqual(answer.get("emoji"), emoji)
        for name in ("می\u200cخواهم", "Alice 👩\u200d💻"):
            self.assertEqual((await alice.call("update_profile", display_name=name))["display_name"], name)


for mixin in (
    EditTestsMixin,
    NoEditWindowTestsMixin,
    ReplyTestsMixin,
    ReactionTestsMixin,
    MentionTestsMixin,
    DeliveryTestsMixin,
    ContactV2TestsMixin,
    ProfileTestsMixin,
    InvisibleCharacterTestsMixin,
    ProfileVisibilityTestsMixin,
):
    for_each_backend(mixin, InProcessChatCase, globals())
del mixin
