"""The read-state commands on a `Clock`: what they store, whom they tell, with which times (issue 24).

The commands are called as every edge calls them (an `Actor` and one
record); two `FakeSocket` s of one user stand for two devices.
"""

from __future__ import annotations

from typing import Any

from tests.support.deferreds import inline
from tests.support.fakes import FakeSocket
from tests.support.node import NodeTestCase
from umoc.domain.commands import chats, messages
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.messages import MarkUnread, Mute, NewMessage, ReadReceipt, ReceiptsQuery

T0_ISO = "2023-11-14T22:13:20Z"  # the Clock's start, 1_700_000_000


class ReadStateCommandTests(NodeTestCase):
    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.alice_socket = await self.connected("alice")
        self.phone = await self.connected("bob")
        self.laptop = FakeSocket(self.phone.user_id, "session-bob", "bob", sid="sid-laptop")
        self.node.socketapp.on_connect(self.laptop)  # type: ignore[arg-type]
        self.addCleanup(lambda: self.node.socketapp.on_disconnect(self.laptop, "test over"))  # type: ignore[arg-type]
        await self.settled()
        self.alice = Actor.user(self.alice_socket.user_id, "alice", "socket", "session-alice")
        self.bob = Actor.user(self.phone.user_id, "bob", "socket", "session-bob")
        now = self.clock.seconds()
        await self.storage.contacts.request(self.alice.uid, "bob", now)
        await self.storage.contacts.accept(self.bob.uid, self.alice.uid, now)

    def told(self, socket: FakeSocket, event: str) -> list[dict[str, Any]]:
        return [args[0] for name, *args in socket.received if name == event]

    @inline
    async def test_a_read_tells_both_devices_and_keeps_the_clocks_time(self) -> None:
        sent = await messages.send(self.services, self.alice, NewMessage(self.bob.uid, False, "hi"))
        self.clock.advance(5)
        await messages.mark_read(self.services, self.bob, ReadReceipt(self.alice.uid, (sent["message_id"],)))
        expected = {
            "chat_id": self.alice.uid,
            "is_group": False,
            "last_read_message_id": sent["message_id"],
            "unread_count": 0,
            "mention_count": 0,
        }
        self.assertEqual(self.told(self.phone, "chat_read"), [expected])
        self.assertEqual(self.told(self.laptop, "chat_read"), [expected])
        self.assertEqual(self.told(self.alice_socket, "chat_read"), [])
        receipts = await messages.read_receipts(self.services, self.alice, ReceiptsQuery(sent["message_id"]))
        self.assertEqual(receipts["read_by"], [{"user_id": self.bob.uid, "read_at": "2023-11-14T22:13:25Z"}])

    @inline
    async def test_mark_unread_tells_only_the_users_own_devices(self) -> None:
        sent = await messages.send(self.services, self.alice, NewMessage(self.bob.uid, False, "hi"))
        await messages.mark_read(self.services, self.bob, ReadReceipt(self.alice.uid, (sent["message_id"],)))
        answer = await chats.mark_unread(self.services, self.bob, MarkUnread(self.alice.uid, False, sent["message_id"]))
        self.assertEqual((answer["unread_count"], answer["last_read_message_id"]), (1, None))
        self.assertEqual(self.told(self.laptop, "chat_read")[-1], answer)
        self.assertEqual(self.told(self.phone, "chat_read")[-1], answer)
        self.assertEqual(self.told(self.alice_socket, "chat_read"), [])
        with self.assertRaises(UserError):
            MarkUnread(self.alice.uid, False, "not a uuid")

    @inline
    async def test_mute_tells_both_devices_and_refuses_a_past_until_by_the_clock(self) -> None:
        until = self.clock.seconds() + 60
        answer = await chats.mute(self.services, self.bob, Mute(self.alice.uid, False, True, until))
        self.assertEqual(
            answer, {"chat_id": self.alice.uid, "is_group": False, "muted": True, "until": "2023-11-14T22:14:20Z"}
        )
        self.assertEqual(self.told(self.phone, "chat_muted"), [answer])
        self.assertEqual(self.told(self.laptop, "chat_muted"), [answer])
        self.clock.advance(60)
        with self.assertRaises(UserError):
            await chats.mute(self.services, self.bob, Mute(self.alice.uid, False, True, until))
        self.assertEqual(len(self.told(self.laptop, "chat_muted")), 1)
        off = await chats.mute(self.services, self.bob, Mute(self.alice.uid, False, False))
        self.assertEqual(off["until"], None)
        self.assertEqual(self.told(self.laptop, "chat_muted"), [answer, off])
