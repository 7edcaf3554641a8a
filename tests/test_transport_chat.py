"""Chat events over long-polling and over polling upgraded to WebSocket, with stock python-socketio clients.

``["polling", "websocket"]`` is python-socketio's default (it starts with
long-polling and upgrades); ``["polling"]`` never upgrades, so every event
in both directions crosses held GETs and POSTed batches.
"""

from __future__ import annotations

import re
from typing import Any

from tests.chat_support import ChatCase, Person
from tests.support import for_each_backend, inline

DEFAULT = ["polling", "websocket"]
POLLING = ["polling"]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
NEW_MESSAGE_KEYS = {"message_id", "sender_id", "sender_username", "recipient_id", "content", "type", "timestamp",
                    "is_group"}


class TransportChatTestsMixin:
    async def pair(self, alice_transports: list[str], bob_transports: list[str]) -> tuple[Person, Person]:
        alice = Person(*await self.connected_user("alice", transports=alice_transports))
        bob = Person(*await self.connected_user("bob", transports=bob_transports))
        return alice, bob

    async def exchange(self, sender: Person, recipient: Person, content: str) -> dict[str, Any]:
        """send_message; both users receive the same spec-shaped new_message."""
        sent = await sender.call("send_message", recipient_id=recipient.id, content=content, is_group=False,
                                 type="text")
        self.assertEqual(set(sent), NEW_MESSAGE_KEYS, sent)
        self.assertEqual((sent["sender_id"], sent["sender_username"], sent["recipient_id"], sent["content"],
                          sent["type"], sent["is_group"]),
                         (sender.id, sender.name, recipient.id, content, "text", False))
        self.assertRegex(sent["timestamp"], ISO)
        self.assertEqual(await recipient.client.expect("new_message"), sent)
        self.assertEqual(await sender.client.expect("new_message"), sent)
        return sent

    async def walk(self, alice: Person, bob: Person) -> None:
        """Every direct-chat event, in the order a client meets them."""
        added = await alice.call("add_contact", contact_username="bob")
        self.assertEqual(added, {"user_id": bob.id, "username": "bob", "status": "NEW"})
        self.assertEqual(await alice.client.expect("contact_added"), added)
        self.assertEqual(await bob.client.expect("contact_request"), {"user_id": alice.id, "username": "alice"})
        accepted = await bob.call("accept_contact", contact_id=alice.id)
        self.assertEqual(accepted, {"user_id": alice.id, "username": "alice", "status": "FRIEND"})
        self.assertEqual(await bob.client.expect("contact_accepted"), accepted)
        self.assertEqual(await alice.client.expect("contact_accepted"),
                         {"user_id": bob.id, "username": "bob", "status": "FRIEND"})

        first = await self.exchange(alice, bob, "Hello there!")
        reply = await self.exchange(bob, alice, "Hi alice")

        receipt = await bob.call("read_receipt", message_ids=[first["message_id"]], sender_id=alice.id)
        self.assertEqual((receipt["reader_id"], receipt["reader_username"], receipt["message_ids"]),
                         (bob.id, "bob", [first["message_id"]]))
        self.assertRegex(receipt["timestamp"], ISO)
        self.assertEqual(await alice.client.expect("messages_read"), receipt)

        self.assertEqual(await alice.call("typing", recipient_id=bob.id, is_typing=True, is_group=False),
                         {"ok": True})
        indicator = await bob.client.expect("typing_indicator")
        self.assertEqual((indicator["user_id"], indicator["username"], indicator["is_typing"]),
                         (alice.id, "alice", True))
        self.assertIsInstance(indicator["timestamp"], float)

        chats = await alice.call("get_chats")
        self.assertEqual(await alice.client.expect("chats"), chats)
        self.assertEqual([(c["id"], c["is_group"], c["unread_count"], c["last_message"]["message_id"])
                          for c in chats], [(bob.id, False, 1, reply["message_id"])])
        self.assertEqual(chats[0]["status"], "online")

        deleted = await alice.call("delete_message", message_id=first["message_id"])
        self.assertEqual((deleted["message_id"], deleted["sender_id"]), (first["message_id"], alice.id))
        self.assertEqual(await bob.client.expect("message_deleted"), deleted)
        self.assertEqual(await alice.client.expect("message_deleted"), deleted)

        history = await bob.call("get_chat_history", chat_id=alice.id, is_group=False, page=1, page_size=20)
        self.assertEqual(await bob.client.expect("chat_history"), history)
        self.assertEqual(([m["message_id"] for m in history["messages"]], history["total_messages"]),
                         ([reply["message_id"]], 1))
        self.assertEqual(history["messages"][0]["is_read"], False)

    @inline
    async def test_default_transports_walk_every_chat_event_after_the_upgrade(self) -> None:
        alice, bob = await self.pair(DEFAULT, DEFAULT)
        await self.walk(alice, bob)
        self.assertEqual((alice.client.sio.transport(), bob.client.sio.transport()), ("websocket", "websocket"))

    @inline
    async def test_polling_only_clients_walk_every_chat_event(self) -> None:
        alice, bob = await self.pair(POLLING, POLLING)
        await self.walk(alice, bob)
        self.assertEqual((alice.client.sio.transport(), bob.client.sio.transport()), ("polling", "polling"))

    @inline
    async def test_polling_and_websocket_clients_talk_to_each_other(self) -> None:
        alice, bob = await self.pair(POLLING, ["websocket"])
        await self.walk(alice, bob)
        self.assertEqual((alice.client.sio.transport(), bob.client.sio.transport()), ("polling", "websocket"))

    @inline
    async def test_a_burst_reaches_a_polling_client_whole_and_in_order(self) -> None:
        alice, bob = await self.pair(DEFAULT, POLLING)
        await self.befriend(alice, bob)
        contents = [f"m{i}" for i in range(25)]
        for content in contents:
            await alice.client.emit("send_message", alice.client.with_session(recipient_id=bob.id, content=content))
        received = [await bob.client.expect("new_message") for _ in contents]
        self.assertEqual([m["content"] for m in received], contents)
        history = await bob.call("get_chat_history", chat_id=alice.id, page_size=100)
        self.assertEqual([m["message_id"] for m in history["messages"]], [m["message_id"] for m in received])


for_each_backend(TransportChatTestsMixin, ChatCase, globals())
