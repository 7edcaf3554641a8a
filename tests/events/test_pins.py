"""Pinned messages on both databases: ``pin_message``, ``unpin_message``, ``get_pinned``, ``messages.max_pins``.

Each event's happy path, its refusals (which change nothing), delivery to
every member's sockets, the change in ``sync {cursor}`` and the catch-up's
replay of it (the same ``message_pinned`` the live event was).
"""

from __future__ import annotations

from typing import Any

from tests.events.test_feed import feed
from tests.events.test_messaging_v2 import MISSING, MessagingCase
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from umoc.domain.notices import replay


class PinTestsMixin(MessagingCase):
    config_overrides: dict[str, dict[str, Any]] = {"ratelimits": {"enabled": False}, "messages": {"max_pins": 2}}

    @inline
    async def test_a_pin_reaches_every_member_and_shows_in_get_pinned(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        # In a group moderators and above pin (docs/api.md "Roles").
        for member in (bob, carol):
            await alice.call("set_member_role", chat_id=gid, user_id=member.id, role="moderator")
        phone = await self.second_socket(bob)
        first = await self.send(alice, gid, "agenda", is_group=True)
        second = await self.send(carol, gid, "minutes", is_group=True)
        await self.drain(alice, bob, carol, dave)
        phone.drain_all()
        pinned = await bob.call("pin_message", message_id=first["message_id"])
        expected = {"chat_id": gid, "is_group": True, "message_id": first["message_id"], "pinned": True, "by": bob.id}
        self.assertEqual(pinned, expected)
        for client in (alice.client, bob.client, phone, carol.client):
            self.assertEqual(await client.expect("message_pinned"), expected)
        await dave.client.expect_none("message_pinned", within=0.1)
        await alice.call("pin_message", message_id=second["message_id"])
        shown = await carol.call("get_pinned", chat_id=gid, is_group=True)
        self.assertEqual((shown["chat_id"], shown["is_group"]), (gid, True))
        # Newest pin first, each as new_message shows it.
        self.assertEqual([m["message_id"] for m in shown["messages"]], [second["message_id"], first["message_id"]])
        self.assertEqual(shown["messages"][1]["content"], "agenda")
        self.assertEqual(shown["messages"][1]["sender_id"], alice.id)

        await self.drain(alice)
        unpinned = await carol.call("unpin_message", message_id=first["message_id"])
        self.assertEqual(unpinned, {**expected, "pinned": False, "by": carol.id})
        self.assertEqual(await alice.client.expect("message_pinned"), {**expected, "pinned": False, "by": carol.id})
        shown = await bob.call("get_pinned", chat_id=gid, is_group=True)
        self.assertEqual([m["message_id"] for m in shown["messages"]], [second["message_id"]])
        self.assertEqual(int((await self.rows("SELECT COUNT(*) FROM message_pins"))[0][0]), 1)

    @inline
    async def test_repeats_change_nothing_and_answer_only_the_asking_socket(self) -> None:
        alice, bob = await self.pair()
        sent = await self.send(alice, bob.id, "address")
        await bob.call("pin_message", message_id=sent["message_id"])
        await self.drain(alice, bob)
        again = await bob.call("pin_message", message_id=sent["message_id"])
        self.assertEqual(again["pinned"], True)
        self.assertEqual(await bob.client.expect("message_pinned"), again)
        await alice.client.expect_none("message_pinned", within=0.1)
        await bob.call("unpin_message", message_id=sent["message_id"])
        await self.drain(alice, bob)
        twice = await bob.call("unpin_message", message_id=sent["message_id"])
        self.assertEqual(twice["pinned"], False)
        await alice.client.expect_none("message_pinned", within=0.1)
        changes = await self.rows("SELECT COUNT(*) FROM changes WHERE kind = 'pin'")
        self.assertEqual(int(changes[0][0]), 2)

    @inline
    async def test_direct_pins_name_the_chat_as_each_side_calls_it(self) -> None:
        alice, bob = await self.pair()
        sent = await self.send(alice, bob.id, "hi")
        await self.drain(alice, bob)
        mine = await bob.call("pin_message", message_id=sent["message_id"])
        self.assertEqual(mine["chat_id"], alice.id)
        self.assertEqual((await alice.client.expect("message_pinned"))["chat_id"], bob.id)
        self.assertEqual(
            [m["message_id"] for m in (await alice.call("get_pinned", chat_id=bob.id))["messages"]],
            [sent["message_id"]],
        )

    @inline
    async def test_a_chat_holds_at_most_max_pins_live_ones(self) -> None:
        alice, bob = await self.pair()
        sent = [await self.send(alice, bob.id, f"m{i}") for i in range(3)]
        for each in sent[:2]:
            await alice.call("pin_message", message_id=each["message_id"])
        before = await self.rows("SELECT * FROM message_pins ORDER BY message_seq")
        await self.refused(
            alice,
            "pin_message",
            "Too many pinned messages: at most 2 per chat (unpin one first)",
            message_id=sent[2]["message_id"],
        )
        self.assertEqual(await self.rows("SELECT * FROM message_pins ORDER BY message_seq"), before)
        # A deleted message's pin no longer counts nor shows.
        await alice.call("delete_message", message_id=sent[0]["message_id"])
        self.assertEqual((await alice.call("pin_message", message_id=sent[2]["message_id"]))["pinned"], True)
        shown = await bob.call("get_pinned", chat_id=alice.id)
        self.assertEqual([m["message_id"] for m in shown["messages"]], [sent[2]["message_id"], sent[1]["message_id"]])

    @inline
    async def test_refusals_change_nothing(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        sent = await self.send(alice, gid, "secret plans", is_group=True)
        for event in ("pin_message", "unpin_message"):
            await self.refused(dave, event, "Message not found", message_id=sent["message_id"])
            await self.refused(alice, event, "Message not found", message_id=MISSING)
            await self.refused(alice, event, "Invalid 'message_id': expected a UUID string", message_id="nope")
        await self.refused(dave, "get_pinned", "Unknown chat", chat_id=gid, is_group=True)
        direct = await self.send(alice, bob.id, "hi")
        await alice.call("block_contact", contact_id=bob.id)
        await self.refused(
            alice,
            "pin_message",
            "You have blocked this user: unblock them to pin messages",
            **{"message_id": direct["message_id"]},
        )
        await self.refused(
            bob, "pin_message", "You can only pin messages in chats with your friends", message_id=direct["message_id"]
        )
        self.assertEqual(int((await self.rows("SELECT COUNT(*) FROM message_pins"))[0][0]), 0)

    @inline
    async def test_pins_come_back_in_sync_and_in_the_catch_up(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        await alice.call("set_member_role", chat_id=gid, user_id=bob.id, role="moderator")
        cursor = await self.server.services.storage.feed.position()
        sent = await self.send(alice, gid, "keep this", is_group=True)
        await bob.call("pin_message", message_id=sent["message_id"])
        await bob.call("unpin_message", message_id=sent["message_id"])
        changes, _ = await feed(carol, cursor)
        pins = [c for c in changes if c["kind"] == "pin"]
        self.assertEqual(
            pins,
            [
                {
                    "kind": "pin",
                    "event": "message_pinned",
                    "chat_id": gid,
                    "is_group": True,
                    "message_id": sent["message_id"],
                    "pinned": pinned,
                    "by": bob.id,
                }
                for pinned in (True, False)
            ],
        )
        # The catch-up after a bus gap replays each as the live event, under the live delivery's key.
        page = await self.server.services.storage.feed.read(carol.id, cursor, 100)
        replayed = [c for c in page.changes if c.kind == "pin"]
        self.assertEqual(
            [replay.key(c) for c in replayed],
            [
                replay.pin(sent["message_id"], bob.id, pinned, c.created_at)
                for pinned, c in zip((True, False), replayed, strict=True)
            ],
        )
        notice = replay.notice(replayed[0], carol.id, set())
        self.assertEqual(notice.name, "message_pinned")
        self.assertEqual(notice.payload, {k: v for k, v in pins[0].items() if k not in ("kind", "event")})
        # Once the message is deleted its pin changes are left out, as its other changes are.
        await alice.call("delete_message", message_id=sent["message_id"])
        changes, _ = await feed(carol, cursor)
        self.assertEqual([c for c in changes if c["kind"] == "pin"], [])


for_each_backend(PinTestsMixin, InProcessChatCase, globals())
