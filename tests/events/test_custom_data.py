"""Custom data on both databases: ``extra`` on messages, profiles and groups, and ``custom:<name>`` message types.

Each carrier's happy path (live, in history or info, in ``sync {cursor}``),
the bounds (refused, nothing stored), retries by ``client_msg_id`` comparing
``extra``, and messages with and without ``extra`` sent at once (on
PostgreSQL one group-commit batch: the plain ones through migration 018's
function, the others through ``post_txn``).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer

from tests.events.test_feed import feed
from tests.events.test_messaging_v2 import MessagingCase
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from umoc.ids import MessageIds
from umoc.records import Actor
from umoc.records.messages import NewMessage

CARD = {"kind": "location", "lat": 52.37, "lon": 4.89, "tags": ["café", None, True], "nested": {"a": {"b": [1]}}}


class CustomMessageTestsMixin(MessagingCase):
    config_overrides: dict[str, dict[str, Any]] = {
        "ratelimits": {"enabled": False},
        "messages": {"max_extra_bytes": 200},
    }

    @inline
    async def test_a_custom_message_with_extra_reaches_members_history_and_sync(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        cursor = await self.server.services.storage.feed.position()
        await self.drain(alice, bob, carol, dave)
        sent = await self.send(alice, gid, "Dam Square", is_group=True, type="custom:location", extra=CARD)
        self.assertEqual((sent["type"], sent["content"], sent["extra"]), ("custom:location", "Dam Square", CARD))
        for person in (bob, carol):
            self.assertEqual(await person.client.expect("new_message"), sent)
        await dave.client.expect_none("new_message", within=0.1)
        plain = await self.send(bob, gid, "nice", is_group=True)
        self.assertNotIn("extra", plain)
        history = await carol.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual([m.get("extra") for m in history["messages"]], [CARD, None])
        self.assertEqual(history["messages"][0]["type"], "custom:location")
        changes, _ = await feed(carol, cursor)
        messages = [c for c in changes if c["kind"] == "message"]
        self.assertEqual([(m["type"], m.get("extra")) for m in messages], [("custom:location", CARD), ("text", None)])
        # A custom message is not edited as text, and is not in the text search.
        await self.refused(
            alice, "edit_message", "Only text messages can be edited", message_id=sent["message_id"], content="x"
        )
        found = await carol.call("search_messages", query="Dam")
        self.assertEqual(found["results"], [])

    @inline
    async def test_extra_on_a_file_or_text_message_and_any_content_for_custom_types(self) -> None:
        alice, bob = await self.pair()
        text = await self.send(alice, bob.id, "hi", extra={"color": "red"})
        self.assertEqual(text["extra"], {"color": "red"})
        custom = await self.send(alice, bob.id, "[not json at all", type="custom:card.v2_x-y")
        self.assertNotIn("extra", custom)
        self.assertEqual(custom["type"], "custom:card.v2_x-y")
        empty = await self.send(alice, bob.id, "x", extra={})
        self.assertEqual(empty["extra"], {})

    @inline
    async def test_refused_types_and_extras_store_nothing(self) -> None:
        alice, bob = await self.pair()
        before = await self.snapshot()
        refusals = [
            ({"type": "sticker"}, "Invalid 'type'"),
            ({"type": "custom:"}, "Invalid 'type'"),
            ({"type": "custom:Big"}, "Invalid 'type'"),
            ({"type": "custom:" + "x" * 41}, "Invalid 'type'"),
            ({"extra": [1, 2]}, "Invalid 'extra': expected a JSON object"),
            ({"extra": "{}"}, "Invalid 'extra': expected a JSON object"),
            ({"extra": {"k": "x" * 200}}, "Invalid 'extra': at most 200 bytes as JSON"),
            ({"extra": {"a": [[[[[[[[1]]]]]]]]}}, "Invalid 'extra': at most 8 levels of nesting"),
        ]
        for payload, why in refusals:
            answer = await alice.call("send_message", recipient_id=bob.id, content="hi", **payload)
            self.assertEqual(answer.get("code"), "invalid_argument", payload)
            self.assertTrue(answer["error"].startswith(why), (payload, answer))
        self.assertEqual(await self.snapshot(), before)

    @inline
    async def test_a_retry_is_a_duplicate_only_with_the_same_extra(self) -> None:
        alice, bob = await self.pair()
        first = await self.send(alice, bob.id, "pin", type="custom:pin", extra={"x": 1}, client_msg_id="k1")
        again = await alice.call(
            "send_message", recipient_id=bob.id, content="pin", type="custom:pin", extra={"x": 1}, client_msg_id="k1"
        )
        self.assertEqual(
            (again["message_id"], again["duplicate"], again["extra"]), (first["message_id"], True, {"x": 1})
        )
        other = await alice.call(
            "send_message", recipient_id=bob.id, content="pin", type="custom:pin", extra={"x": 2}, client_msg_id="k1"
        )
        self.assertEqual(other, {"error": "'client_msg_id' was used for another message", "code": "conflict"})

    @inline
    async def test_messages_with_and_without_extra_written_in_one_batch_are_all_stored(self) -> None:
        alice, bob = await self.pair()
        messages, ids = self.server.services.storage.messages, MessageIds()
        sender = Actor(alice.id, alice.name)
        # Asked for together, before the writer's next turn: one group-commit batch.
        posts = [
            messages.post(sender, NewMessage(bob.id, False, f"m{i}", extra={"i": i} if i % 2 else None), ids.new(), 1.0)
            for i in range(8)
        ]
        stored = await defer.gatherResults(posts)
        self.assertEqual([m.extra for m, _ in stored], [{"i": i} if i % 2 else None for i in range(8)])
        history = await bob.call("get_chat_history", chat_id=alice.id, page_size=20)
        # Concurrent writes have no order between them: on PostgreSQL the function's share comes first.
        self.assertEqual(
            sorted((m["content"], m.get("extra")) for m in history["messages"]),
            [(f"m{i}", {"i": i} if i % 2 else None) for i in range(8)],
        )


class CustomProfileAndGroupTestsMixin(MessagingCase):
    config_overrides: dict[str, dict[str, Any]] = {
        "ratelimits": {"enabled": False},
        "messages": {"max_extra_bytes": 200},
    }

    @inline
    async def test_profile_extra_reaches_contacts_and_clears_with_an_empty_object(self) -> None:
        alice, bob = await self.pair()
        cursor = await self.server.services.storage.feed.position()
        await self.drain(alice, bob)
        updated = await alice.call("update_profile", extra={"theme": "dark", "badges": [1, 2]})
        self.assertEqual(updated["extra"], {"theme": "dark", "badges": [1, 2]})
        self.assertEqual(await bob.client.expect("profile_updated"), updated)
        self.assertEqual((await bob.call("get_profile", user_id=alice.id))["extra"], updated["extra"])
        # Other fields leave extra alone; {} clears it.
        renamed = await alice.call("update_profile", display_name="Alice")
        self.assertEqual(renamed["extra"], updated["extra"])
        cleared = await alice.call("update_profile", extra={})
        self.assertNotIn("extra", cleared)
        self.assertNotIn("extra", await bob.call("get_profile", user_id=alice.id))
        changes, _ = await feed(bob, cursor)
        self.assertEqual([c.get("extra") for c in changes if c["kind"] == "profile"], [None, None, None])
        answer = await alice.call("update_profile", extra={"k": "x" * 200})
        self.assertEqual(answer["code"], "invalid_argument")
        answer = await alice.call("update_profile", extra=[1])
        self.assertEqual(answer, {"error": "Invalid 'extra': expected a JSON object", "code": "invalid_argument"})

    @inline
    async def test_group_extra_in_chat_info_and_group_events(self) -> None:
        alice, bob, carol = [await self.person(n) for n in ("alice", "bob", "carol")]
        for other in (bob, carol):
            await self.befriend(alice, other)
        cursor = await self.server.services.storage.feed.position()
        created = await alice.call("create_group", name="Team", member_ids=[bob.id], extra={"color": "#f00"})
        self.assertEqual(created["extra"], {"color": "#f00"})
        self.assertEqual((await bob.client.expect("group_created"))["extra"], {"color": "#f00"})
        info = await bob.call("get_chat_info", chat_id=created["id"], is_group=True)
        self.assertEqual(info["extra"], {"color": "#f00"})
        updated = await alice.call("update_group", chat_id=created["id"], extra={"color": "#0f0"})
        shown = {k: updated[k] for k in ("chat_id", "name", "description", "extra")}
        self.assertEqual(
            shown, {"chat_id": created["id"], "name": "Team", "description": None, "extra": {"color": "#0f0"}}
        )
        self.assertEqual(updated["visibility"], "private", "the settings beside it")
        self.assertEqual(await bob.client.expect("group_updated"), updated)
        cleared = await alice.call("update_group", chat_id=created["id"], extra={})
        self.assertNotIn("extra", cleared)
        self.assertNotIn("extra", await bob.call("get_chat_info", chat_id=created["id"], is_group=True))
        changes, _ = await feed(bob, cursor)
        groups = [(c["event"], c.get("extra")) for c in changes if c["kind"] == "group"]
        self.assertEqual(
            groups, [("group_created", None), ("group_updated", {"color": "#0f0"}), ("group_updated", None)]
        )
        # Bounded; a plain group has none; only admins set it.
        answer = await alice.call("create_group", name="Big", member_ids=[], extra={"k": "x" * 200})
        self.assertEqual(answer["code"], "invalid_argument")
        plain = await alice.call("create_group", name="Plain", member_ids=[carol.id])
        self.assertNotIn("extra", plain)
        answer = await bob.call("update_group", chat_id=created["id"], extra={"mine": True})
        self.assertEqual(answer["code"], "forbidden")


for_each_backend(CustomMessageTestsMixin, InProcessChatCase, globals())
for_each_backend(CustomProfileAndGroupTestsMixin, InProcessChatCase, globals())


class CustomDataErasureTestsMixin(MessagingCase):
    """What an account leaves behind of its custom data and its polls (issue 30 beside issue 22's erasure)."""

    config_overrides: dict[str, dict[str, Any]] = {"ratelimits": {"enabled": False}}

    async def values(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self.rows(sql, *params)]

    @inline
    async def test_export_carries_extra_and_deletion_erases_it_and_the_votes(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        await alice.call("update_profile", extra={"theme": "dark"})
        card = await self.send(alice, gid, "here", is_group=True, type="custom:location", extra={"lat": 1})
        poll = await self.send(alice, gid, "When?", is_group=True, type="poll", poll={"options": ["mon", "tue"]})
        await bob.call("vote_poll", message_id=poll["message_id"], option_ids=[1])
        await alice.call("vote_poll", message_id=poll["message_id"], option_ids=[1])
        response = await self.server.http(
            "GET",
            "/api/export",
            None,
            {"X-Session-ID": alice.login["sessionID"], "X-Session-Token": alice.login["token"]},
        )
        exported = json.loads(response.body)
        self.assertEqual(exported["profile"]["extra"], {"theme": "dark"})
        self.assertEqual([m.get("extra") for m in exported["messages"]], [{"lat": 1}, None])
        # bob leaves without erasing: which option he chose goes, the tally keeps his vote.
        accounts = self.server.services.accounts
        await accounts.delete(bob.id, False, "admin")
        self.assertEqual(await self.values("SELECT user_id FROM poll_votes"), [(alice.id,)])
        # alice erases: her profile's and her messages' extra, her poll's options and votes go.
        await accounts.delete(alice.id, True, "admin")
        self.assertEqual(await self.values("SELECT extra FROM users WHERE id = ?", alice.id), [(None,)])
        rows = await self.values("SELECT type, extra FROM messages WHERE sender_id = ? ORDER BY seq", alice.id)
        self.assertEqual(rows, [("erased", None), ("erased", None)])
        self.assertEqual(await self.values("SELECT COUNT(*) FROM polls"), [(0,)])
        self.assertEqual(await self.values("SELECT COUNT(*) FROM poll_votes"), [(0,)])
        history = await carol.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual(
            [(m["type"], "extra" in m, "poll" in m) for m in history["messages"]][-2:], [("erased", False, False)] * 2
        )
        self.assertEqual(card["extra"], {"lat": 1})


for_each_backend(CustomDataErasureTestsMixin, InProcessChatCase, globals())
