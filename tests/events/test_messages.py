"""Direct chats over real sockets: send, list, history, reads, deletes, typing, streaks, restart."""

from __future__ import annotations

import json
import re
import uuid

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.fakes import FakeSocket
from tests.support.inprocess import InProcessChatCase
from tests.support.node import NodeTestCase
from umoc.domain.access import require_writable_chat
from umoc.domain.commands import messages
from umoc.domain.notices import shapes
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.messages import NewMessage

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
NEW_MESSAGE_KEYS = {
    "message_id",
    "sender_id",
    "sender_username",
    "recipient_id",
    "content",
    "type",
    "timestamp",
    "is_group",
    "display_name",
    "avatar_url",
    "reply_to",
    "mentions",
    "edited_at",
    "reactions",
}


class DirectMessageTestsMixin:
    config_overrides = {"messages": {"max_content_length": 200}}

    async def pair(self):
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        return alice, bob

    async def send(self, sender, recipient, content="hello", **extra):
        answer = await sender.call(
            "send_message", recipient_id=recipient.id, content=content, is_group=False, type="text", **extra
        )
        self.assertNotIn("error", answer)
        return answer

    @inline
    async def test_new_message_reaches_every_socket_of_both_users(self) -> None:
        alice, bob = await self.pair()
        alice_phone = await self.second_socket(alice)
        sent = await self.send(alice, bob, "Hello there!")
        self.assertEqual(set(sent), NEW_MESSAGE_KEYS)
        uuid.UUID(sent["message_id"])
        self.assertEqual(
            {k: v for k, v in sent.items() if k not in ("message_id", "timestamp")},
            {
                "sender_id": alice.id,
                "sender_username": "alice",
                "recipient_id": bob.id,
                "content": "Hello there!",
                "type": "text",
                "is_group": False,
                "display_name": None,
                "avatar_url": None,
                "reply_to": None,
                "mentions": [],
                "edited_at": None,
                "reactions": [],
            },
        )
        self.assertRegex(sent["timestamp"], ISO)
        for client in (alice.client, alice_phone, bob.client):
            self.assertEqual(await client.expect("new_message"), sent)
        # Committed before anyone was told: the history already holds it.
        history = await bob.call("get_chat_history", chat_id=alice.id)
        self.assertEqual([m["message_id"] for m in history["messages"]], [sent["message_id"]])

    @inline
    async def test_chats_history_reads_and_unread_counts(self) -> None:
        alice, bob = await self.pair()
        first = await self.send(alice, bob, "one")
        second = await self.send(alice, bob, "two")
        reply = await self.send(bob, alice, "three")

        chats = await bob.call("get_chats")
        self.assertEqual(await bob.client.expect("chats"), chats)
        self.assertEqual(
            chats,
            [
                {
                    "id": alice.id,
                    "username": "alice",
                    "status": "online",
                    "last_seen": None,
                    "last_message": {
                        "message_id": reply["message_id"],
                        "sender_id": bob.id,
                        "sender_username": "bob",
                        "content": "three",
                        "type": "text",
                        "timestamp": reply["timestamp"],
                        "edited_at": None,
                    },
                    "unread_count": 2,
                    "mention_count": 0,
                    "is_group": False,
                    "display_name": None,
                    "avatar_url": None,
                }
            ],
        )
        self.assertEqual((await alice.call("get_chats"))[0]["unread_count"], 1)

        history = await bob.call("get_chat_history", chat_id=alice.id, is_group=False)
        self.assertEqual(await bob.client.expect("chat_history"), history)
        self.assertEqual(
            {k: v for k, v in history.items() if k != "messages"},
            {"chat_id": alice.id, "is_group": False, "page": 1, "total_pages": 1, "total_messages": 3},
        )
        self.assertEqual([m["content"] for m in history["messages"]], ["one", "two", "three"])
        self.assertEqual(
            history["messages"][0],
            {
                "message_id": first["message_id"],
                "sender_id": alice.id,
                "sender_username": "alice",
                "content": "one",
                "type": "text",
                "timestamp": first["timestamp"],
                "is_read": False,
                "display_name": None,
                "avatar_url": None,
                "reply_to": None,
                "mentions": [],
                "edited_at": None,
                "reactions": [],
            },
        )

        ids = [first["message_id"], second["message_id"]]
        receipt = await bob.call("read_receipt", message_ids=ids, sender_id=alice.id)
        self.assertEqual(set(receipt), {"reader_id", "reader_username", "message_ids", "timestamp"})
        self.assertEqual(
            (receipt["reader_id"], receipt["reader_username"], receipt["message_ids"]), (bob.id, "bob", ids)
        )
        self.assertEqual(await alice.client.expect("messages_read"), receipt)
        await bob.client.expect_none("messages_read", within=0.1)
        self.assertEqual((await bob.call("get_chats"))[0]["unread_count"], 0)
        # Reading twice changes nothing.
        await bob.call("read_receipt", message_ids=ids, sender_id=alice.id)
        self.assertEqual((await bob.call("get_chats"))[0]["unread_count"], 0)
        seen_by_alice = await alice.call("get_chat_history", chat_id=bob.id, is_group=False)
        self.assertEqual([m["is_read"] for m in seen_by_alice["messages"]], [True, True, False])

    @inline
    async def test_delete_leaves_history_last_message_and_unread_counts(self) -> None:
        alice, bob = await self.pair()
        first = await self.send(alice, bob, "keep")
        second = await self.send(alice, bob, "oops")
        deleted = await alice.call("delete_message", message_id=second["message_id"])
        self.assertEqual(set(deleted), {"message_id", "sender_id", "timestamp", "deleted_by"})
        self.assertEqual((deleted["message_id"], deleted["sender_id"]), (second["message_id"], alice.id))
        self.assertRegex(deleted["timestamp"], ISO)
        self.assertEqual(await bob.client.expect("message_deleted"), deleted)
        self.assertEqual(await alice.client.expect("message_deleted"), deleted)
        chat = (await bob.call("get_chats"))[0]
        self.assertEqual((chat["unread_count"], chat["last_message"]["message_id"]), (1, first["message_id"]))
        history = await bob.call("get_chat_history", chat_id=alice.id)
        self.assertEqual(([m["content"] for m in history["messages"]], history["total_messages"]), (["keep"], 1))
        await alice.call("delete_message", message_id=first["message_id"])
        chat = (await bob.call("get_chats"))[0]
        self.assertEqual((chat["unread_count"], chat["last_message"]), (0, None))
        row = await self.rows("SELECT deleted_at FROM messages WHERE id = ?", second["message_id"])
        self.assertIsNotNone(row[0][0])
        # A deleted message cannot be deleted again or marked read.
        self.assertIn("error", await alice.call("delete_message", message_id=second["message_id"]))

    @inline
    async def test_history_pages_newest_first_oldest_first_inside(self) -> None:
        alice, bob = await self.pair()
        for i in range(25):
            await self.send(alice, bob, f"m{i}")
        page1 = await bob.call("get_chat_history", chat_id=alice.id, is_group=False, page=1, page_size=10)
        page3 = await bob.call("get_chat_history", chat_id=alice.id, is_group=False, page=3, page_size=10)
        self.assertEqual([m["content"] for m in page1["messages"]], [f"m{i}" for i in range(15, 25)])
        self.assertEqual([m["content"] for m in page3["messages"]], [f"m{i}" for i in range(5)])
        self.assertEqual((page1["total_pages"], page1["total_messages"], page3["page"]), (3, 25, 3))
        default = await bob.call("get_chat_history", chat_id=alice.id)
        self.assertEqual(len(default["messages"]), 20)
        # Pages past the middle are read from the other end: same answer.
        page2 = await bob.call("get_chat_history", chat_id=alice.id, page=2, page_size=10)
        self.assertEqual([m["content"] for m in page2["messages"]], [f"m{i}" for i in range(5, 15)])
        page4 = await bob.call("get_chat_history", chat_id=alice.id, page=4, page_size=5)
        self.assertEqual([m["content"] for m in page4["messages"]], [f"m{i}" for i in range(5, 10)])
        beyond = await bob.call("get_chat_history", chat_id=alice.id, page=9, page_size=10)
        self.assertEqual((beyond["messages"], beyond["total_pages"]), ([], 3))

    @inline
    async def test_encrypted_content_is_stored_and_relayed_untouched(self) -> None:
        alice, bob = await self.pair()
        cipher = "AAEC+/==" * 10
        sent = await self.send(alice, bob, "[encrypted]", encrypted_content=cipher)
        self.assertEqual(sent["encrypted_content"], cipher)
        self.assertEqual((await bob.client.expect("new_message"))["encrypted_content"], cipher)
        history = await bob.call("get_chat_history", chat_id=alice.id)
        self.assertEqual(history["messages"][0]["encrypted_content"], cipher)

    @inline
    async def test_non_text_message_carries_json_metadata(self) -> None:
        alice, bob = await self.pair()
        meta = json.dumps({"file_id": str(uuid.uuid4()), "file_name": "a.png"})
        sent = await alice.call("send_message", recipient_id=bob.id, content=meta, is_group=False, type="image")
        self.assertEqual((sent["type"], sent["content"]), ("image", meta))
        answer = await alice.call("send_message", recipient_id=bob.id, content="not json", is_group=False, type="image")
        self.assertIn("JSON", answer["error"])

    @inline
    async def test_typing_indicator_goes_to_the_friend_only(self) -> None:
        alice, bob = await self.pair()
        carol = await self.person("carol")
        answer = await alice.call("typing", recipient_id=bob.id, is_typing=True, is_group=False)
        self.assertEqual(answer, {"ok": True})
        indicator = await bob.client.expect("typing_indicator")
        self.assertEqual(set(indicator), {"user_id", "username", "is_typing", "timestamp"})
        self.assertEqual(
            (indicator["user_id"], indicator["username"], indicator["is_typing"]), (alice.id, "alice", True)
        )
        self.assertIsInstance(indicator["timestamp"], float)
        answer = await alice.call("typing", recipient_id=carol.id, is_typing=True, is_group=False)
        self.assertIn("friends", answer["error"])
        await carol.client.expect_none("typing_indicator")
        await alice.client.expect_none("typing_indicator", within=0)

    @inline
    async def test_streak_and_chat_info_for_a_direct_chat(self) -> None:
        alice, bob = await self.pair()
        await self.send(alice, bob)
        info = await alice.call("get_chat_info", chat_id=bob.id, is_group=False)
        self.assertEqual(await alice.client.expect("chat_info"), info)
        self.assertEqual(
            info,
            {
                "id": bob.id,
                "username": "bob",
                "is_online": True,
                "last_seen": None,
                "status": "FRIEND",
                "is_group": False,
                "streak": 0,
                "continue_streak": False,
                "display_name": None,
                "avatar_url": None,
                "mention_count": 0,
            },
        )
        await self.send(bob, alice)
        info = await alice.call("get_chat_info", chat_id=bob.id, is_group=False)
        self.assertEqual((info["streak"], info["continue_streak"]), (1, True))
        contact = (await bob.call("get_contacts"))["contacts"][0]
        self.assertEqual((contact["streak"], contact["continue_streak"]), (1, True))

    @inline
    async def test_refused_message_events_answer_error_and_change_nothing(self) -> None:
        alice, bob = await self.pair()
        carol = await self.person("carol")
        to_bob = await self.send(alice, bob, "for bob")
        before = await self.snapshot()
        cases = [
            (
                carol,
                "send_message",
                {"recipient_id": alice.id, "content": "hi", "is_group": False, "type": "text"},
                "friends",
            ),
            (alice, "send_message", {"recipient_id": alice.id, "content": "hi"}, "yourself"),
            (alice, "send_message", {"recipient_id": 99999, "content": "hi"}, "friends"),
            (alice, "send_message", {"recipient_id": str(bob.id), "content": "hi"}, "recipient_id"),
            (alice, "send_message", {"recipient_id": bob.id, "content": 5}, "content"),
            (alice, "send_message", {"recipient_id": bob.id, "content": ""}, "content"),
            (alice, "send_message", {"recipient_id": bob.id, "content": "x" * 201}, "content"),
            (alice, "send_message", {"recipient_id": bob.id, "content": "hi", "is_group": "no"}, "is_group"),
            (alice, "send_message", {"recipient_id": bob.id, "content": "hi", "type": "gif"}, "type"),
            (alice, "send_message", {"recipient_id": bob.id, "content": "hi", "is_group": True}, "Unknown chat"),
            (bob, "delete_message", {"message_id": to_bob["message_id"]}, "not found"),
            (carol, "delete_message", {"message_id": to_bob["message_id"]}, "not found"),
            (alice, "delete_message", {"message_id": "not-a-uuid"}, "message_id"),
            (alice, "delete_message", {"message_id": str(uuid.uuid4())}, "not found"),
            (carol, "read_receipt", {"message_ids": [to_bob["message_id"]], "sender_id": alice.id}, "not found"),
            (alice, "read_receipt", {"message_ids": [to_bob["message_id"]], "sender_id": alice.id}, "not found"),
            (bob, "read_receipt", {"message_ids": [to_bob["message_id"]], "sender_id": carol.id}, "not found"),
            (
                bob,
                "read_receipt",
                {"message_ids": [to_bob["message_id"], str(uuid.uuid4())], "sender_id": alice.id},
                "not found",
            ),
            (bob, "read_receipt", {"message_ids": "all", "sender_id": alice.id}, "message_ids"),
            (carol, "get_chat_history", {"chat_id": alice.id, "is_group": False}, "Unknown chat"),
            (carol, "get_chat_info", {"chat_id": alice.id, "is_group": False}, "Unknown chat"),
            (alice, "get_chat_history", {"chat_id": bob.id, "page_size": 500}, "page_size"),
            (alice, "get_chat_history", {"chat_id": bob.id, "page": 0}, "page"),
            (alice, "get_chat_history", {"chat_id": "bob"}, "chat_id"),
            (alice, "typing", {"recipient_id": bob.id, "is_typing": "yes"}, "is_typing"),
        ]
        for person, event, payload, needle in cases:
            answer = await person.call(event, **payload)
            self.assertIn(needle, answer.get("error", ""), (person.name, event, payload, answer))
        for event in ("send_message", "get_chats", "get_chat_history", "read_receipt", "delete_message"):
            answer = await alice.client.call(
                event,
                {
                    "sessionID": str(uuid.uuid4()),
                    "recipient_id": bob.id,
                    "content": "x",
                    "chat_id": bob.id,
                    "message_ids": [to_bob["message_id"]],
                    "sender_id": bob.id,
                    "message_id": to_bob["message_id"],
                },
            )
            self.assertIn("sessionID", answer["error"], event)
        self.assertEqual(await self.snapshot(), before)
        await carol.client.expect_none("new_message", within=0.1)
        await alice.client.expect_none("messages_read", within=0)
        await bob.client.expect_none("message_deleted", within=0)
        self.assertIn("message", await carol.client.expect("error"))

    @inline
    async def test_the_send_command_and_require_writable_chat_for_other_modules(self) -> None:
        alice, bob = await self.pair()
        carol = await self.person("carol")
        services = self.server.services

        await require_writable_chat(services.storage, alice.id, bob.id, False)
        for chat_id, is_group in ((carol.id, False), (alice.id, False), (12345, True)):
            with self.assertRaises(UserError):
                await require_writable_chat(services.storage, alice.id, chat_id, is_group)
        content = json.dumps({"file_id": str(uuid.uuid4()), "file_name": "a.pdf"})
        payload = await messages.send(
            services, Actor.user(alice.id, "alice"), NewMessage(bob.id, False, content, "file")
        )
        self.assertEqual((payload["type"], payload["content"], payload["recipient_id"]), ("file", content, bob.id))
        self.assertEqual(await bob.client.expect("new_message"), payload)
        self.assertEqual(await alice.client.expect("new_message"), payload)
        with self.assertRaises(UserError):
            await messages.send(services, Actor.user(carol.id, "carol"), NewMessage(alice.id, False, "hi"))
        self.assertEqual(await self.scalar("SELECT COUNT(*) FROM messages"), 1)

    @inline
    async def test_missed_since_returns_new_message_payloads_in_order(self) -> None:
        alice, bob = await self.pair()
        first = await self.send(alice, bob, "a")
        second = await self.send(bob, alice, "b")
        third = await self.send(alice, bob, "c")
        await alice.call("delete_message", message_id=third["message_id"])
        missed = await self.server.services.storage.messages.missed_since(bob.id, 0, 10)
        self.assertEqual([shapes.new_message(m) for m in missed], [first, second])
        missed = await self.server.services.storage.messages.missed_since(bob.id, 0, 1)
        self.assertEqual([shapes.new_message(m) for m in missed], [first])


