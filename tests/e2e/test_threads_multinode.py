"""A thread reply across two nodes (one PostgreSQL database, one Redis): ``new_message`` and
``thread_updated`` reach the members on the other node, the reply is read back there, and
``follow_thread`` reaches the follower's socket on the other node.
"""

from __future__ import annotations

from tests.support.chat import Person, person_on
from tests.support.cluster import ClusterTestCase
from tests.support.deferreds import inline


class ThreadsAcrossNodesTests(ClusterTestCase):
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
    async def test_a_reply_on_one_node_reaches_members_and_followers_on_the_other(self) -> None:
        alice = await person_on(self, self.a, "alice")
        bob = await person_on(self, self.b, "bob")
        laptop = await self.connect_to(self.b, await self.b.login("alice"))
        await self.befriend(alice, bob)
        created = await alice.call("create_group", name="Team", member_ids=[bob.id])
        gid = created["id"]
        root = await alice.call("send_message", recipient_id=gid, is_group=True, content="plans?")
        for client in (alice.client, bob.client, laptop):
            self.assertEqual((await client.expect("new_message"))["message_id"], root["message_id"])

        reply = await bob.call(
            "send_message", recipient_id=gid, is_group=True, content="Friday", thread_id=root["message_id"]
        )
        self.assertEqual(reply["thread_id"], root["message_id"])
        for client in (alice.client, laptop):
            shown = await client.expect("new_message")
            self.assertEqual((shown["message_id"], shown["thread_id"]), (reply["message_id"], root["message_id"]))
            updated = await client.expect("thread_updated")
            self.assertEqual(
                updated,
                {
                    "chat_id": gid,
                    "is_group": True,
                    "thread_id": root["message_id"],
                    "reply_count": 1,
                    "last_reply_at": reply["timestamp"],
                    "participant_ids": [bob.id],
                },
            )
        # Read back on the other node: alice (the root's sender) follows, one reply unread, then read.
        chats = await alice.call("get_chats")
        self.assertEqual(next(c for c in chats if c["id"] == gid)["unread_count"], 1)
        page = await alice.call("get_thread", thread_id=root["message_id"])
        self.assertEqual([m["message_id"] for m in page["messages"]], [reply["message_id"]])
        chats = await laptop.call("get_chats", laptop.with_session())
        self.assertEqual(next(c for c in chats if c["id"] == gid)["unread_count"], 0)
        # Unfollowing on node A reaches alice's socket on node B.
        done = await alice.call("follow_thread", thread_id=root["message_id"], follow=False)
        self.assertEqual(await laptop.expect("thread_followed"), done)
