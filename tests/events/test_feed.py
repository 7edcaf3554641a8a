"""``sync {cursor}`` end to end with the stock python-socketio client, on both databases and across two nodes.

The storage tests (``tests/storage/test_feed.py``) walk every kind and the
PostgreSQL commit races; these drive the real server: the cursor of
``connection_successful``, changes made by other sockets while a user's own
is away, files, pages, and every refusal.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.support.chat import Person
from tests.support.databases import for_each_backend
from tests.support.deferreds import blocking, inline
from tests.support.inprocess import InProcessChatCase


async def feed(person: Person, cursor: str, limit: int = 100) -> tuple[list[dict[str, Any]], str]:
    """Every change after ``cursor`` in pages of ``limit``, and the cursor after them."""
    changes: list[dict[str, Any]] = []
    while True:
        result = await person.call("sync", cursor=cursor, limit=limit)
        assert "error" not in result, result
        assert set(result) == {"changes", "cursor", "has_more"}, result
        assert len(result["changes"]) <= limit
        changes += result["changes"]
        cursor = result["cursor"]
        if not result["has_more"]:
            return changes, cursor


class FeedTestsMixin:
    config_overrides = {"ratelimits": {"enabled": False}}

    @inline
    async def test_changes_made_while_away_replay_from_the_connection_cursor(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        await alice.call("send_message", recipient_id=bob.id, content="before bob's socket", type="text")
        # bob's socket is away; a new one starts from its connection_successful cursor.
        await blocking(bob.client.close)
        bob = Person(bob.login, await self.connect(bob.login))
        hello = await bob.client.expect("connection_successful")
        self.assertIsInstance(hello["cursor"], str)
        await blocking(bob.client.close)
        sent = [await alice.call("send_message", recipient_id=bob.id, content=f"m{i}", type="text") for i in range(5)]
        await alice.call("edit_message", message_id=sent[0]["message_id"], content="m0 again")
        await alice.call("add_reaction", message_id=sent[1]["message_id"], emoji="🎉")
        await alice.call("delete_message", message_id=sent[2]["message_id"])
        await alice.call("update_profile", display_name="Alice A.")
        group = await alice.call("create_group", name="weekend", member_ids=[bob.id])
        bob = Person(bob.login, await self.connect(bob.login))
        await bob.client.expect("connection_successful")

        changes, cursor = await feed(bob, hello["cursor"], limit=2)
        self.assertEqual(
            [(c["kind"], c["event"]) for c in changes],
            [("message", "new_message")] * 4
            + [
                ("edit", "message_edited"),
                ("reaction", "reaction_updated"),
                ("delete", "message_deleted"),
                ("profile", "profile_updated"),
                ("group", "group_created"),
            ],
        )
        self.assertEqual([c["content"] for c in changes[:4]], ["m0 again", "m1", "m3", "m4"])
        self.assertNotIn("m2", repr(changes))  # deleted: its text never comes back
        self.assertEqual(changes[4]["chat_id"], alice.id)
        self.assertEqual(changes[5]["reactions"], [{"emoji": "🎉", "count": 1, "user_ids": [alice.id]}])
        self.assertEqual(changes[6]["message_id"], sent[2]["message_id"])
        self.assertEqual(changes[7]["display_name"], "Alice A.")
        self.assertEqual(changes[8]["id"], group["id"])
        self.assertEqual(changes[8]["is_admin"], False)
        self.assertNotIn("before bob's socket", repr(changes))
        # Caught up: nothing more; bob's own reaction is next, once.
        self.assertEqual((await feed(bob, cursor))[0], [])
        await bob.call("add_reaction", message_id=sent[3]["message_id"], emoji="👍")
        later, cursor = await feed(bob, cursor)
        self.assertEqual([(c["kind"], c["user_id"], c["emoji"]) for c in later], [("reaction", bob.id, "👍")])
        self.assertEqual((await feed(bob, cursor))[0], [])

    @inline
    async def test_a_shared_file_is_a_message_change(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        start = await self.position(bob)
        ready = await alice.call(
            "upload_file_prepare",
            recipient_id=bob.id,
            is_group=False,
            file_name="a.txt",
            file_size=5,
            file_type="text/plain",
        )
        uploaded = await self.server.http(
            "PUT", ready["upload_url"], b"hello", {"Authorization": f"Bearer {ready['upload_token']}"}
        )
        self.assertEqual(uploaded.code, 201)
        shared = await alice.call(
            "upload_file_complete",
            file_id=ready["file_id"],
            recipient_id=bob.id,
            is_group=False,
            file_name="a.txt",
            file_type="text/plain",
        )
        changes, _ = await feed(bob, start)
        self.assertEqual(
            [(c["kind"], c["message_id"], c["type"]) for c in changes], [("message", shared["message_id"], "file")]
        )

    async def position(self, person: Person) -> str:
        client = await self.connect(person.login)
        return (await client.expect("connection_successful"))["cursor"]

    @inline
    async def test_refusals(self) -> None:
        alice = await self.person("alice")
        cursor = await self.position(alice)
        foreign = base64.urlsafe_b64encode(b"1|x|1").decode()
        for payload, word in (
            ({"cursor": "not a cursor"}, "cursor"),
            ({"cursor": foreign}, "cursor"),
            ({"cursor": cursor + "A"}, "cursor"),
            ({"cursor": "x" * 20_000}, "cursor"),
            ({"cursor": 12}, "cursor"),
            ({"cursor": cursor, "limit": 0}, "limit"),
            ({"cursor": cursor, "limit": 501}, "limit"),
            ({"cursor": cursor, "since": "2023-01-01T12:00:00Z"}, "since"),
            ({}, "cursor"),
        ):
            answer = await alice.call("sync", **payload)
            self.assertIn(word, answer.get("error", ""), payload)
        self.assertEqual(set(await alice.call("sync", cursor=cursor, limit=500)), {"changes", "cursor", "has_more"})


for_each_backend(FeedTestsMixin, InProcessChatCase, globals())
