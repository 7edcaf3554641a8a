"""Group chats over real sockets: three members walk every event; outsiders learn nothing."""

from __future__ import annotations

import re

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from umoc.records.audit import AuditQuery

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


SETTING_NAMES = ("visibility", "join_rule", "kind", "topic", "slow_mode", "read_only", "retention")


class GroupTestsMixin:
    async def team(self):
        """alice (creator) with friends bob and carol in a group; dave is an outsider (friend of nobody)."""
        alice, bob, carol, dave = [await self.person(n) for n in ("alice", "bob", "carol", "dave")]
        await self.befriend(alice, bob)
        await self.befriend(alice, carol)
        created = await alice.call(
            "create_group", name="Project Team", description="Team discussion group", member_ids=[bob.id, carol.id]
        )
        self.assertNotIn("error", created)
        return alice, bob, carol, dave, created

    @inline
    async def test_create_group_tells_every_member_in_the_chat_info_shape(self) -> None:
        alice, bob, carol, dave, created = await self.team()
        self.assertEqual(
            set(created),
            {
                "id",
                "name",
                "description",
                "created_at",
                "is_group",
                "members",
                "member_count",
                "is_admin",
                "role",
                "visibility",
                "join_rule",
                "kind",
                "topic",
                "slow_mode",
                "read_only",
                "retention",
                "avatar_file_id",
                "mention_count",
                "display_name",
                "avatar_url",
            },
        )
        self.assertEqual(
            (
                created["name"],
                created["description"],
                created["is_group"],
                created["member_count"],
                created["is_admin"],
            ),
            ("Project Team", "Team discussion group", True, 3, True),
        )
        self.assertEqual(created["role"], "owner")
        self.assertEqual(
            {
                k: created[k]
                for k in ("visibility", "join_rule", "kind", "topic", "slow_mode", "read_only", "retention")
            },
            {
                "visibility": "private",
                "join_rule": "invite",
                "kind": "group",
                "topic": "",
                "slow_mode": 0,
                "read_only": False,
                "retention": 0,
            },
        )
        self.assertRegex(created["created_at"], ISO)
        self.assertEqual(
            created["members"][0],
            {
                "user_id": alice.id,
                "username": "alice",
                "is_online": True,
                "last_seen": None,
                "is_admin": True,
                "role": "owner",
                "display_name": None,
                "avatar_url": None,
            },
        )
        self.assertEqual(
            [(m["user_id"], m["is_admin"], m["role"]) for m in created["members"]],
            [(alice.id, True, "owner"), (bob.id, False, "member"), (carol.id, False, "member")],
        )
        self.assertEqual(await alice.client.expect("group_created"), created)
        for_bob = await bob.client.expect("group_created")
        self.assertEqual(for_bob, {**created, "is_admin": False, "role": "member"})
        self.assertEqual((await carol.client.expect("group_created"))["id"], created["id"])
        await dave.client.expect_none("group_created")
        info = await bob.call("get_chat_info", chat_id=created["id"], is_group=True)
        self.assertEqual(info, for_bob)

    @inline
    async def test_three_members_walk_every_chat_event(self) -> None:
        alice, bob, carol, dave, created = await self.team()
        gid = created["id"]
        sent = await bob.call("send_message", recipient_id=gid, content="hi all", is_group=True, type="text")
        self.assertEqual((sent["recipient_id"], sent["is_group"], sent["sender_id"]), (gid, True, bob.id))
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("new_message"), sent)
        await dave.client.expect_none("new_message", within=0.1)

        chats = await carol.call("get_chats")
        self.assertEqual(
            chats[0],
            {
                "id": gid,
                "name": "Project Team",
                "description": "Team discussion group",
                "member_count": 3,
                "last_message": {
                    k: sent[k]
                    for k in ("message_id", "sender_id", "sender_username", "content", "type", "timestamp", "edited_at")
                },
                "unread_count": 1,
                "mention_count": 0,
                "is_group": True,
                "display_name": None,
                "avatar_url": None,
            },
        )
        self.assertEqual([(c["id"], c["is_group"]) for c in chats[1:]], [(alice.id, False)])
        self.assertEqual([c["unread_count"] for c in await bob.call("get_chats") if c["is_group"]], [0])

        self.assertEqual(await alice.call("typing", recipient_id=gid, is_typing=True, is_group=True), {"ok": True})
        for person in (bob, carol):
            indicator = await person.client.expect("typing_indicator")
            self.assertEqual(
                (indicator["user_id"], indicator["is_typing"], indicator["chat_id"]), (alice.id, True, gid)
            )
        await alice.client.expect_none("typing_indicator", within=0.1)

        receipt = await carol.call("read_receipt", message_ids=[sent["message_id"]], sender_id=bob.id)
        self.assertEqual(await bob.client.expect("messages_read"), receipt)
        self.assertEqual((receipt["reader_id"], receipt["message_ids"]), (carol.id, [sent["message_id"]]))
        self.assertEqual((await carol.call("get_chats"))[0]["unread_count"], 0)
        self.assertEqual((await alice.call("get_chats"))[0]["unread_count"], 1)
        # Reads are per member: alice has not read it, carol has.
        seen = await alice.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual([(m["content"], m["is_read"]) for m in seen["messages"]], [("hi all", False)])
        self.assertEqual((seen["chat_id"], seen["is_group"], seen["total_messages"]), (gid, True, 1))
        by_sender = await bob.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual(by_sender["messages"][0]["is_read"], True)

        deleted = await bob.call("delete_message", message_id=sent["message_id"])
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("message_deleted"), deleted)
        self.assertEqual((await alice.call("get_chats"))[0]["unread_count"], 0)
        self.assertEqual((await alice.call("get_chat_history", chat_id=gid, is_group=True))["messages"], [])

    @inline
    async def test_admin_updates_and_adds_members_others_may_not(self) -> None:
        alice, bob, carol, dave, created = await self.team()
        gid = created["id"]
        updated = await alice.call("update_group", chat_id=gid, name="Renamed")
        self.assertEqual(
            updated,
            {
                "chat_id": gid,
                "name": "Renamed",
                "description": "Team discussion group",
                "visibility": "private",
                "join_rule": "invite",
                "kind": "group",
                "topic": "",
                "slow_mode": 0,
                "read_only": False,
                "retention": 0,
                "avatar_file_id": None,
                "avatar_url": None,
            },
        )
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("group_updated"), updated)
        before = await self.snapshot()
        refused = "Your role does not allow that"
        self.assertEqual((await bob.call("update_group", chat_id=gid, name="Mine"))["error"], refused)
        self.assertEqual((await bob.call("add_group_member", chat_id=gid, user_id=dave.id))["error"], refused)
        self.assertEqual((await bob.call("remove_group_member", chat_id=gid, user_id=carol.id))["error"], refused)
        self.assertIn("friends", (await alice.call("add_group_member", chat_id=gid, user_id=dave.id))["error"])
        self.assertIn("already", (await alice.call("add_group_member", chat_id=gid, user_id=bob.id))["error"])
        self.assertIn("name", (await alice.call("update_group", chat_id=gid, name="   "))["error"])
        self.assertIn("Nothing", (await alice.call("update_group", chat_id=gid))["error"])
        self.assertEqual(await self.snapshot(), before)

        await self.befriend(alice, dave)
        added = await alice.call("add_group_member", chat_id=gid, user_id=dave.id)
        self.assertEqual(added, {"chat_id": gid, "user_id": dave.id, "username": "dave"})
        for person in (alice, bob, carol, dave):
            self.assertEqual(await person.client.expect("group_member_added"), added)
        # A new member sees the history but none of it counts as unread.
        chats = await dave.call("get_chats")
        group = [c for c in chats if c["is_group"]][0]
        self.assertEqual((group["member_count"], group["unread_count"], group["name"]), (4, 0, "Renamed"))

    @inline
    async def test_outsider_gets_the_same_error_as_for_a_missing_group(self) -> None:
        alice, bob, carol, dave, created = await self.team()
        gid = created["id"]
        await bob.call("send_message", recipient_id=gid, content="secret", is_group=True)
        before = await self.snapshot()
        for chat_id in (gid, gid + 1000):
            answers = [
                await dave.call("get_chat_info", chat_id=chat_id, is_group=True),
                await dave.call("get_chat_history", chat_id=chat_id, is_group=True),
                await dave.call("send_message", recipient_id=chat_id, content="x", is_group=True),
                await dave.call("typing", recipient_id=chat_id, is_typing=True, is_group=True),
                await dave.call("leave_group", chat_id=chat_id),
                await dave.call("update_group", chat_id=chat_id, name="x"),
                await dave.call("add_group_member", chat_id=chat_id, user_id=dave.id),
            ]
            self.assertEqual({a.get("error") for a in answers}, {"Unknown chat"}, answers)
        message_id = (await alice.call("get_chat_history", chat_id=gid, is_group=True))["messages"][0]["message_id"]
        answer = await dave.call("read_receipt", message_ids=[message_id], sender_id=bob.id)
        self.assertIn("not found", answer["error"])
        self.assertEqual([c for c in await dave.call("get_chats") if c["is_group"]], [])
        # Creating a group with a stranger is refused too.
        self.assertIn("friends", (await bob.call("create_group", name="x", member_ids=[dave.id]))["error"])
        self.assertIn("member_ids", (await bob.call("create_group", name="x", member_ids=["1"]))["error"])
        self.assertIn("member_ids", (await bob.call("create_group", name="x", member_ids=[True]))["error"])
        self.assertEqual(await self.snapshot(), before)
        await dave.client.expect_none("new_message", within=0.1)

    @inline
    async def test_removed_member_stops_receiving_at_once(self) -> None:
        alice, bob, carol, dave, created = await self.team()
        gid = created["id"]
        removed = await alice.call("remove_group_member", chat_id=gid, user_id=carol.id)
        self.assertEqual(removed, {"chat_id": gid, "user_id": carol.id})
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("group_member_removed"), removed)
        carol.client.drain("new_message")
        await bob.call("send_message", recipient_id=gid, content="after", is_group=True)
        await alice.client.expect("new_message")
        await carol.client.expect_none("new_message")
        self.assertEqual((await carol.call("get_chat_history", chat_id=gid, is_group=True))["error"], "Unknown chat")
        answer = await carol.call("send_message", recipient_id=gid, content="still here?", is_group=True)
        self.assertEqual(answer["error"], "Unknown chat")
        self.assertEqual(await self.scalar("SELECT member_count FROM chats WHERE id = ?", gid), 2)
        # A group admin removing someone is moderation, in the audit log; leaving is not.
        await bob.call("remove_group_member", chat_id=gid, user_id=bob.id)
        rows = await self.server.services.storage.audit.list(AuditQuery())
        self.assertEqual(
            [(r.actor_id, r.via, r.action, r.target_id, r.chat_id) for r in rows],
            [(alice.id, "socket", "group.remove_member", str(carol.id), gid)],
        )
        self.assertTrue(rows[0].address)

    @inline
    async def test_owner_leaving_makes_the_highest_longest_member_owner_announced_and_empty_group_closes(
        self,
    ) -> None:
        alice, bob, carol, dave, created = await self.team()
        gid = created["id"]
        await alice.call("set_member_role", chat_id=gid, user_id=carol.id, role="moderator")
        for person in (alice, bob, carol):
            await person.client.expect("member_role_changed")
        later = await self.connect(bob.login)
        cursor = (await later.expect("connection_successful"))["cursor"]
        left = await alice.call("leave_group", chat_id=gid)
        self.assertEqual(left, {"chat_id": gid, "user_id": alice.id})
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("group_member_removed"), left)
        # carol, a moderator, outranks bob, who joined as early: she becomes owner, by nobody.
        promoted = {"chat_id": gid, "user_id": carol.id, "role": "owner", "by": None}
        for person in (bob, carol):
            self.assertEqual(await person.client.expect("member_role_changed"), promoted)
        await alice.client.expect_none("member_role_changed")
        info = await carol.call("get_chat_info", chat_id=gid, is_group=True)
        self.assertEqual((info["is_admin"], info["role"], info["member_count"]), (True, "owner", 2))
        self.assertEqual(
            [(m["username"], m["is_admin"], m["role"]) for m in info["members"]],
            [("bob", False, "member"), ("carol", True, "owner")],
        )
        changes = (await bob.call("sync", cursor=cursor))["changes"]
        self.assertIn({"kind": "member_role", "event": "member_role_changed", **promoted}, changes)
        await carol.call("leave_group", chat_id=gid)
        self.assertEqual(
            (await bob.client.expect("member_role_changed")),
            {"chat_id": gid, "user_id": bob.id, "role": "owner", "by": None},
        )
        await bob.call("leave_group", chat_id=gid)
        self.assertIsNotNone(await self.scalar("SELECT closed_at FROM chats WHERE id = ?", gid))
        self.assertEqual((await carol.call("get_chat_info", chat_id=gid, is_group=True))["error"], "Unknown chat")

    @inline
    async def test_block_hides_member_presence_and_typing_inside_a_group(self) -> None:
        alice, bob, carol, dave, created = await self.team()
        gid = created["id"]
        await bob.call("block_contact", contact_id=carol.id)
        info = await carol.call("get_chat_info", chat_id=gid, is_group=True)
        by_name = {m["username"]: m for m in info["members"]}
        self.assertEqual((by_name["bob"]["is_online"], by_name["alice"]["is_online"]), (False, True))
        bob.client.drain("typing_indicator")
        await carol.call("typing", recipient_id=gid, is_typing=True, is_group=True)
        await alice.client.expect("typing_indicator")
        await bob.client.expect_none("typing_indicator")


for_each_backend(GroupTestsMixin, InProcessChatCase, globals())
