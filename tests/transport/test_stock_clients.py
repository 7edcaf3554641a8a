"""Stock python-socketio clients over long-polling and over polling upgraded to WebSocket.

Session events, then every chat event, cross each transport.

``["polling", "websocket"]`` is python-socketio's default (it starts with
long-polling and upgrades); ``["polling"]`` never upgrades, so every event
in both directions crosses held GETs and POSTed batches.
"""

from __future__ import annotations

import re
from typing import Any

from tests.support.chat import ChatCase, Person
from tests.support.databases import for_each_backend
from tests.support.deferreds import eventually, inline, sleep
from tests.support.server import ServerTestCase

DEFAULT = ["polling", "websocket"]
POLLING = ["polling"]
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


class StockClientTestsMixin:
    """python-socketio with its default transports (polling, then upgrade) and with polling only."""

    async def walk(self, transports: list[str]) -> Any:
        login, client = await self.connected_user("alice", transports=transports)
        status = await client.call("verify_session", client.with_session(token=login["token"]))
        self.assertEqual(status, {"valid": True, "expires_at": login["expires_at"]})
        self.assertEqual(await client.expect("session_status"), status)
        pong = await client.call("ping", client.with_session(timestamp=1636750000000))
        self.assertEqual(pong["timestamp"], 1636750000000)
        self.assertEqual((await client.expect("pong"))["timestamp"], 1636750000000)
        await client.emit("ping", client.with_session(timestamp=7))
        self.assertEqual((await client.expect("pong"))["timestamp"], 7)
        return login, client

    @inline
    async def test_default_transports_start_polling_and_upgrade(self) -> None:
        _, client = await self.walk(["polling", "websocket"])
        self.assertEqual(client.sio.transport(), "websocket")

    @inline
    async def test_polling_only_client_walks_the_session_events(self) -> None:
        _, client = await self.walk(["polling"])
        self.assertEqual(client.sio.transport(), "polling")

    @inline
    async def test_logout_disconnects_a_polling_client(self) -> None:
        login, client = await self.walk(["polling"])
        code, _ = await self.server.post("/api/logout", {"sessionID": login["sessionID"], "token": login["token"]})
        self.assertEqual(code, 200)
        self.assertFalse((await client.expect("session_status"))["valid"])
        # Wait for python-engineio's threads too: they still send a CLOSE.
        await eventually(lambda: not client.sio.connected and client.sio.eio.state == "disconnected")
        self.assertFalse(client.sio.connected)
        await sleep(0.1)


for_each_backend(StockClientTestsMixin, ServerTestCase, globals())


class TransportChatTestsMixin:
    async def pair(self, alice_transports: list[str], bob_transports: list[str]) -> tuple[Person, Person]:
        alice = Person(*await self.connected_user("alice", transports=alice_transports))
        bob = Person(*await self.connected_user("bob", transports=bob_transports))
        return alice, bob

    async def exchange(self, sender: Person, recipient: Person, content: str) -> dict[str, Any]:
        """send_message; both users receive the same spec-shaped new_message."""
        sent = await sender.call(
            "send_message", recipient_id=recipient.id, content=content, is_group=False, type="text"
        )
        self.assertEqual(set(sent), NEW_MESSAGE_KEYS, sent)
        self.assertEqual(
            (
                sent["sender_id"],
                sent["sender_username"],
                sent["recipient_id"],
                sent["content"],
                sent["type"],
                sent["is_group"],
            ),
            (sender.id, sender.name, recipient.id, content, "text", False),
        )
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
        self.assertEqual(
            await alice.client.expect("contact_accepted"), {"user_id": bob.id, "username": "bob", "status": "FRIEND"}
        )

        first = await self.exchange(alice, bob, "Hello there!")
        reply = await self.exchange(bob, alice, "Hi alice")

        receipt = await bob.call("read_receipt", message_ids=[first["message_id"]], sender_id=alice.id)
        self.assertEqual(
            (receipt["reader_id"], receipt["reader_username"], receipt["message_ids"]),
            (bob.id, "bob", [first["message_id"]]),
        )
        self.assertRegex(receipt["timestamp"], ISO)
        self.assertEqual(await alice.client.expect("messages_read"), receipt)

        self.assertEqual(await alice.call("typing", recipient_id=bob.id, is_typing=True, is_group=False), {"ok": True})
        indicator = await bob.client.expect("typing_indicator")
        self.assertEqual(
            (indicator["user_id"], indicator["username"], indicator["is_typing"]), (alice.id, "alice", True)
        )
        self.assertIsInstance(indicator["timestamp"], float)

        chats = await alice.call("get_chats")
        self.assertEqual(await alice.client.expect("chats"), chats)
        self.assertEqual(
            [(c["id"], c["is_group"], c["unread_count"], c["last_message"]["message_id"]) for c in chats],
            [(bob.id, False, 1, reply["message_id"])],
        )
        self.assertEqual(chats[0]["status"], "online")

        deleted = await alice.call("delete_message", message_id=first["message_id"])
        self.assertEqual((deleted["message_id"], deleted["sender_id"]), (first["message_id"], alice.id))
        self.assertEqual(await bob.client.expect("message_deleted"), deleted)
        self.assertEqual(await alice.client.expect("message_deleted"), deleted)

        history = await bob.call("get_chat_history", chat_id=alice.id, is_group=False, page=1, page_size=20)
        self.assertEqual(await bob.client.expect("chat_history"), history)
        self.assertEqual(
            ([m["message_id"] for m in history["messages"]], history["total_messages"]), ([reply["message_id"]], 1)
        )
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
