"""Roles in groups (issue 29): the permission matrix, ``set_member_role``, and what roles change on the wire."""

from __future__ import annotations

from typing import Any

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase, LocalPerson
from umoc.errors import RefusedError

REFUSED = "Your role does not allow that"

#: What each role may do, as docs/api.md "Roles" says it (not read from the code's own table).
MATRIX: dict[str, set[str]] = {
    "owner": {
        "send",
        "react",
        "type",
        "delete_others",
        "pin",
        "mute",
        "ban",
        "update_group",
        "add_member",
        "remove_member",
        "set_role",
        "approve_join",
        "invite_link",
    },
    "admin": {
        "send",
        "react",
        "type",
        "delete_others",
        "pin",
        "mute",
        "ban",
        "update_group",
        "add_member",
        "remove_member",
        "set_role",
        "approve_join",
        "invite_link",
    },
    "moderator": {"send", "react", "type", "delete_others", "pin", "mute", "ban", "approve_join"},
    "member": {"send", "react", "type"},
    "reader": set(),
}
ACTIONS = (
    "send",
    "react",
    "type",
    "delete_others",
    "pin",
    "mute",
    "ban",
    "update_group",
    "add_member",
    "remove_member",
    "set_role",
    "approve_join",
    "invite_link",
)


class GroupRoleTestsMixin:
    async def group_of(self, owner: LocalPerson, *members: LocalPerson) -> int:
        for member in members:
            await self.befriend(owner, member)
        created = await owner.call("create_group", name="Roles", member_ids=[m.id for m in members])
        assert "error" not in created, created
        return created["id"]

    async def act(self, person: LocalPerson, action: str, gid: int, **ids: Any) -> dict[str, Any]:
        """One action of the matrix by ``person``: its answer."""
        if action == "send":
            return await person.call("send_message", recipient_id=gid, content="hello", is_group=True)
        if action == "react":
            return await person.call("add_reaction", message_id=ids["message_id"], emoji="👍")
        if action == "type":
            return await person.call("typing", recipient_id=gid, is_typing=True, is_group=True)
        if action == "delete_others":
            return await person.call("delete_message", message_id=ids["victim_message_id"])
        if action == "pin":
            return await person.call("pin_message", message_id=ids["message_id"])
        if action == "mute":
            return await person.call("mute_member", chat_id=gid, user_id=ids["set_target"], duration=60)
        if action == "ban":
            return await person.call("ban_member", chat_id=gid, user_id=ids["ban_target"])
        if action == "update_group":
            return await person.call("update_group", chat_id=gid, description=f"by {person.name}")
        if action == "add_member":
            return await person.call("add_group_member", chat_id=gid, user_id=ids["friend"])
        if action == "remove_member":
            return await person.call("remove_group_member", chat_id=gid, user_id=ids["target"])
        if action == "approve_join":
            return await person.call("approve_join", chat_id=gid, user_id=ids["requester"])
        if action == "invite_link":
            return await person.call("create_invite_link", chat_id=gid)
        assert action == "set_role"
        return await person.call("set_member_role", chat_id=gid, user_id=ids["set_target"], role="reader")

    @inline
    async def test_each_role_may_do_exactly_what_the_matrix_says(self) -> None:
        owner = await self.person("owner")
        actors = {role: await self.person(role) for role in ("admin", "moderator", "member", "reader")}
        actors["owner"] = owner
        # Per actor: a member to remove, one to mute and set the role of, one to ban, and a friend of theirs to add.
        targets = {
            role: (await self.person(f"rm{role}"), await self.person(f"set{role}"), await self.person(f"ban{role}"))
            for role in MATRIX
        }
        friends = {role: await self.person(f"new{role}") for role in MATRIX}
        gid = await self.group_of(
            owner, *[actors[r] for r in MATRIX if r != "owner"], *[t for pair in targets.values() for t in pair]
        )
        for role in ("admin", "moderator", "reader"):
            answer = await owner.call("set_member_role", chat_id=gid, user_id=actors[role].id, role=role)
            self.assertEqual(answer, {"chat_id": gid, "user_id": actors[role].id, "role": role, "by": owner.id})
        for role, friend in friends.items():
            await self.befriend(actors[role], friend)
        # Per actor, someone asking to join (the group takes requests).
        await owner.call("update_group", chat_id=gid, join_rule="request")
        requesters = {role: await self.person(f"req{role}") for role in MATRIX}
        for requester in requesters.values():
            self.assertEqual(await requester.call("join_group", chat_id=gid), {"status": "requested"})
        posted = await owner.call("send_message", recipient_id=gid, content="react to me", is_group=True)
        victims = {}
        for role, (removed, _, _) in targets.items():
            sent = await removed.call("send_message", recipient_id=gid, content="delete me", is_group=True)
            victims[role] = sent["message_id"]

        for role, actor in actors.items():
            self.assertEqual((await actor.call("get_chat_info", chat_id=gid, is_group=True))["role"], role)
            ids = {
                "message_id": posted["message_id"],
                "victim_message_id": victims[role],
                "friend": friends[role].id,
                "target": targets[role][0].id,
                "set_target": targets[role][1].id,
                "ban_target": targets[role][2].id,
                "requester": requesters[role].id,
            }
            for action in ACTIONS:
                answer = await self.act(actor, action, gid, **ids)
                if action in MATRIX[role]:
                    self.assertNotIn("error", answer, (role, action))
                else:
                    self.assertEqual((answer.get("error"), answer.get("code")), (REFUSED, "forbidden"), (role, action))

    @inline
    async def test_roles_are_set_below_ones_own_and_each_change_is_told_to_every_member(self) -> None:
        alice, bob, carol, dave = [await self.person(n) for n in ("alice", "bob", "carol", "dave")]
        gid = await self.group_of(alice, bob, carol, dave)
        made = await alice.call("set_member_role", chat_id=gid, user_id=bob.id, role="admin")
        self.assertEqual(made, {"chat_id": gid, "user_id": bob.id, "role": "admin", "by": alice.id})
        for person in (alice, bob, carol, dave):
            self.assertEqual(await person.client.expect("member_role_changed"), made)
        info = await bob.call("get_chat_info", chat_id=gid, is_group=True)
        self.assertEqual((info["role"], info["is_admin"]), ("admin", True))

        outsider = await self.person("erin")
        before = await self.snapshot()
        # An admin: roles below admin only, on members below admin only; never the owner.
        for user_id, role in ((carol.id, "admin"), (carol.id, "owner"), (alice.id, "member")):
            answer = await bob.call("set_member_role", chat_id=gid, user_id=user_id, role=role)
            self.assertEqual((answer["error"], answer["code"]), (REFUSED, "forbidden"), (user_id, role))
        self.assertEqual((await bob.call("remove_group_member", chat_id=gid, user_id=alice.id))["error"], REFUSED)
        answer = await bob.call("set_member_role", chat_id=gid, user_id=carol.id, role="boss")
        self.assertEqual(answer["code"], "invalid_argument")
        answer = await bob.call("set_member_role", chat_id=gid, user_id=outsider.id, role="member")
        self.assertEqual((answer["error"], answer["code"]), ("This user is not a member", "not_found"))
        answer = await outsider.call("set_member_role", chat_id=gid, user_id=bob.id, role="member")
        self.assertEqual((answer["error"], answer["code"]), ("Unknown chat", "not_found"))
        # Setting the role someone has changes nothing and tells nobody.
        same = await bob.call("set_member_role", chat_id=gid, user_id=carol.id, role="member")
        self.assertEqual(same["role"], "member")
        self.assertEqual(await self.snapshot(), before)
        await carol.client.expect_none("member_role_changed")

        made = await bob.call("set_member_role", chat_id=gid, user_id=carol.id, role="moderator")
        for person in (carol, dave):
            self.assertEqual(await person.client.expect("member_role_changed"), made)
        # The owner hands the group over: the new owner, then the old one as admin, both told.
        handed = await alice.call("set_member_role", chat_id=gid, user_id=dave.id, role="owner")
        self.assertEqual(handed, {"chat_id": gid, "user_id": dave.id, "role": "owner", "by": alice.id})
        self.assertEqual(await carol.client.expect("member_role_changed"), handed)
        demoted = await carol.client.expect("member_role_changed")
        self.assertEqual(demoted, {"chat_id": gid, "user_id": alice.id, "role": "admin", "by": alice.id})
        info = await alice.call("get_chat_info", chat_id=gid, is_group=True)
        self.assertEqual(
            sorted((m["username"], m["role"]) for m in info["members"]),
            [("alice", "admin"), ("bob", "admin"), ("carol", "moderator"), ("dave", "owner")],
        )
        # Admins cannot touch each other.
        self.assertEqual((await alice.call("remove_group_member", chat_id=gid, user_id=bob.id))["error"], REFUSED)

    @inline
    async def test_a_reader_reads_but_cannot_send_react_edit_or_type(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        gid = await self.group_of(alice, bob)
        mine = await bob.call("send_message", recipient_id=gid, content="before", is_group=True)
        await alice.call("set_member_role", chat_id=gid, user_id=bob.id, role="reader")
        theirs = await alice.call("send_message", recipient_id=gid, content="news", is_group=True)
        self.assertEqual((await bob.client.expect("new_message"))["message_id"], mine["message_id"])
        self.assertEqual((await bob.client.expect("new_message"))["message_id"], theirs["message_id"])
        before = await self.snapshot()
        alice.client.drain("typing_indicator")
        answers = [
            await bob.call("send_message", recipient_id=gid, content="x", is_group=True),
            await bob.call("add_reaction", message_id=theirs["message_id"], emoji="👍"),
            await bob.call("edit_message", message_id=mine["message_id"], content="edited"),
            await bob.call("typing", recipient_id=gid, is_typing=True, is_group=True),
        ]
        self.assertEqual({(a.get("error"), a.get("code")) for a in answers}, {(REFUSED, "forbidden")}, answers)
        self.assertEqual(await self.snapshot(), before)
        await alice.client.expect_none("typing_indicator")
        history = await bob.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual([m["content"] for m in history["messages"]], ["before", "news"])


for_each_backend(GroupRoleTestsMixin, InProcessChatCase, globals())


class GroupMembersTestsMixin:
    @inline
    async def test_get_members_pages_by_id_and_chat_info_lists_only_the_first_members(self) -> None:
        alice, bob, carol, dave = [await self.person(n) for n in ("alice", "bob", "carol", "dave")]
        for other in (bob, carol, dave):
            await self.befriend(alice, other)
        gid = (await alice.call("create_group", name="M", member_ids=[bob.id, carol.id, dave.id]))["id"]
        await alice.call("set_member_role", chat_id=gid, user_id=carol.id, role="moderator")
        await dave.call("block_contact", contact_id=alice.id)
        first = await dave.call("get_members", chat_id=gid, limit=2)
        self.assertEqual(
            first["members"][0],
            {
                "user_id": alice.id,
                "username": "alice",
                "display_name": None,
                "avatar_url": None,
                "role": "owner",
                "online": False,  # dave blocked her: her presence is hidden from him
            },
        )
        self.assertEqual([m["user_id"] for m in first["members"]], [alice.id, bob.id])
        self.assertEqual(first["members"][1]["online"], True)
        rest = await dave.call("get_members", chat_id=gid, limit=2, cursor=first["next_cursor"])
        self.assertEqual(
            [(m["user_id"], m["role"]) for m in rest["members"]], [(carol.id, "moderator"), (dave.id, "member")]
        )
        self.assertIsNone(rest["next_cursor"])
        outsider = await self.person("erin")
        self.assertEqual((await outsider.call("get_members", chat_id=gid))["error"], "Unknown chat")
        self.assertEqual((await dave.call("get_members", chat_id=gid, limit=201))["code"], "invalid_argument")
        # chat_info lists the first members only; the count and the viewer's own role stay whole.
        storage = self.node.services.storage
        info = await storage.groups.info(gid, dave.id, 2)
        self.assertEqual(([m.user_id for m in info.members], info.member_count), ([alice.id, bob.id], 4))
        self.assertEqual((info.role(dave.id), info.is_admin(dave.id)), ("member", False))
        with self.assertRaises(RefusedError):
            await storage.groups.info(gid, outsider.id, 2)


for_each_backend(GroupMembersTestsMixin, InProcessChatCase, globals())
