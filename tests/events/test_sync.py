"""``sync``: missed messages since a time, for clients beyond the recovery window."""

from __future__ import annotations

from twisted.trial import unittest

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from umoc.errors import UserError
from umoc.events.sync import parse_since
from umoc.timefmt import iso


class ParseSinceTests(unittest.TestCase):
    def test_iso_8601_with_zone_and_epoch_seconds_or_milliseconds(self) -> None:
        for value in (
            "2023-01-01T12:00:00Z",
            "2023-01-01T12:00:00+00:00",
            "2023-01-01T13:00:00+01:00",
            1672574400,
            1672574400.0,
            1672574400000,
        ):
            self.assertEqual(parse_since("since", value), 1672574400.0, value)
        self.assertEqual(parse_since("since", "2023-01-01T12:00:00.250Z"), 1672574400.25)

    def test_bad_values_are_user_errors(self) -> None:
        for value in ("yesterday", "2023-01-01T12:00:00", "", "x" * 100, True, None, [], -1, {}):
            self.assertRaises(UserError, parse_since, "since", value)


class SyncTestsMixin:
    @inline
    async def test_bad_since_gets_error(self) -> None:
        _, client = await self.connected_user("alice")
        answer = await client.call("sync", client.with_session(since="last tuesday"))
        self.assertIn("since", answer["error"])
        self.assertIn("since", (await client.expect("error"))["message"])
        answer = await client.call("sync", client.with_session(since=1, limit=10_000))
        self.assertIn("limit", answer["error"])

    @inline
    async def test_sync_returns_messages_sent_since_in_order(self) -> None:
        bob = await self.person("bob")
        alice = await self.person("alice")
        await self.befriend(alice, bob)
        group = await alice.call("create_group", name="team", member_ids=[bob.id])
        since = iso(self.server.services.clock.seconds() - 1)
        for text in ("one", "two", "three"):
            sent = await alice.call("send_message", recipient_id=group["id"], is_group=True, content=text, type="text")
            self.assertNotIn("error", sent)
        result = await bob.call("sync", since=since)
        self.assertEqual([m["content"] for m in result["messages"]], ["one", "two", "three"])
        self.assertFalse(result["has_more"])
        result = await bob.call("sync", since=since, limit=2)
        self.assertEqual([m["content"] for m in result["messages"]], ["one", "two"])
        self.assertTrue(result["has_more"])


for_each_backend(SyncTestsMixin, InProcessChatCase, globals())
