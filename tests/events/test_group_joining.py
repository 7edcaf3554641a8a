"""Joining groups (issue 29): the directory, open joins, requests approved and rejected, on both databases."""

from __future__ import annotations

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase, LocalPerson


class GroupJoiningTestsMixin:
    async def owned(self, owner: LocalPerson, name: str, **settings: object) -> int:
        created = await owner.call("create_group", name=name, member_ids=[], **settings)
        assert "error" not in created, created
        return created["id"]

    @inline
    async def test_the_directory_lists_public_groups_by_id_with_search_and_paging(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        ids = [
            await self.owned(alice, f"Python {i}", visibility="public", join_rule="open", topic="snakes")
            for i in range(3)
        ]
        await self.owned(alice, "Private python")
        cooking = await self.owned(alice, "Cooking", visibility="public", join_rule="request", kind="broadcast")
        first = await bob.call("list_public_groups", limit=2)
        self.assertEqual(
            first["groups"][0],
            {
                "chat_id": ids[0],
                "name": "Python 0",
                "topic": "snakes",
                "avatar_url": None,
                "member_count": 1,
                "kind": "group",
                "join_rule": "open",
            },
        )
        self.assertEqual([g["chat_id"] for g in first["groups"]], ids[:2])
        rest = await bob.call("list_public_groups", limit=2, cursor=first["next_cursor"])
        self.assertEqual([g["chat_id"] for g in rest["groups"]], [ids[2], cooking])
        self.assertIsNone(rest["next_cursor"])
        found = await bob.call("list_public_groups", query="PYTH")
        self.assertEqual(([g["chat_id"] for g in found["groups"]], found["next_cursor"]), (ids, None))
        self.assertEqual((await bob.call("list_public_groups", query="SNAKE%"))["groups"], [])
        self.assertEqual((await bob.call("list_public_groups", cursor="x1"))["code"], "invalid_argument")
        self.assertEqual((await bob.call("list_public_groups", limit=51))["code"], "invalid_argument")

    @inline
    async def test_an_open_group_is_joined_at_once_and_everyone_is_told(self) -> None:
        alice, bob, carol = [await self.person(n) for n in ("alice", "bob", "carol")]
        gid = await self.owned(alice, "Open", visibility="public", join_rule="open")
        joined = await bob.call("join_group", chat_id=gid)
        self.assertEqual(
            (joined["id"], joined["role"], joined["member_count"], joined["is_group"]), (gid, "member", 2, True)
        )
        self.assertEqual(await bob.client.expect("group_joined"), joined)
        added = {"chat_id": gid, "user_id": bob.id, "username": "bob"}
        for person in (alice, bob):
            self.assertEqual(await person.client.expect("group_member_added"), added)
        answer = await bob.call("join_group", chat_id=gid)
        self.assertEqual((answer["error"], answer["code"]), ("Already a member", "conflict"))
        self.assertNotIn("error", await bob.call("send_message", recipient_id=gid, content="hi", is_group=True))
        # Banned: no way back in by joining.
        await alice.call("ban_member", chat_id=gid, user_id=bob.id)
        answer = await bob.call("join_group", chat_id=gid)
        self.assertEqual((answer["error"], answer["code"]), ("You are banned from this group", "forbidden"))
        # An invitation-only group: "not open" when public, unknown when private.
        public = await self.owned(alice, "Invite", visibility="public")
        private = await self.owned(alice, "Secret")
        answer = await carol.call("join_group", chat_id=public)
        self.assertEqual((answer["error"], answer["code"]), ("This group is not open", "forbidden"))
        for chat_id in (private, private + 1000):
            self.assertEqual((await carol.call("join_group", chat_id=chat_id))["error"], "Unknown chat")

    @inline
    async def test_a_request_is_told_to_moderators_and_approved_or_rejected(self) -> None:
        alice, bob, carol, dave = [await self.person(n) for n in ("alice", "bob", "carol", "dave")]
        await self.befriend(alice, bob)
        gid = (await alice.call("create_group", name="Ask", member_ids=[bob.id], join_rule="request"))["id"]
        self.assertEqual(await carol.call("join_group", chat_id=gid), {"status": "requested"})
        asked = {"chat_id": gid, "user_id": carol.id, "username": "carol"}
        self.assertEqual(await alice.client.expect("join_requested"), asked)
        await bob.client.expect_none("join_requested")
        # Asking again changes nothing and tells nobody again.
        self.assertEqual(await carol.call("join_group", chat_id=gid), {"status": "requested"})
        await alice.client.expect_none("join_requested")
        answer = await bob.call("approve_join", chat_id=gid, user_id=carol.id)
        self.assertEqual((answer["error"], answer["code"]), ("Your role does not allow that", "forbidden"))

        approved = await alice.call("approve_join", chat_id=gid, user_id=carol.id)
        self.assertEqual(approved, asked)
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("group_member_added"), asked)
        self.assertEqual((await carol.client.expect("group_joined"))["id"], gid)
        answer = await alice.call("approve_join", chat_id=gid, user_id=carol.id)
        self.assertEqual((answer["error"], answer["code"]), ("No such join request", "not_found"))

        later = await self.connect(dave.login)
        cursor = (await later.expect("connection_successful"))["cursor"]
        await dave.call("join_group", chat_id=gid)
        rejected = await alice.call("reject_join", chat_id=gid, user_id=dave.id)
        self.assertEqual(rejected, {"chat_id": gid, "user_id": dave.id})
        self.assertEqual(await dave.client.expect("join_rejected"), {"chat_id": gid})
        self.assertEqual((await dave.call("get_chat_info", chat_id=gid, is_group=True))["error"], "Unknown chat")
        changes = (await dave.call("sync", cursor=cursor))["changes"]
        self.assertEqual(changes, [{"kind": "join_rejected", "event": "join_rejected", "chat_id": gid}])


