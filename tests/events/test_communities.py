"""Communities (issue 29) beyond roles and moderation, on both databases: app-style direct messages
(``contacts.require_friendship: false``), a group's picture, ``groups.public_creation``, and what the
readers of a broadcast are spared (typing, others' comings and goings)."""

from __future__ import annotations

from typing import Any

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase, LocalPerson
from umoc.domain.webhooks import render

NOT_FRIENDS = "You can only send direct messages to your friends"
BLOCKED = "You cannot send direct messages to this user"


class OpenContactsTestsMixin:
    """``contacts.require_friendship: false``: anyone messages, reacts to and adds anyone who has not blocked them."""

    config_overrides: dict[str, dict[str, Any]] = {
        "ratelimits": {"enabled": False},
        "contacts": {"require_friendship": False},
    }

    async def dm(self, sender: LocalPerson, recipient: LocalPerson, text: str = "is this still for sale?") -> Any:
        return await sender.call("send_message", recipient_id=recipient.id, content=text, is_group=False)

    @inline
    async def test_strangers_message_each_other_react_and_type_without_being_friends(self) -> None:
        buyer, seller = await self.person("buyer"), await self.person("seller")
        sent = await self.dm(buyer, seller)
        self.assertNotIn("error", sent)
        self.assertEqual((await seller.client.expect("new_message"))["message_id"], sent["message_id"])
        answer = await self.dm(seller, buyer, "yes it is")
        self.assertNotIn("error", answer)
        reacted = await seller.call("add_reaction", message_id=sent["message_id"], emoji="👍")
        self.assertNotIn("error", reacted)
        await buyer.call("typing", recipient_id=seller.id, is_typing=True, is_group=False)
        self.assertEqual((await seller.client.expect("typing_indicator"))["user_id"], buyer.id)
        # Both see the chat; no friendship (nor streak) came of it.
        self.assertEqual([c["id"] for c in await seller.call("get_chats")], [buyer.id])
        self.assertEqual(await self.rows("SELECT * FROM contacts"), [])
        missing = await buyer.call("send_message", recipient_id=10**9, content="hello?", is_group=False)
        self.assertEqual((missing["error"], missing["code"]), ("User not found", "not_found"))

    @inline
    async def test_a_block_still_stops_direct_messages_both_ways(self) -> None:
        buyer, seller, other = [await self.person(n) for n in ("buyer", "seller", "other")]
        sent = await self.dm(buyer, seller)
        blocked = await seller.call("block_contact", contact_id=buyer.id)
        self.assertNotIn("error", blocked)
        before = await self.snapshot()
        for sender, recipient in ((buyer, seller), (seller, buyer)):
            answer = await self.dm(sender, recipient)
            self.assertEqual((answer["error"], answer["code"]), (BLOCKED, "forbidden"), sender.name)
        self.assertEqual(
            (await seller.call("add_reaction", message_id=sent["message_id"], emoji="👍"))["code"], "forbidden"
        )
        typing = await buyer.call("typing", recipient_id=seller.id, is_typing=True, is_group=False)
        self.assertEqual(typing["code"], "forbidden")
        self.assertEqual(await self.snapshot(), before)
        # Others are not affected; and the block lifted, they write again.
        self.assertNotIn("error", await self.dm(other, seller))
        await seller.call("unblock_contact", contact_id=buyer.id)
        self.assertNotIn("error", await self.dm(buyer, seller))

    @inline
    async def test_anyone_not_blocked_may_be_added_to_a_group(self) -> None:
        alice, bob, carol, dave = [await self.person(n) for n in ("alice", "bob", "carol", "dave")]
        created = await alice.call("create_group", name="Market", member_ids=[bob.id])
        self.assertEqual(created["member_count"], 2)
        self.assertNotIn("error", await alice.call("add_group_member", chat_id=created["id"], user_id=carol.id))
        await dave.call("block_contact", contact_id=alice.id)
        refused = await alice.call("add_group_member", chat_id=created["id"], user_id=dave.id)
        self.assertEqual((refused["error"], refused["code"]), ("You cannot add this user to a group", "forbidden"))
        refused = await alice.call("create_group", name="Again", member_ids=[bob.id, dave.id])
        self.assertEqual(refused["code"], "forbidden")


