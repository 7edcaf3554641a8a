"""Moderation in groups (issue 29): bans, mutes, moderators' deletes, over the socket edge on both databases."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase, LocalPerson
from umoc.errors import RefusedError
from umoc.records import Actor
from umoc.records.messages import NewMessage
from umoc.storage.groups import active_ban_txn

REFUSED = "Your role does not allow that"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class GroupModerationTestsMixin:
    async def moderated(self) -> tuple[LocalPerson, LocalPerson, LocalPerson, LocalPerson, int]:
        """alice owns a group where bob is a moderator and carol and dave are members."""
        alice, bob, carol, dave = [await self.person(n) for n in ("alice", "bob", "carol", "dave")]
        for other in (bob, carol, dave):
            await self.befriend(alice, other)
        gid = (await alice.call("create_group", name="Mods", member_ids=[bob.id, carol.id, dave.id]))["id"]
        await alice.call("set_member_role", chat_id=gid, user_id=bob.id, role="moderator")
        for person in (alice, bob, carol, dave):
            person.client.drain("group_created")
            await person.client.expect("member_role_changed")
        return alice, bob, carol, dave, gid

    async def execute(self, sql: str, *params: Any) -> None:
        await self.node.services.storage.db.run("test.execute", lambda txn: txn.execute(sql, params) and None)

    async def post_at(self, person: LocalPerson, gid: int, at: float) -> Any:
        """A group message from ``person`` stored as at time ``at`` (storage, as the command would)."""
        storage = self.node.services.storage
        actor = Actor.user(person.id, person.name)
        return await storage.messages.post(actor, NewMessage(gid, True, "later"), str(uuid.uuid4()), at)

    @inline
    async def test_a_ban_deletes_recent_messages_removes_the_member_and_keeps_them_out(self) -> None:
        alice, bob, carol, dave, gid = await self.moderated()
        kept = await carol.call("send_message", recipient_id=gid, content="old news", is_group=True)
        await self.execute("UPDATE messages SET created_at = created_at - 7200 WHERE id = ?", kept["message_id"])
        recent = await carol.call("send_message", recipient_id=gid, content="spam", is_group=True)
        for person in (alice, bob, carol, dave):
            person.client.drain("new_message")

        banned = await bob.call(
            "ban_member", chat_id=gid, user_id=carol.id, duration=3600, reason="spam", delete_messages="1h"
        )
        self.assertEqual(
            {k: banned[k] for k in ("chat_id", "user_id", "reason", "by")},
            {"chat_id": gid, "user_id": carol.id, "reason": "spam", "by": bob.id},
        )
        self.assertRegex(banned["until"], ISO)
        for person in (alice, bob, carol, dave):
            deleted = await person.client.expect("message_deleted")
            self.assertEqual(
                (deleted["message_id"], deleted["sender_id"], deleted["deleted_by"]),
                (recent["message_id"], carol.id, bob.id),
            )
            self.assertEqual(await person.client.expect("member_banned"), banned)
            removed = await person.client.expect("group_member_removed")
            self.assertEqual(removed, {"chat_id": gid, "user_id": carol.id})
            self.assertEqual(person.client.order[-3:], ["message_deleted", "member_banned", "group_member_removed"])
        history = await alice.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual([m["content"] for m in history["messages"]], ["old news"])
        self.assertEqual(
            (await carol.call("send_message", recipient_id=gid, content="x", is_group=True))["error"], "Unknown chat"
        )

        refused = await alice.call("add_group_member", chat_id=gid, user_id=carol.id)
        self.assertEqual((refused["error"], refused["code"]), ("This user is banned from this group", "forbidden"))
        bans = await bob.call("get_bans", chat_id=gid)
        self.assertEqual(
            bans,
            {
                "chat_id": gid,
                "bans": [
                    {
                        "user_id": carol.id,
                        "username": "carol",
                        "until": banned["until"],
                        "reason": "spam",
                        "by": bob.id,
                        "created_at": bans["bans"][0]["created_at"],
                    }
                ],
            },
        )
        self.assertEqual((await dave.call("get_bans", chat_id=gid))["error"], REFUSED)
        self.assertEqual((await carol.call("get_bans", chat_id=gid))["error"], "Unknown chat")

        self.assertEqual(
            await bob.call("unban_member", chat_id=gid, user_id=carol.id), {"chat_id": gid, "user_id": carol.id}
        )
        self.assertEqual((await bob.call("get_bans", chat_id=gid))["bans"], [])
        answer = await bob.call("unban_member", chat_id=gid, user_id=carol.id)
        self.assertEqual((answer["error"], answer["code"]), ("This user is not banned", "not_found"))
        self.assertNotIn("error", await alice.call("add_group_member", chat_id=gid, user_id=carol.id))

    @inline
    async def test_a_ban_with_all_deletes_every_message_and_without_duration_holds_until_lifted(self) -> None:
        alice, bob, carol, dave, gid = await self.moderated()
        for text in ("one", "two"):
            await dave.call("send_message", recipient_id=gid, content=text, is_group=True)
        await self.execute("UPDATE messages SET created_at = created_at - 900000 WHERE sender_id = ?", dave.id)
        banned = await alice.call("ban_member", chat_id=gid, user_id=dave.id, delete_messages="all")
        self.assertEqual(banned, {"chat_id": gid, "user_id": dave.id, "until": None, "reason": None, "by": alice.id})
        self.assertEqual((await bob.call("get_chat_history", chat_id=gid, is_group=True))["messages"], [])
        # Far in the future it still holds.
        holds = await self.node.services.storage.db.run("test", active_ban_txn, gid, dave.id, 4e9)
        self.assertTrue(holds)

    @inline
    async def test_moderators_act_only_on_lower_members_and_refusals_change_nothing(self) -> None:
        alice, bob, carol, dave, gid = await self.moderated()
        await alice.call("set_member_role", chat_id=gid, user_id=carol.id, role="moderator")
        owners = await alice.call("send_message", recipient_id=gid, content="owner's", is_group=True)
        peers = await carol.call("send_message", recipient_id=gid, content="peer's", is_group=True)
        outsider = await self.person("erin")
        before = await self.snapshot()
        answers = {
            "ban owner": await bob.call("ban_member", chat_id=gid, user_id=alice.id),
            "ban peer": await bob.call("ban_member", chat_id=gid, user_id=carol.id),
            "ban self": await bob.call("ban_member", chat_id=gid, user_id=bob.id),
            "mute peer": await bob.call("mute_member", chat_id=gid, user_id=carol.id),
            "unmute owner": await bob.call("unmute_member", chat_id=gid, user_id=alice.id),
            "delete owner's": await bob.call("delete_message", message_id=owners["message_id"]),
            "delete peer's": await bob.call("delete_message", message_id=peers["message_id"]),
            "member deletes": await dave.call("delete_message", message_id=peers["message_id"]),
        }
        for name, answer in answers.items():
            self.assertEqual((answer.get("error"), answer.get("code")), (REFUSED, "forbidden"), name)
        answer = await bob.call("ban_member", chat_id=gid, user_id=outsider.id)
        self.assertEqual((answer["error"], answer["code"]), ("This user is not a member", "not_found"))
        answer = await outsider.call("delete_message", message_id=peers["message_id"])
        self.assertEqual((answer["error"], answer["code"]), ("Message not found", "not_found"))
        answer = await bob.call("ban_member", chat_id=gid, user_id=dave.id, delete_messages="week")
        self.assertEqual(answer["code"], "invalid_argument")
        answer = await bob.call("mute_member", chat_id=gid, user_id=dave.id, duration=0)
        self.assertEqual(answer["code"], "invalid_argument")
        self.assertEqual(await self.snapshot(), before)

        # The owner deletes a moderator's message: deleted_by says who.
        deleted = await alice.call("delete_message", message_id=peers["message_id"])
        self.assertEqual((deleted["sender_id"], deleted["deleted_by"]), (carol.id, alice.id))
        self.assertEqual(await dave.client.expect("message_deleted"), deleted)

    @inline
    async def test_a_muted_member_reads_but_cannot_send_react_or_type_until_unmuted(self) -> None:
        alice, bob, carol, dave, gid = await self.moderated()
        posted = await alice.call("send_message", recipient_id=gid, content="news", is_group=True)
        muted = await bob.call("mute_member", chat_id=gid, user_id=dave.id, duration=600)
        self.assertEqual((muted["chat_id"], muted["user_id"]), (gid, dave.id))
        self.assertRegex(muted["until"], ISO)
        for person in (alice, bob, carol, dave):
            self.assertEqual(await person.client.expect("member_muted"), muted)
        before = await self.snapshot()
        answers = [
            await dave.call("send_message", recipient_id=gid, content="x", is_group=True),
            await dave.call("add_reaction", message_id=posted["message_id"], emoji="👍"),
            await dave.call("typing", recipient_id=gid, is_typing=True, is_group=True),
        ]
        refusal = {(a.get("error"), a.get("code")) for a in answers}
        self.assertEqual(refusal, {("You are muted in this group", "forbidden")}, answers)
        self.assertEqual(await self.snapshot(), before)
        history = await dave.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual([m["content"] for m in history["messages"]], ["news"])
        # Past its end the mute no longer holds (the store is given the time).
        now = float(
            await self.scalar("SELECT muted_until FROM user_chats WHERE chat_id = ? AND user_id = ?", gid, dave.id)
        )
        with self.assertRaises(RefusedError):
            await self.post_at(dave, gid, now - 1)
        await self.post_at(dave, gid, now + 1)

        unmuted = await bob.call("unmute_member", chat_id=gid, user_id=dave.id)
        self.assertEqual(await carol.client.expect("member_muted"), unmuted)
        self.assertNotIn("error", await dave.call("send_message", recipient_id=gid, content="back", is_group=True))
        # Without a duration: until unmuted, shown as null.
        forever = await bob.call("mute_member", chat_id=gid, user_id=dave.id)
        self.assertIsNone(forever["until"])
        with self.assertRaises(RefusedError):
            await self.post_at(dave, gid, 4e9)

    @inline
    async def test_sync_replays_bans_and_mutes_with_the_live_fields(self) -> None:
        alice, bob, carol, dave, gid = await self.moderated()
        later = await self.connect(carol.login)
        cursor = (await later.expect("connection_successful"))["cursor"]
        muted = await bob.call("mute_member", chat_id=gid, user_id=dave.id, duration=60)
        banned = await bob.call("ban_member", chat_id=gid, user_id=dave.id, reason="bye")
        changes = (await carol.call("sync", cursor=cursor))["changes"]
        self.assertEqual(
            [c for c in changes if c["kind"] in ("member_muted", "member_banned")],
            [
                {"kind": "member_muted", "event": "member_muted", **muted},
                {"kind": "member_banned", "event": "member_banned", **banned},
            ],
        )


for_each_backend(GroupModerationTestsMixin, InProcessChatCase, globals())
