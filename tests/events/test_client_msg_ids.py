"""Idempotent sends: ``client_msg_id`` on ``send_message``, ``upload_file_complete`` and the bot API.

`ClientMsgIdTestsMixin` is written against the chat clients' interface, so
it runs in-process here on both databases and over the wire with
python-socketio in ``tests.e2e.test_client_msg_ids``.  The window's expiry
runs on a `Clock` (`ClientMsgIdWindowTests`); two nodes, each with its own
`Database` on one database, race one key through the command
(`TwoNodesOneKeyTests*`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from tests.support.databases import for_each_backend, reopenable_database
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from tests.support.node import NodeTestCase
from tests.support.server import test_config
from tests.support.web import request
from umoc.credentials import new_token, token_digest
from umoc.domain.commands import messages
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.files import FileOffer, FileShare
from umoc.records.messages import NewMessage
from umoc.storage import Storage
from umoc.wiring import build_node

KEY_REUSED = "'client_msg_id' was used for another message"


class ClientMsgIdTestsMixin:
    async def pair(self) -> Any:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        return alice, bob

    def send(self, sender: Any, recipient: Any, content: str = "hello", **extra: Any) -> defer.Deferred[Any]:
        return sender.call("send_message", recipient_id=recipient.id, content=content, is_group=False, **extra)

    async def message_count(self) -> int:
        return int(await self.scalar("SELECT COUNT(*) FROM messages"))

    @inline
    async def test_a_retry_answers_the_original_with_duplicate_and_stores_and_tells_nothing(self) -> None:
        alice, bob = await self.pair()
        alice_laptop = await self.second_socket(alice)
        first = await self.send(alice, bob, "Hello!", client_msg_id="m-0001")
        self.assertEqual(first["client_msg_id"], "m-0001")
        self.assertNotIn("duplicate", first)
        self.assertEqual(await alice.client.expect("new_message"), first)
        self.assertEqual(await alice_laptop.expect("new_message"), first, "every socket of the sender gets the key")
        to_bob = await bob.client.expect("new_message")
        self.assertNotIn("client_msg_id", to_bob, "recipients never see the sender's key")
        self.assertEqual(to_bob, {k: v for k, v in first.items() if k != "client_msg_id"})

        again = await self.send(alice, bob, "Hello!", client_msg_id="m-0001")
        self.assertEqual(again, {**first, "duplicate": True})
        self.assertEqual(await alice.client.expect("new_message"), again, "the asking socket is answered")
        await bob.client.expect_none("new_message")
        self.assertEqual(bob.client.drain("new_message"), [], "the recipient got the message once")
        self.assertEqual(alice_laptop.drain("new_message"), [])
        self.assertEqual(await self.message_count(), 1)
        chats = await bob.call("get_chats")
        self.assertEqual([c["unread_count"] for c in chats], [1])

    @inline
    async def test_the_same_key_with_other_content_or_another_chat_is_refused(self) -> None:
        alice, bob = await self.pair()
        carol = await self.person("carol")
        await self.befriend(alice, carol)
        first = await self.send(alice, bob, "one", client_msg_id="k")
        for recipient, content in ((bob, "two"), (carol, "one")):
            answer = await self.send(alice, recipient, content, client_msg_id="k")
            self.assertEqual(answer, {"error": KEY_REUSED, "code": "conflict"})
        answer = await alice.call(
            "send_message", recipient_id=bob.id, content="one", is_group=False, client_msg_id="k", mentions=[bob.id]
        )
        self.assertEqual(answer, {"error": KEY_REUSED, "code": "conflict"})
        self.assertEqual(await self.message_count(), 1)
        # Another user's same key is another key.
        theirs = await self.send(bob, alice, "one", client_msg_id="k")
        self.assertNotEqual(theirs["message_id"], first["message_id"])
        self.assertNotIn("duplicate", theirs)

    @inline
    async def test_a_key_of_the_wrong_type_or_shape_is_refused_and_nothing_stored(self) -> None:
        alice, bob = await self.pair()
        for bad, message in (
            (5, "Invalid 'client_msg_id': expected a string"),
            ("", "Invalid 'client_msg_id': expected 1 to 64 characters"),
            ("x" * 65, "Invalid 'client_msg_id': expected 1 to 64 characters"),
            ("has space", "Invalid 'client_msg_id': expected 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"),
            ("caf\u00e9", "Invalid 'client_msg_id': expected 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"),
            ("a/b", "Invalid 'client_msg_id': expected 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"),
        ):
            answer = await self.send(alice, bob, "hi", client_msg_id=bad)
            self.assertEqual(answer, {"error": message, "code": "invalid_argument"}, bad)
        self.assertEqual(await self.message_count(), 0)
        ok = await self.send(alice, bob, "hi", client_msg_id="A-z_0" + "9" * 59)
        self.assertEqual(len(ok["client_msg_id"]), 64)

    @inline
    async def test_a_send_without_a_key_is_as_before(self) -> None:
        alice, bob = await self.pair()
        first = await self.send(alice, bob, "same")
        second = await self.send(alice, bob, "same")
        self.assertNotEqual(first["message_id"], second["message_id"])
        self.assertNotIn("client_msg_id", first)
        self.assertEqual(await self.message_count(), 2)

    @inline
    async def test_upload_file_complete_retried_with_its_key_is_a_duplicate(self) -> None:
        alice, bob = await self.pair()
        ready = await self.upload(alice, b"\x89PNG fake", recipient_id=bob.id, is_group=False)
        complete = {
            "file_id": ready["file_id"],
            "recipient_id": bob.id,
            "is_group": False,
            "file_name": "me.png",
            "file_type": "image/png",
        }
        first = await alice.call("upload_file_complete", **complete, client_msg_id="file-1")
        self.assertEqual((first["type"], first["client_msg_id"]), ("image", "file-1"))
        to_bob = await bob.client.expect("new_message")
        self.assertNotIn("client_msg_id", to_bob)
        again = await alice.call("upload_file_complete", **complete, client_msg_id="file-1")
        self.assertEqual(again, {**first, "duplicate": True})
        await bob.client.expect_none("new_message")
        self.assertEqual(bob.client.drain("new_message"), [])
        # Without its key a second completion is refused as before; another file under the key too.
        self.assertEqual(
            await alice.call("upload_file_complete", **complete), {"error": "File already shared", "code": "conflict"}
        )
        other = await self.upload(alice, b"\x89PNG other", recipient_id=bob.id, is_group=False)
        answer = await alice.call(
            "upload_file_complete", **{**complete, "file_id": other["file_id"]}, client_msg_id="file-1"
        )
        self.assertEqual(answer, {"error": KEY_REUSED, "code": "conflict"})
        # The refused file may still be shared, under a key of its own.
        shared = await alice.call(
            "upload_file_complete", **{**complete, "file_id": other["file_id"]}, client_msg_id="file-2"
        )
        self.assertEqual(shared["client_msg_id"], "file-2")
        self.assertEqual(await self.message_count(), 2)


for_each_backend(ClientMsgIdTestsMixin, InProcessChatCase, globals())


class ClientMsgIdWindowTests(NodeTestCase):
    """The window on a `Clock`: ``messages.idempotency_window`` (here 1h) and nothing else bounds a key."""

    config_overrides = {"ratelimits": {"enabled": False}, "messages": {"idempotency_window": "1h"}}

    async def friends(self) -> tuple[Any, Any]:
        alice, bob = await self.connected("alice"), await self.connected("bob")
        await self.call(alice, "add_contact", contact_username="bob")
        await self.call(bob, "accept_contact", contact_id=alice.user_id)
        return alice, bob

    @inline
    async def test_a_key_is_a_retry_within_the_window_and_free_after_it(self) -> None:
        alice, bob = await self.friends()
        send = {"recipient_id": bob.user_id, "content": "ping", "client_msg_id": "daily"}
        first = await self.call(alice, "send_message", **send)
        self.clock.advance(3599)
        self.assertEqual((await self.call(alice, "send_message", **send))["message_id"], first["message_id"])
        self.clock.advance(2)
        later = await self.call(alice, "send_message", **send)
        self.assertNotIn("duplicate", later)
        self.assertNotEqual(later["message_id"], first["message_id"])
        self.assertEqual(
            [m["message_id"] for m in bob.events("new_message")], [first["message_id"], later["message_id"]]
        )
        # The key now belongs to the new message: a retry of the old content is another message.
        self.clock.advance(10)
        again = await self.call(alice, "send_message", **send)
        self.assertEqual((again["message_id"], again["duplicate"]), (later["message_id"], True))
        keys = await self.db.run(
            "t", lambda txn: [r[0] for r in txn.execute("SELECT client_msg_id FROM messages ORDER BY seq").fetchall()]
        )
        self.assertEqual(keys, [None, "daily"])

    @inline
    async def test_a_bot_retrying_with_its_key_gets_200_and_the_original(self) -> None:
        bot, bob = await self.user("helperbot"), await self.user("bob")
        token = new_token()
        await self.storage.bots.make_bot(bot.id, token_digest(token), self.clock.seconds())
        await self.storage.contacts.request(bob.id, "helperbot", self.clock.seconds())
        await self.storage.contacts.accept(bot.id, bob.id, self.clock.seconds())
        auth = {"Authorization": f"Bearer {token}"}
        body = {"recipient_id": bob.id, "content": "Build passed", "client_msg_id": "ci-4711"}
        first = await request(self.node.site, "POST", "/api/bot/messages", body, auth)
        self.assertEqual(first.code, 201)
        again = await request(self.node.site, "POST", "/api/bot/messages", body, auth)
        self.assertEqual((again.code, again.json()), (200, {**first.json(), "duplicate": True}))
        other = await request(self.node.site, "POST", "/api/bot/messages", {**body, "content": "Build failed"}, auth)
        self.assertEqual((other.code, other.json()), (400, {"error": KEY_REUSED, "code": "conflict"}))
        bad = await request(self.node.site, "POST", "/api/bot/messages", {**body, "client_msg_id": 7}, auth)
        self.assertEqual(bad.code, 400)
        self.assertEqual(await self.db.run("t", lambda txn: txn.scalar("SELECT COUNT(*) FROM messages")), 1)


class TwoNodesOneKeyTestsMixin:
    """Two nodes (``build_node`` each over its own `Database` on one database) send one key at once."""

    @inline
    async def setUp(self) -> None:
        open_db = await reopenable_database(self, self.backend)
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.nodes = []
        for _ in range(2):
            db = open_db()
            self.addCleanup(db.close)
            node = build_node(test_config(self.mktemp(), ratelimits={"enabled": False}), self.clock, Storage(db))
            self.nodes.append(node)
        storage = self.nodes[0].services.storage
        now = self.clock.seconds()
        self.alice = await storage.users.create("alice", "x", now)
        self.bob = await storage.users.create("bob", "x", now)
        await storage.contacts.request(self.alice.id, "bob", now)
        await storage.contacts.accept(self.bob.id, self.alice.id, now)

    @inline
    async def test_two_nodes_racing_on_one_key_store_one_message_and_answer_it_twice(self) -> None:
        actor = Actor.user(self.alice.id, "alice", "socket", "s")
        for round_ in range(5):
            new = NewMessage(self.bob.id, False, f"hello {round_}", client_msg_id=f"k{round_}")
            sends = [defer.ensureDeferred(messages.send(node.services, actor, new)) for node in self.nodes]
            answers = await defer.gatherResults(sends)
            fresh = [a for a in answers if not a.get("duplicate")]
            self.assertEqual(len(fresh), 1, answers)
            self.assertEqual({a["message_id"] for a in answers}, {fresh[0]["message_id"]})
        db = self.nodes[0].services.storage.db
        count = await db.run("t", lambda txn: txn.scalar("SELECT COUNT(*) FROM messages"))
        self.assertEqual(count, 5)

    @inline
    async def test_a_shared_file_retried_on_the_other_node_is_a_duplicate(self) -> None:
        storage = self.nodes[0].services.storage
        offer = await messages.prepare_file(
            self.nodes[0].services,
            Actor.user(self.alice.id, "alice", "socket", "s"),
            FileOffer(self.bob.id, False, "a.txt", 5, "text/plain"),
        )
        file_id = offer["file_id"]
        await storage.db.run("t", lambda txn: txn.execute("UPDATE files SET uploaded_at = ?", (1.0,)))
        share = FileShare(file_id, self.bob.id, False, "a.txt", "text/plain", "share-1")
        actor = Actor.user(self.alice.id, "alice", "socket", "s")
        first = await messages.share_file(self.nodes[0].services, actor, share)
        again = await messages.share_file(self.nodes[1].services, actor, share)
        self.assertEqual(again, {**first, "duplicate": True})
        with self.assertRaises(UserError) as refused:
            await messages.share_file(self.nodes[1].services, actor, dataclasses.replace(share, client_msg_id=None))
        self.assertEqual(refused.exception.message, "File already shared")


for_each_backend(TwoNodesOneKeyTestsMixin, unittest.TestCase, globals())