class FriendsOnlyTestsMixin:
    """The default, ``contacts.require_friendship: true``: strangers are refused, friends are not."""

    @inline
    async def test_strangers_are_refused_and_friends_are_not(self) -> None:
        buyer, seller = await self.person("buyer"), await self.person("seller")
        before = await self.snapshot()
        answer = await buyer.call("send_message", recipient_id=seller.id, content="hi", is_group=False)
        self.assertEqual((answer["error"], answer["code"]), (NOT_FRIENDS, "forbidden"))
        refused = await buyer.call("create_group", name="G", member_ids=[seller.id])
        self.assertEqual((refused["error"], refused["code"]), ("You can only add your friends to a group", "forbidden"))
        self.assertEqual(await self.snapshot(), before)
        await self.befriend(buyer, seller)
        self.assertNotIn(
            "error", await buyer.call("send_message", recipient_id=seller.id, content="hi", is_group=False)
        )


class GroupAvatarTestsMixin:
    config_overrides: dict[str, dict[str, Any]] = {"ratelimits": {"enabled": False}}

    async def image(self, person: LocalPerson) -> str:
        ready = await self.upload(person, b"\x89PNG", purpose="avatar")
        return str(ready["file_id"])

    async def download(self, url: str, who: LocalPerson) -> int:
        login = who.login
        headers = {"X-Session-ID": login["sessionID"], "X-Session-Token": login["token"]}
        return (await self.server.http("GET", url, None, headers)).code

    @inline
    async def test_a_group_picture_is_an_image_of_the_setters_shown_everywhere_and_served_to_whom_it_may(self) -> None:
        alice, bob, erin = [await self.person(n) for n in ("alice", "bob", "erin")]
        await self.befriend(alice, bob)
        picture = await self.image(alice)
        url = f"/api/files/{picture}"
        created = await alice.call("create_group", name="Club", member_ids=[bob.id], avatar_file_id=picture)
        gid = created["id"]
        self.assertEqual((created["avatar_file_id"], created["avatar_url"]), (picture, url))
        info = await bob.call("get_chat_info", chat_id=gid, is_group=True)
        self.assertEqual(info["avatar_url"], url)
        self.assertEqual([c["avatar_url"] for c in await bob.call("get_chats") if c["is_group"]], [url])
        self.assertEqual(await self.download(url, bob), 200)
        self.assertEqual(await self.download(url, erin), 404)  # a private group's picture: members only
        # Public: the directory shows it and anyone may fetch it.
        await alice.call("update_group", chat_id=gid, visibility="public", join_rule="open")
        listed = await erin.call("list_public_groups")
        self.assertEqual([g["avatar_url"] for g in listed["groups"]], [url])
        self.assertEqual(await self.download(url, erin), 200)
        # Someone else's file, a file not an image, a malformed id: refused, nothing changed.
        bobs = await self.image(bob)
        text = (
            await self.upload(
                alice, b"notes", file_name="notes.txt", file_type="text/plain", recipient_id=gid, is_group=True
            )
        )["file_id"]
        for bad, message in (
            (bobs, "Invalid 'avatar_file_id': unknown file"),
            (text, "Invalid 'avatar_file_id': an avatar must be an image"),
            ("nope", "Invalid 'avatar_file_id': expected a UUID string"),
        ):
            answer = await alice.call("update_group", chat_id=gid, avatar_file_id=bad)
            self.assertEqual((answer["error"], answer["code"]), (message, "invalid_argument"), bad)
        await self.drain_group_updates(alice, bob)
        # A new one is told to every member with the feed; "" clears it.
        second = await self.image(alice)
        updated = await alice.call("update_group", chat_id=gid, avatar_file_id=second)
        self.assertEqual(updated["avatar_url"], f"/api/files/{second}")
        self.assertEqual(await bob.client.expect("group_updated"), updated)
        cleared = await alice.call("update_group", chat_id=gid, avatar_file_id="")
        self.assertEqual((cleared["avatar_file_id"], cleared["avatar_url"]), (None, None))
        self.assertEqual((await bob.call("update_group", chat_id=gid, avatar_file_id=second))["code"], "forbidden")

    async def drain_group_updates(self, *people: LocalPerson) -> None:
        await self.settled()
        for person in people:
            person.client.drain("group_updated")


