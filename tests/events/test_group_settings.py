"""Group settings (issue 29): kind, read_only, slow_mode, topic, visibility, join_rule, on both databases."""

from __future__ import annotations

import uuid

from twisted.internet import defer

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase, LocalPerson
from umoc.errors import RefusedError
from umoc.records import Actor
from umoc.records.messages import NewMessage

SETTINGS = ("visibility", "join_rule", "kind", "topic", "slow_mode", "read_only", "retention")


class GroupSettingsTestsMixin:
    async def trio(self, **settings: object) -> tuple[LocalPerson, LocalPerson, LocalPerson, int]:
        """alice owns a group with ``settings``; bob is a moderator, carol a member."""
        alice, bob, carol = [await self.person(n) for n in ("alice", "bob", "carol")]
        for other in (bob, carol):
            await self.befriend(alice, other)
        created = await alice.call("create_group", name="S", member_ids=[bob.id, carol.id], **settings)
        assert "error" not in created, created
        await alice.call("set_member_role", chat_id=created["id"], user_id=bob.id, role="moderator")
        return alice, bob, carol, created["id"]

    async def post_at(self, person: LocalPerson, gid: int, at: float) -> object:
        storage = self.node.services.storage
        return await storage.messages.post(
            Actor.user(person.id, person.name), NewMessage(gid, True, "x"), str(uuid.uuid4()), at
        )

    @inline
    async def test_settings_are_set_at_creation_changed_by_admins_and_told_to_every_member(self) -> None:
        alice, bob, carol, gid = await self.trio(visibility="public", join_rule="request", topic="Rules: be kind")
        info = await carol.call("get_chat_info", chat_id=gid, is_group=True)
        self.assertEqual(
            {k: info[k] for k in SETTINGS},
            {
                "visibility": "public",
                "join_rule": "request",
                "kind": "group",
                "topic": "Rules: be kind",
                "slow_mode": 0,
                "read_only": False,
                "retention": 0,
            },
        )
        updated = await alice.call(
            "update_group", chat_id=gid, slow_mode=30, join_rule="open", topic="", retention=7 * 86400
        )
        self.assertEqual(
            updated,
            {
                "chat_id": gid,
                "name": "S",
                "description": None,
                "visibility": "public",
                "join_rule": "open",
                "kind": "group",
                "topic": "",
                "slow_mode": 30,
                "read_only": False,
                "retention": 7 * 86400,
                "avatar_file_id": None,
                "avatar_url": None,
            },
        )
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("group_updated"), updated)
        self.assertEqual((await bob.call("update_group", chat_id=gid, read_only=True))["code"], "forbidden")
        for bad in (
            {"slow_mode": 21601},
            {"retention": 60},
            {"retention": 315360001},
            {"kind": "channel"},
            {"visibility": "secret"},
            {"topic": "x" * 251},
        ):
            answer = await alice.call("update_group", chat_id=gid, **bad)
            self.assertEqual(answer["code"], "invalid_argument", bad)

    @inline
    async def test_a_broadcast_takes_messages_from_moderators_and_above_only(self) -> None:
        alice, bob, carol, gid = await self.trio(kind="broadcast")
        self.assertNotIn("error", await alice.call("send_message", recipient_id=gid, content="a", is_group=True))
        self.assertNotIn("error", await bob.call("send_message", recipient_id=gid, content="b", is_group=True))
        refused = await carol.call("send_message", recipient_id=gid, content="c", is_group=True)
        self.assertEqual((refused["error"], refused["code"]), ("Your role does not allow that", "forbidden"))

    @inline
    async def test_a_read_only_group_takes_messages_from_admins_and_the_owner_only(self) -> None:
        alice, bob, carol, gid = await self.trio(read_only=True)
        self.assertNotIn("error", await alice.call("send_message", recipient_id=gid, content="a", is_group=True))
        for person in (bob, carol):
            refused = await person.call("send_message", recipient_id=gid, content="no", is_group=True)
            self.assertEqual((refused["error"], refused["code"]), ("This group is read-only", "forbidden"))

    @inline
    async def test_slow_mode_spaces_a_members_messages_but_not_a_moderators(self) -> None:
        alice, bob, carol, gid = await self.trio(slow_mode=60)
        first = await carol.call("send_message", recipient_id=gid, content="1", is_group=True)
        refused = await carol.call("send_message", recipient_id=gid, content="2", is_group=True)
        self.assertEqual(refused["code"], "rate_limited")
        self.assertRegex(refused["error"], r"^Slow mode: wait (59|60) seconds$")
        self.assertIn(refused["retry_after"], (59, 60))
        for text in ("1", "2"):
            self.assertNotIn("error", await bob.call("send_message", recipient_id=gid, content=text, is_group=True))
        sent_at = float(
            await self.scalar("SELECT last_sent_at FROM user_chats WHERE chat_id = ? AND user_id = ?", gid, carol.id)
        )
        self.assertAlmostEqual(
            sent_at, await self.scalar("SELECT created_at FROM messages WHERE id = ?", first["message_id"])
        )
        with self.assertRaises(RefusedError):
            await self.post_at(carol, gid, sent_at + 59)
        await self.post_at(carol, gid, sent_at + 60)

    @inline
    async def test_slow_mode_counts_an_earlier_message_of_the_same_batch(self) -> None:
        _, bob, carol, gid = await self.trio(slow_mode=60)
        at = self.node.services.clock.seconds()
        # The moderator's message keeps the writer busy; carol's two, asked for meanwhile, are its next batch.
        posts = [defer.ensureDeferred(self.post_at(person, gid, at)) for person in (bob, carol, carol)]
        outcomes = await defer.DeferredList(posts, consumeErrors=True)
        refused = [result.value for ok, result in outcomes if not ok]
        self.assertEqual([ok for ok, _ in outcomes].count(True), 2, outcomes)
        self.assertEqual([type(e) for e in refused], [RefusedError])
        self.assertEqual(refused[0].code, "rate_limited")
        stored = await self.scalar("SELECT COUNT(*) FROM messages WHERE chat_id = ? AND sender_id = ?", gid, carol.id)
        self.assertEqual(stored, 1)

    @inline
    async def test_a_batch_of_group_messages_counts_each_in_the_chat_its_senders_and_the_feed(self) -> None:
        alice, bob, carol, gid = await self.trio()
        storage, at = self.node.services.storage, self.node.services.clock.seconds()
        senders = [alice] * 5 + [bob] * 3
        posts = [
            storage.messages.post(Actor.user(p.id, p.name), NewMessage(gid, True, f"m{i}"), str(uuid.uuid4()), at + i)
            for i, p in enumerate(senders)
        ]
        stored = await defer.gatherResults(posts)
        seqs = [message.seq for message, _ in stored]
        (chat,) = await self.rows("SELECT message_count, last_seq, last_activity FROM chats WHERE id = ?", gid)
        self.assertEqual((chat["message_count"], chat["last_seq"], chat["last_activity"]), (8, max(seqs), at + 7))
        for person, sent, last in ((alice, 5, at + 4), (bob, 3, at + 7)):
            (row,) = await self.rows(
                "SELECT sent_count, last_sent_at FROM user_chats WHERE chat_id = ? AND user_id = ?", gid, person.id
            )
            self.assertEqual((row["sent_count"], row["last_sent_at"]), (sent, last))
        unread = {c["id"]: c["unread_count"] for c in await carol.call("get_chats") if c["is_group"]}
        self.assertEqual(unread[gid], 8)
        unread = {c["id"]: c["unread_count"] for c in await alice.call("get_chats") if c["is_group"]}
        self.assertEqual(unread[gid], 3)
        feed = await self.rows(
            "SELECT message_seq FROM changes WHERE kind = 'message' AND chat_id = ? ORDER BY id", gid
        )
        self.assertEqual(sorted(r["message_seq"] for r in feed), sorted(seqs))


for_each_backend(GroupSettingsTestsMixin, InProcessChatCase, globals())


class MemberCapTestsMixin:
    config_overrides = {
        "ratelimits": {"enabled": False},
        "messages": {"max_group_members": 2},
        "groups": {"max_members_broadcast": 3},
    }

    @inline
    async def test_a_broadcast_holds_max_members_broadcast_and_a_group_max_group_members(self) -> None:
        alice, bob, carol, dave = [await self.person(n) for n in ("alice", "bob", "carol", "dave")]
        for other in (bob, carol):
            await self.befriend(alice, other)
        refused = await alice.call("create_group", name="G", member_ids=[bob.id, carol.id])
        self.assertEqual((refused["error"], refused["code"]), ("A group has at most 2 members", "conflict"))
        made = await alice.call(
            "create_group", name="B", member_ids=[bob.id, carol.id], kind="broadcast", join_rule="open"
        )
        self.assertEqual(made["member_count"], 3)
        full = await dave.call("join_group", chat_id=made["id"])
        self.assertEqual((full["error"], full["code"]), ("A group has at most 3 members", "conflict"))


for_each_backend(MemberCapTestsMixin, InProcessChatCase, globals())
