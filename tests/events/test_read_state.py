"""Read state shared by a user's devices, on both databases (issue 24, "Every device").

``chat_read`` after ``read_receipt`` and ``mark_unread`` and ``chat_muted``
reach every socket of the user, each once; ``mark_unread`` moves the user's
own counts only; ``get_read_receipts`` lists who got and read one's own
message, and refuses any other message the same way whether it exists or not.
"""

from __future__ import annotations

from typing import Any

from tests.events.test_messaging_v2 import ISO, MISSING, MessagingCase
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase, LocalClient, LocalPerson

READ_FIELDS = {"chat_id", "is_group", "last_read_message_id", "unread_count", "mention_count"}


class ReadStateTestsMixin(MessagingCase):
    async def entry(self, person: LocalPerson, chat_id: int, is_group: bool = False) -> dict[str, Any]:
        """The person's ``get_chats`` entry of one chat."""
        chats = await person.call("get_chats")
        return [c for c in chats if c["id"] == chat_id and c["is_group"] == is_group][0]

    async def badge(self, person: LocalPerson, chat_id: int, is_group: bool = False) -> tuple[int, int]:
        entry = await self.entry(person, chat_id, is_group)
        return entry["unread_count"], entry["mention_count"]

    async def both_get(self, sockets: list[LocalClient], event: str) -> dict[str, Any]:
        """Each socket got ``event`` exactly once, the same payload; that payload."""
        payloads = [await socket.expect(event) for socket in sockets]
        for socket in sockets:
            await socket.expect_none(event)
        self.assertEqual(payloads, [payloads[0]] * len(sockets))
        return payloads[0]

    @inline
    async def test_a_read_tells_every_socket_of_the_reader_the_badge_as_get_chats_shows_it(self) -> None:
        alice, bob = await self.pair()
        laptop = await self.second_socket(bob)
        sent = [await self.send(alice, bob.id, f"m{i}", mentions=[bob.id] if i == 2 else []) for i in range(3)]
        await self.drain(alice, bob)
        laptop.drain_all()
        ack = await bob.call(
            "read_receipt", message_ids=[sent[0]["message_id"], sent[1]["message_id"]], sender_id=alice.id
        )
        self.assertEqual(ack["message_ids"], [sent[0]["message_id"], sent[1]["message_id"]])
        read = await self.both_get([bob.client, laptop], "chat_read")
        self.assertEqual(
            read,
            {
                "chat_id": alice.id,
                "is_group": False,
                "last_read_message_id": sent[1]["message_id"],
                "unread_count": 1,
                "mention_count": 1,
            },
        )
        self.assertEqual(await self.badge(bob, alice.id), (1, 1))
        # The sender is told messages_read, never chat_read: that is the reader's own.
        await alice.client.expect("messages_read")
        await alice.client.expect_none("chat_read")
        await bob.call("read_receipt", message_ids=[sent[2]["message_id"]], sender_id=alice.id)
        read = await self.both_get([bob.client, laptop], "chat_read")
        self.assertEqual(
            (read["last_read_message_id"], read["unread_count"], read["mention_count"]), (sent[2]["message_id"], 0, 0)
        )

    @inline
    async def test_one_receipt_over_a_group_and_a_direct_chat_tells_each_chat(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        direct = await self.send(alice, bob.id, "direct")
        grouped = await self.send(alice, gid, "to the team", is_group=True, mentions=[bob.id])
        await self.send(carol, gid, "carol's, unread", is_group=True)
        await self.drain(alice, bob, carol, dave)
        await bob.call("read_receipt", message_ids=[grouped["message_id"], direct["message_id"]], sender_id=alice.id)
        reads = [await bob.client.expect("chat_read"), await bob.client.expect("chat_read")]
        by_chat = {(r["chat_id"], r["is_group"]): r for r in reads}
        self.assertEqual(set(by_chat), {(alice.id, False), (gid, True)})
        self.assertEqual(
            by_chat[(gid, True)],
            {
                "chat_id": gid,
                "is_group": True,
                "last_read_message_id": grouped["message_id"],
                "unread_count": 1,
                "mention_count": 0,
            },
        )
        self.assertEqual(await self.badge(bob, gid, True), (1, 0))
        await carol.client.expect_none("chat_read")

    @inline
    async def test_mark_unread_moves_only_the_callers_counts_until_read_again(self) -> None:
        alice, bob = await self.pair()
        laptop = await self.second_socket(bob)
        sent = [await self.send(alice, bob.id, f"m{i}", mentions=[bob.id] if i == 2 else []) for i in range(4)]
        mine = await self.send(bob, alice.id, "bob's own")
        ids = [m["message_id"] for m in sent]
        await bob.call("read_receipt", message_ids=ids, sender_id=alice.id)
        self.assertEqual(await self.badge(bob, alice.id), (0, 0))
        await self.drain(alice, bob)
        laptop.drain_all()

        marked = await bob.call("mark_unread", chat_id=alice.id, from_message_id=ids[1])
        self.assertEqual(set(marked), READ_FIELDS)
        self.assertEqual(
            marked,
            {
                "chat_id": alice.id,
                "is_group": False,
                "last_read_message_id": ids[0],
                "unread_count": 3,
                "mention_count": 1,
            },
        )
        self.assertEqual(await self.both_get([bob.client, laptop], "chat_read"), marked)
        self.assertEqual(await self.badge(bob, alice.id), (3, 1))
        history = (await bob.call("get_chat_history", chat_id=alice.id))["messages"]
        self.assertEqual([m["is_read"] for m in history if m["sender_id"] == alice.id], [True, False, False, False])
        # Nobody else is told, and the senders still see their messages read.
        await alice.client.expect_none("chat_read")
        await alice.client.expect_none("messages_read")
        theirs = (await alice.call("get_chat_history", chat_id=bob.id))["messages"]
        self.assertEqual([m["is_read"] for m in theirs if m["sender_id"] == alice.id], [True] * 4)
        receipts = await alice.call("get_read_receipts", message_id=ids[3])
        self.assertEqual([r["user_id"] for r in receipts["read_by"]], [bob.id])
        first_read_at = receipts["read_by"][0]["read_at"]

        # From one's own message: only the others' after it count.
        await bob.call("read_receipt", message_ids=ids, sender_id=alice.id)
        self.assertEqual(await self.badge(bob, alice.id), (0, 0))
        marked = await bob.call("mark_unread", chat_id=alice.id, from_message_id=mine["message_id"])
        self.assertEqual((marked["unread_count"], marked["last_read_message_id"]), (0, ids[3]))
        # Marking again changes nothing; reading again counts them read, the first read time kept.
        await bob.call("mark_unread", chat_id=alice.id, from_message_id=ids[2])
        again = await bob.call("mark_unread", chat_id=alice.id, from_message_id=ids[2])
        self.assertEqual((again["unread_count"], again["mention_count"]), (2, 1))
        await bob.call("read_receipt", message_ids=[ids[2]], sender_id=alice.id)
        self.assertEqual(await self.badge(bob, alice.id), (1, 0))
        receipts = await alice.call("get_read_receipts", message_id=ids[3])
        self.assertEqual(receipts["read_by"], [{"user_id": bob.id, "read_at": first_read_at}])

        # Deleting a message marked unread takes it from the unread count once; a read one from nothing.
        await alice.call("delete_message", message_id=ids[3])
        self.assertEqual(await self.badge(bob, alice.id), (0, 0))
        await alice.call("delete_message", message_id=ids[0])
        self.assertEqual(await self.badge(bob, alice.id), (0, 0))
        await self.send(alice, bob.id, "new")
        self.assertEqual(await self.badge(bob, alice.id), (1, 0))

    @inline
    async def test_mark_unread_in_a_group_and_every_refusal_changes_nothing(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        first = await self.send(alice, gid, "one", is_group=True)
        second = await self.send(carol, gid, "@bob two", is_group=True, mentions=[bob.id])
        direct = await self.send(alice, bob.id, "direct")
        await bob.call("read_receipt", message_ids=[first["message_id"]], sender_id=alice.id)
        await bob.call("read_receipt", message_ids=[second["message_id"]], sender_id=carol.id)
        marked = await bob.call("mark_unread", chat_id=gid, is_group=True, from_message_id=first["message_id"])
        self.assertEqual(
            (marked["unread_count"], marked["mention_count"], marked["last_read_message_id"]), (2, 1, None)
        )
        self.assertEqual(await self.badge(bob, gid, True), (2, 1))
        await self.drain(alice, bob, carol, dave)
        before = await self.snapshot()
        await self.refused(
            dave, "mark_unread", "Unknown chat", chat_id=gid, is_group=True, from_message_id=first["message_id"]
        )
        await self.refused(bob, "mark_unread", "Unknown chat", chat_id=dave.id, from_message_id=first["message_id"])
        # A message of another chat, an unknown one, a deleted one: the same answer.
        await self.refused(
            bob, "mark_unread", "Message not found", chat_id=gid, is_group=True, from_message_id=direct["message_id"]
        )
        await self.refused(bob, "mark_unread", "Message not found", chat_id=gid, is_group=True, from_message_id=MISSING)
        await self.refused(
            bob,
            "mark_unread",
            "Invalid 'from_message_id': expected a UUID string",
            chat_id=gid,
            is_group=True,
            from_message_id="x",
        )
        self.assertEqual(await self.snapshot(), before)
        await alice.call("delete_message", message_id=first["message_id"])
        await self.drain(alice, bob, carol, dave)
        before = await self.snapshot()
        await self.refused(
            bob, "mark_unread", "Message not found", chat_id=gid, is_group=True, from_message_id=first["message_id"]
        )
        self.assertEqual(await self.snapshot(), before)
        await bob.client.expect_none("chat_read")

    @inline
    async def test_chat_muted_reaches_every_socket_of_the_user_once(self) -> None:
        alice, bob = await self.pair()
        laptop = await self.second_socket(bob)
        await self.drain(alice, bob)
        laptop.drain_all()
        muted = await bob.call("mute_chat", chat_id=alice.id, until="2099-01-01T00:00:00Z")
        self.assertEqual(
            muted, {"chat_id": alice.id, "is_group": False, "muted": True, "until": "2099-01-01T00:00:00Z"}
        )
        self.assertEqual(await self.both_get([bob.client, laptop], "chat_muted"), muted)
        unmuted = await laptop.call("unmute_chat", laptop.with_session(chat_id=alice.id))
        self.assertEqual(unmuted, {"chat_id": alice.id, "is_group": False, "muted": False, "until": None})
        self.assertEqual(await self.both_get([bob.client, laptop], "chat_muted"), unmuted)
        await alice.client.expect_none("chat_muted")
        # A refused mute tells nobody.
        await self.refused(bob, "mute_chat", "Unknown chat", chat_id=alice.id + 1000)
        await laptop.expect_none("chat_muted")

    @inline
    async def test_read_receipts_list_reads_and_deliveries_of_ones_own_messages_only(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        sent = await self.send(alice, gid, "hello team", is_group=True)
        message_id = sent["message_id"]
        empty = await alice.call("get_read_receipts", message_id=message_id)
        self.assertEqual(empty, {"message_id": message_id, "read_by": [], "delivered_to": []})
        self.assertEqual(await alice.client.expect("read_receipts"), empty)
        await bob.call("message_delivered", message_ids=[message_id])
        await carol.call("message_delivered", message_ids=[message_id])
        await bob.call("message_delivered", message_ids=[message_id])  # the first time is kept
        await bob.call("read_receipt", message_ids=[message_id], sender_id=alice.id)
        receipts = await alice.call("get_read_receipts", message_id=message_id)
        self.assertEqual(set(receipts), {"message_id", "read_by", "delivered_to"})
        self.assertEqual([r["user_id"] for r in receipts["read_by"]], [bob.id])
        self.assertEqual(sorted(r["user_id"] for r in receipts["delivered_to"]), sorted([bob.id, carol.id]))
        for entry in receipts["read_by"]:
            self.assertRegex(entry["read_at"], ISO)
        for entry in receipts["delivered_to"]:
            self.assertRegex(entry["delivered_at"], ISO)
        # One row per member who reported it, however often they did.
        self.assertEqual(int(await self.scalar("SELECT COUNT(*) FROM message_deliveries")), 2)

        # A direct message: its delivery and read.
        direct = await self.send(alice, bob.id, "just you")
        await bob.call("message_delivered", message_ids=[direct["message_id"]])
        await bob.call("read_receipt", message_ids=[direct["message_id"]], sender_id=alice.id)
        receipts = await alice.call("get_read_receipts", message_id=direct["message_id"])
        self.assertEqual([r["user_id"] for r in receipts["read_by"]], [bob.id])
        self.assertEqual([r["user_id"] for r in receipts["delivered_to"]], [bob.id])
        history = (await alice.call("get_chat_history", chat_id=bob.id))["messages"]
        self.assertEqual(history[-1]["delivered_at"], receipts["delivered_to"][0]["delivered_at"])

        # Someone else's message, a deleted one of one's own, an unknown one: one answer, nothing told.
        await self.refused(bob, "get_read_receipts", "Message not found", message_id=message_id)
        await self.refused(dave, "get_read_receipts", "Message not found", message_id=message_id)
        await self.refused(alice, "get_read_receipts", "Message not found", message_id=MISSING)
        await alice.call("delete_message", message_id=direct["message_id"])
        await self.refused(alice, "get_read_receipts", "Message not found", message_id=direct["message_id"])
        await self.refused(
            alice, "get_read_receipts", "Invalid 'message_id': expected a UUID string", message_id="nope"
        )

    @inline
    async def test_a_read_after_a_block_is_not_listed(self) -> None:
        alice, bob = await self.pair()
        sent = await self.send(alice, bob.id, "before the block")
        await bob.call("message_delivered", message_ids=[sent["message_id"]])
        await bob.call("block_contact", contact_id=alice.id)
        await bob.call("read_receipt", message_ids=[sent["message_id"]], sender_id=alice.id)
        receipts = await alice.call("get_read_receipts", message_id=sent["message_id"])
        self.assertEqual((receipts["read_by"], [r["user_id"] for r in receipts["delivered_to"]]), ([], [bob.id]))
        # The reader's own badge moved all the same.
        self.assertEqual((await bob.client.expect("chat_read"))["unread_count"], 0)

    @inline
    async def test_the_feed_gives_a_device_that_was_away_the_read_state_and_mutes(self) -> None:
        alice, bob = await self.pair()
        phone = await self.second_socket(bob)
        position = await self.server.services.storage.feed.position()
        sent = await self.send(alice, bob.id, "read me")
        await bob.call("read_receipt", message_ids=[sent["message_id"]], sender_id=alice.id)
        await bob.call("mark_unread", chat_id=alice.id, from_message_id=sent["message_id"])
        await bob.call("mute_chat", chat_id=alice.id)
        result = await phone.call("sync", phone.with_session(cursor=position))
        mine = [c for c in result["changes"] if c["kind"] in ("chat_read", "chat_muted")]
        self.assertEqual(
            [(c["kind"], c["event"], c["chat_id"], c.get("unread_count"), c.get("muted")) for c in mine],
            [
                ("chat_read", "chat_read", alice.id, 0, None),
                ("chat_read", "chat_read", alice.id, 1, None),
                ("chat_muted", "chat_muted", alice.id, None, True),
            ],
        )
        # The sender's feed holds the read, not the reader's own state.
        theirs = await alice.call("sync", cursor=position)
        self.assertEqual([c["kind"] for c in theirs["changes"]], ["message", "read"])


for_each_backend(ReadStateTestsMixin, InProcessChatCase, globals())