class PublicCreationTestsMixin:
    config_overrides: dict[str, dict[str, Any]] = {
        "ratelimits": {"enabled": False},
        "groups": {"public_creation": "admins"},
    }

    @inline
    async def test_only_administrators_make_a_group_public(self) -> None:
        alice = await self.person("alice")
        login = await self.login("root")
        await self.storage.admin.set_admin(login["user_id"], True)
        root = LocalPerson(login, await self.connect(login))
        refused = await alice.call("create_group", name="Town square", member_ids=[], visibility="public")
        self.assertEqual(
            (refused["error"], refused["code"]), ("Only administrators may create public groups", "forbidden")
        )
        private = await alice.call("create_group", name="Mine", member_ids=[])
        refused = await alice.call("update_group", chat_id=private["id"], visibility="public")
        self.assertEqual(refused["code"], "forbidden")
        self.assertEqual((await alice.call("list_public_groups"))["groups"], [])
        made = await root.call("create_group", name="Town square", member_ids=[], visibility="public")
        self.assertEqual(made["visibility"], "public")
        self.assertEqual([g["chat_id"] for g in (await alice.call("list_public_groups"))["groups"]], [made["id"]])


class BroadcastAudienceTestsMixin:
    """A broadcast's readers get its messages and nothing of typing or of other members' comings and goings."""

    config_overrides: dict[str, dict[str, Any]] = {"ratelimits": {"enabled": False}}

    @inline
    async def test_readers_get_messages_but_no_typing_nor_others_joining_or_leaving(self) -> None:
        host, mod, ann, ben = [await self.person(n) for n in ("host", "mod", "ann", "ben")]
        made = await host.call(
            "create_group", name="Live", member_ids=[], kind="broadcast", visibility="public", join_rule="open"
        )
        gid = made["id"]
        await mod.call("join_group", chat_id=gid)
        await host.call("set_member_role", chat_id=gid, user_id=mod.id, role="moderator")
        await ann.call("join_group", chat_id=gid)
        await ben.call("join_group", chat_id=gid)
        await self.settled()
        # ben's join reached the staff and ben, not ann.
        added = {"chat_id": gid, "user_id": ben.id, "username": "ben"}
        for person in (host, mod, ben):
            self.assertIn(added, person.client.drain("group_member_added"))
        self.assertNotIn(added, ann.client.drain("group_member_added"))
        # Typing: a member of a broadcast does not type; the host's reaches the staff only.
        refused = await ann.call("typing", recipient_id=gid, is_typing=True, is_group=True)
        self.assertEqual((refused["error"], refused["code"]), ("Your role does not allow that", "forbidden"))
        await host.call("typing", recipient_id=gid, is_typing=True, is_group=True)
        self.assertEqual((await mod.client.expect("typing_indicator"))["user_id"], host.id)
        await ann.client.expect_none("typing_indicator", within=0.1)
        # Messages reach everyone.
        sent = await host.call("send_message", recipient_id=gid, content="welcome", is_group=True)
        for person in (mod, ann, ben):
            self.assertEqual((await person.client.expect("new_message"))["message_id"], sent["message_id"])
        # ann leaving is told to the staff and ann, not ben; a role change to the member it is about.
        await ann.call("leave_group", chat_id=gid)
        await self.settled()
        self.assertEqual(ben.client.drain("group_member_removed"), [])
        self.assertEqual(mod.client.drain("group_member_removed"), [{"chat_id": gid, "user_id": ann.id}])
        await mod.call("mute_member", chat_id=gid, user_id=ben.id, duration=60)
        self.assertEqual((await ben.client.expect("member_muted"))["user_id"], ben.id)
        self.assertEqual((await host.client.expect("member_muted"))["user_id"], ben.id)
        # In an ordinary group everyone is still told everything.
        group = await host.call("create_group", name="Chat", member_ids=[], visibility="public", join_rule="open")
        await ann.call("join_group", chat_id=group["id"])
        await ben.call("join_group", chat_id=group["id"])
        await self.settled()
        joined = {"chat_id": group["id"], "user_id": ben.id, "username": "ben"}
        self.assertIn(joined, ann.client.drain("group_member_added"))

    @inline
    async def test_a_readers_sync_has_the_messages_and_its_own_membership_changes_only(self) -> None:
        host, mod, ann, ben = [await self.person(n) for n in ("host", "mod", "ann", "ben")]
        settings = {"kind": "broadcast", "visibility": "public", "join_rule": "open"}
        gid = (await host.call("create_group", name="Live", member_ids=[], **settings))["id"]
        await mod.call("join_group", chat_id=gid)
        await host.call("set_member_role", chat_id=gid, user_id=mod.id, role="moderator")
        cursor = await self.storage.feed.position()
        await ann.call("join_group", chat_id=gid)
        await ben.call("join_group", chat_id=gid)
        sent = await host.call("send_message", recipient_id=gid, content="welcome", is_group=True)
        await mod.call("mute_member", chat_id=gid, user_id=ben.id, duration=60)
        await ben.call("leave_group", chat_id=gid)
        await self.settled()

        async def synced(person: LocalPerson) -> list[tuple[str, Any]]:
            answer = await person.call("sync", cursor=cursor, limit=100)
            self.assertFalse(answer["has_more"])
            return [(c["event"], c.get("user_id") or c.get("message_id")) for c in answer["changes"]]

        joined, message = ("group_member_added", ann.id), ("new_message", sent["message_id"])
        self.assertEqual(await synced(ann), [joined, message])
        everything = [
            joined,
            ("group_member_added", ben.id),
            message,
            ("member_muted", ben.id),
            ("group_member_removed", ben.id),
        ]
        self.assertEqual(await synced(mod), everything)
        self.assertEqual(await synced(host), everything)
        self.assertEqual(await synced(ben), everything[1:])