for_each_backend(GroupJoiningTestsMixin, InProcessChatCase, globals())


class InviteLinkTestsMixin:
    @inline
    async def test_invite_links_join_count_their_uses_expire_and_are_revoked(self) -> None:
        alice, bob, carol, dave, erin = [await self.person(n) for n in ("alice", "bob", "carol", "dave", "erin")]
        gid = (await alice.call("create_group", name="Links", member_ids=[]))["id"]
        link = await alice.call("create_invite_link", chat_id=gid, max_uses=2, expires_in=3600)
        self.assertEqual(
            {k: link[k] for k in ("chat_id", "uses", "max_uses")}, {"chat_id": gid, "uses": 0, "max_uses": 2}
        )
        self.assertIsInstance(link["expires_at"], int)
        self.assertGreaterEqual(len(link["code"]), 32)
        # Only the digest is stored.
        self.assertIsNone(await self.scalar("SELECT id FROM group_invites WHERE code_hash = ?", link["code"]))
        self.assertEqual((await bob.call("create_invite_link", chat_id=gid))["error"], "Unknown chat")

        joined = await bob.call("join_by_invite", code=link["code"])
        self.assertEqual((joined["id"], joined["role"]), (gid, "member"))
        self.assertEqual(await bob.client.expect("group_joined"), joined)
        self.assertEqual((await alice.client.expect("group_member_added"))["user_id"], bob.id)
        self.assertEqual((await bob.call("join_by_invite", code=link["code"]))["error"], "Already a member")
        answer = await bob.call("create_invite_link", chat_id=gid)
        self.assertEqual((answer["error"], answer["code"]), ("Your role does not allow that", "forbidden"))
        listed = await alice.call("get_invite_links", chat_id=gid)
        self.assertEqual(len(listed["links"]), 1)
        entry = listed["links"][0]
        self.assertEqual((entry["code"], entry["uses"], entry["created_by"]), (None, 1, alice.id))
        self.assertEqual(entry["code_prefix"], link["code"][:6])

        self.assertNotIn("error", await carol.call("join_by_invite", code=link["code"]))
        spent = await dave.call("join_by_invite", code=link["code"])
        self.assertEqual((spent["error"], spent["code"]), ("Invalid or expired invite", "not_found"))
        self.assertEqual((await alice.call("get_invite_links", chat_id=gid))["links"], [])

        other = await alice.call("create_invite_link", chat_id=gid)
        self.assertIsNone(other["max_uses"])
        self.assertIsNone(other["expires_at"])
        revoked = await alice.call("revoke_invite_link", code=other["code"])
        self.assertEqual(revoked, {"chat_id": gid, "code": other["code"], "link_id": revoked["link_id"]})
        self.assertEqual((await dave.call("join_by_invite", code=other["code"]))["error"], "Invalid or expired invite")
        # A listed link (listed without its code) is revoked by its link_id.
        third = await alice.call("create_invite_link", chat_id=gid)
        [listed] = (await alice.call("get_invite_links", chat_id=gid))["links"]
        self.assertEqual((await bob.call("revoke_invite_link", link_id=listed["link_id"]))["code"], "forbidden")
        by_id = await alice.call("revoke_invite_link", link_id=listed["link_id"])
        self.assertEqual(by_id, {"chat_id": gid, "code": None, "link_id": listed["link_id"]})
        self.assertEqual((await dave.call("join_by_invite", code=third["code"]))["error"], "Invalid or expired invite")
        both = await alice.call("revoke_invite_link", code=third["code"], link_id=listed["link_id"])
        self.assertEqual(both["code"], "invalid_argument")
        self.assertEqual((await dave.call("join_by_invite", code="nonsense"))["error"], "Invalid or expired invite")

        # Expired: past its time, nobody joins by it.
        short = await alice.call("create_invite_link", chat_id=gid, expires_in=60)
        await self.node.services.storage.db.run(
            "test",
            lambda txn: txn.execute(
                "UPDATE group_invites SET expires_at = 1 WHERE code_prefix = ?", (short["code"][:6],)
            ),
        )
        self.assertEqual((await erin.call("join_by_invite", code=short["code"]))["error"], "Invalid or expired invite")
        # A ban holds against links too.
        await alice.call("ban_member", chat_id=gid, user_id=carol.id)
        third = await alice.call("create_invite_link", chat_id=gid)
        self.assertEqual(
            (await carol.call("join_by_invite", code=third["code"]))["error"], "You are banned from this group"
        )


for_each_backend(InviteLinkTestsMixin, InProcessChatCase, globals())
