"""A user's devices on two nodes (one PostgreSQL database, one Redis) share read state and mutes (issue 24).

``chat_read`` and ``chat_muted`` go through the hub's cluster fan-out, as
every per-user event does: a read or a mute on one node reaches the same
user's socket on the other, each once.
"""

from __future__ import annotations

from tests.support.chat import Person, person_on
from tests.support.cluster import ClusterTestCase
from tests.support.deferreds import inline


class EveryDeviceAcrossNodesTests(ClusterTestCase):
    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.a = await self.start_node(self.node_config())
        self.b = await self.start_node(self.node_config())

    async def befriend(self, a: Person, b: Person) -> None:
        added = await a.call("add_contact", contact_username=b.name)
        assert added.get("status") == "NEW", added
        accepted = await b.call("accept_contact", contact_id=a.id)
        assert accepted.get("status") == "FRIEND", accepted

    @inline
    async def test_a_read_a_mark_and_a_mute_on_one_node_reach_the_users_socket_on_the_other(self) -> None:
        alice = await person_on(self, self.a, "alice")
        phone = await person_on(self, self.a, "bob")
        laptop = await self.connect_to(self.b, await self.b.login("bob"))
        await self.befriend(alice, phone)
        sent = [
            (await alice.call("send_message", recipient_id=phone.id, content=f"m{i}"))["message_id"] for i in (0, 1)
        ]
        await laptop.expect("new_message")
        await laptop.expect("new_message")

        # Read on the phone (node A): the laptop (node B) gets chat_read, and so does the phone, once each.
        await phone.call("read_receipt", message_ids=[sent[0]], sender_id=alice.id)
        expected = {
            "chat_id": alice.id,
            "is_group": False,
            "last_read_message_id": sent[0],
            "unread_count": 1,
            "mention_count": 0,
        }
        self.assertEqual(await laptop.expect("chat_read"), expected)
        self.assertEqual(await phone.client.expect("chat_read"), expected)

        # Marked unread on the laptop (node B): the phone's badge follows.
        marked = await laptop.call("mark_unread", laptop.with_session(chat_id=alice.id, from_message_id=sent[0]))
        self.assertEqual((marked["unread_count"], marked["last_read_message_id"]), (2, None))
        self.assertEqual(await phone.client.expect("chat_read"), marked)
        self.assertEqual(await laptop.expect("chat_read"), marked)

        # Muted on the laptop: the phone shows it too; unmuted on the phone: the laptop too.
        muted = await laptop.call("mute_chat", laptop.with_session(chat_id=alice.id))
        self.assertEqual(muted, {"chat_id": alice.id, "is_group": False, "muted": True, "until": None})
        self.assertEqual(await phone.client.expect("chat_muted"), muted)
        self.assertEqual(await laptop.expect("chat_muted"), muted)
        unmuted = await phone.call("unmute_chat", chat_id=alice.id)
        self.assertEqual(await laptop.expect("chat_muted"), unmuted)
        self.assertEqual(await phone.client.expect("chat_muted"), unmuted)
        for event in ("chat_read", "chat_muted"):
            await laptop.expect_none(event, within=0.2)
            await phone.client.expect_none(event, within=0.2)
            await alice.client.expect_none(event, within=0.2)

        # The sender asks either node who read and got the message.
        await laptop.call("message_delivered", laptop.with_session(message_ids=sent))
        receipts = await alice.call("get_read_receipts", message_id=sent[0])
        self.assertEqual([r["user_id"] for r in receipts["read_by"]], [phone.id])
        self.assertEqual([r["user_id"] for r in receipts["delivered_to"]], [phone.id])