class GroupWebhooksTestsMixin:
    """Each group change of issue 29 is a webhook, rendered from its feed row as the members saw it live."""

    config_overrides: dict[str, dict[str, Any]] = {"ratelimits": {"enabled": False}}

    @inline
    async def test_updates_roles_mutes_bans_and_leaving_are_webhooks_with_the_live_payloads(self) -> None:
        alice, bob, carol = [await self.person(n) for n in ("alice", "bob", "carol")]
        for other in (bob, carol):
            await self.befriend(alice, other)
        gid = (await alice.call("create_group", name="Hooks", member_ids=[bob.id, carol.id]))["id"]
        position = await self.storage.feed.position()
        updated = await alice.call("update_group", chat_id=gid, topic="hooked")
        role = await alice.call("set_member_role", chat_id=gid, user_id=bob.id, role="moderator")
        muted = await bob.call("mute_member", chat_id=gid, user_id=carol.id, duration=60)
        banned = await bob.call("ban_member", chat_id=gid, user_id=carol.id, reason="spam")
        await bob.call("leave_group", chat_id=gid)
        kinds = ("group", "member_removed", "member_role", "member_banned", "member_muted")
        batch = await self.storage.outbox.read(position, kinds, 100)
        hooks = [rendered for rendered in map(render, batch.rows) if rendered is not None]
        self.assertEqual(
            hooks,
            [
                ("group.updated", updated),
                ("group.member_role_changed", role),
                ("group.member_muted", {**muted, "by": bob.id}),
                ("group.member_banned", banned),
                ("group.member_removed", {"chat_id": gid, "user_id": carol.id}),
                ("group.member_removed", {"chat_id": gid, "user_id": bob.id}),
            ],
        )

    @inline
    async def test_a_request_to_join_is_one_webhook_whatever_the_moderators(self) -> None:
        alice, bob, dave = [await self.person(n) for n in ("alice", "bob", "dave")]
        await self.befriend(alice, bob)
        gid = (
            await alice.call(
                "create_group", name="Ask first", member_ids=[bob.id], visibility="public", join_rule="request"
            )
        )["id"]
        await alice.call("set_member_role", chat_id=gid, user_id=bob.id, role="moderator")
        position = await self.storage.feed.position()
        await dave.call("join_group", chat_id=gid)
        await dave.call("join_group", chat_id=gid)  # asked already: no second request
        batch = await self.storage.outbox.read(position, ("join_request",), 100)
        hooks = [rendered for rendered in map(render, batch.rows) if rendered is not None]
        self.assertEqual(hooks, [("group.join_requested", {"chat_id": gid, "user_id": dave.id, "username": "dave"})])


for_each_backend(OpenContactsTestsMixin, InProcessChatCase, globals())
for_each_backend(GroupWebhooksTestsMixin, InProcessChatCase, globals())
for_each_backend(FriendsOnlyTestsMixin, InProcessChatCase, globals())
for_each_backend(GroupAvatarTestsMixin, InProcessChatCase, globals())
for_each_backend(PublicCreationTestsMixin, InProcessChatCase, globals())
for_each_backend(BroadcastAudienceTestsMixin, InProcessChatCase, globals())