for_each_backend(DirectMessageTestsMixin, InProcessChatCase, globals())


class SendMessageHandlerTests(NodeTestCase):
    """``send_message`` in-process: the app's ``on_event`` on a `Clock`, fake sockets, real SQLite."""

    async def friends(self) -> tuple[FakeSocket, FakeSocket]:
        alice, bob = await self.connected("alice"), await self.connected("bob")
        await self.call(alice, "add_contact", contact_username="bob")
        await self.call(bob, "accept_contact", contact_id=alice.user_id)
        return alice, bob

    @inline
    async def test_message_reaches_both_users_and_the_history(self) -> None:
        alice, bob = await self.friends()
        sent = await self.call(alice, "send_message", recipient_id=bob.user_id, content="hi", is_group=False)
        self.assertEqual(set(sent), NEW_MESSAGE_KEYS)
        self.assertEqual(
            (sent["sender_id"], sent["recipient_id"], sent["content"], sent["type"]),
            (alice.user_id, bob.user_id, "hi", "text"),
        )
        self.assertRegex(sent["timestamp"], ISO)
        self.assertEqual(bob.events("new_message"), [sent])
        self.assertEqual(alice.events("new_message"), [sent])
        history = await self.call(bob, "get_chat_history", chat_id=alice.user_id)
        self.assertEqual([m["message_id"] for m in history["messages"]], [sent["message_id"]])

    @inline
    async def test_strangers_cannot_send_and_nothing_is_stored(self) -> None:
        alice, carol = await self.connected("alice"), await self.connected("carol")
        answer = await self.call(carol, "send_message", recipient_id=alice.user_id, content="hi")
        self.assertIn("friends", answer["error"])
        self.assertEqual(alice.events("new_message"), [])
        self.assertEqual(await self.db.run("test", lambda t: t.scalar("SELECT COUNT(*) FROM messages")), 0)
