"""Polls on both databases: ``send_message`` with ``type: "poll"``, ``vote_poll``, ``close_poll`` -> ``poll_updated``.

Each event's happy path, its refusals (which change nothing), one vote set
per user in O(1) rows, ``closes_at`` honoured, and the votes in history,
``sync {cursor}`` and the catch-up's replay.
"""

from __future__ import annotations

from typing import Any

from tests.events.test_feed import feed
from tests.events.test_messaging_v2 import MessagingCase
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline, sleep
from tests.support.inprocess import InProcessChatCase
from umoc.domain.notices import replay
from umoc.timefmt import iso


class PollTestsMixin(MessagingCase):
    config_overrides: dict[str, dict[str, Any]] = {"ratelimits": {"enabled": False}}

    async def poll(self, sender: Any, gid: int, **poll: Any) -> dict[str, Any]:
        return await self.send(
            sender, gid, "Lunch?", is_group=True, type="poll", poll={"options": ["pizza", "sushi", "salad"], **poll}
        )

    @inline
    async def test_votes_reach_every_member_and_replace_the_voters_earlier_one(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        sent = await self.poll(alice, gid)
        self.assertEqual(
            sent["poll"],
            {
                "options": [
                    {"id": 0, "text": "pizza", "votes": 0},
                    {"id": 1, "text": "sushi", "votes": 0},
                    {"id": 2, "text": "salad", "votes": 0},
                ],
                "multiple": False,
                "closes_at": None,
                "closed": False,
                "my_votes": [],
            },
        )
        self.assertEqual((sent["type"], sent["content"]), ("poll", "Lunch?"))
        await self.drain(alice, bob, carol, dave)
        voted = await bob.call("vote_poll", message_id=sent["message_id"], option_ids=[1])
        expected = {
            "message_id": sent["message_id"],
            "chat_id": gid,
            "is_group": True,
            "options": [{"id": 0, "votes": 0}, {"id": 1, "votes": 1}, {"id": 2, "votes": 0}],
            "voters": 1,
            "closed": False,
        }
        self.assertEqual(voted, expected)
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("poll_updated"), expected)
        await dave.client.expect_none("poll_updated", within=0.1)
        await carol.call("vote_poll", message_id=sent["message_id"], option_ids=[1])
        changed = await bob.call("vote_poll", message_id=sent["message_id"], option_ids=[2])
        self.assertEqual([o["votes"] for o in changed["options"]], [0, 1, 1])
        self.assertEqual(changed["voters"], 2)
        # Each reader sees their own choice.
        history = await bob.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual(history["messages"][0]["poll"]["my_votes"], [2])
        self.assertEqual([o["votes"] for o in history["messages"][0]["poll"]["options"]], [0, 1, 1])
        self.assertEqual(
            (await alice.call("get_chat_history", chat_id=gid, is_group=True))["messages"][0]["poll"]["my_votes"], []
        )
        # An empty vote takes it back.
        withdrawn = await bob.call("vote_poll", message_id=sent["message_id"], option_ids=[])
        self.assertEqual(([o["votes"] for o in withdrawn["options"]], withdrawn["voters"]), ([0, 1, 0], 1))
        # O(1) rows: one vote set per voter.
        self.assertEqual(int((await self.rows("SELECT COUNT(*) FROM poll_votes"))[0][0]), 1)
        self.assertEqual(int((await self.rows("SELECT COUNT(*) FROM polls"))[0][0]), 1)

    @inline
    async def test_multiple_choice_and_single_choice(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        single = await self.poll(alice, gid)
        many = await self.poll(alice, gid, multiple=True)
        both = await bob.call("vote_poll", message_id=many["message_id"], option_ids=[2, 0, 2])
        self.assertEqual([o["votes"] for o in both["options"]], [1, 0, 1])
        await self.refused(
            bob,
            "vote_poll",
            "Invalid 'option_ids': this poll takes one option",
            message_id=single["message_id"],
            option_ids=[0, 1],
        )
        await self.refused(
            bob,
            "vote_poll",
            "Invalid 'option_ids': this poll's options are 0 to 2",
            message_id=single["message_id"],
            option_ids=[3],
        )

    @inline
    async def test_closing_by_the_sender_or_an_admin_and_closes_at(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        sent = await self.poll(bob, gid)
        await self.refused(
            carol, "close_poll", "Only the poll's sender or a group admin may close it", message_id=sent["message_id"]
        )
        await carol.call("vote_poll", message_id=sent["message_id"], option_ids=[0])
        await self.drain(carol)
        closed = await alice.call("close_poll", message_id=sent["message_id"])  # alice: the group's admin
        self.assertEqual((closed["closed"], closed["voters"]), (True, 1))
        self.assertEqual((await carol.client.expect("poll_updated"))["closed"], True)
        await self.refused(carol, "vote_poll", "This poll is closed", message_id=sent["message_id"], option_ids=[1])
        await self.drain(alice, bob, carol)
        again = await bob.call("close_poll", message_id=sent["message_id"])
        self.assertEqual(again, closed)
        await carol.client.expect_none("poll_updated", within=0.1)
        # closes_at: votes until then, none after.
        # Long enough for a loaded machine to create the poll and vote before it closes (half a second could run
        # out first).
        now = self.server.services.clock.seconds()
        timed = await self.poll(alice, gid, closes_at=now + 3)  # epoch seconds, or ISO 8601
        self.assertEqual(timed["poll"]["closes_at"], iso(now + 3))
        self.assertNotIn("error", await bob.call("vote_poll", message_id=timed["message_id"], option_ids=[0]))
        await sleep(max(0.0, now + 3.1 - self.server.services.clock.seconds()))
        await self.refused(bob, "vote_poll", "This poll is closed", message_id=timed["message_id"], option_ids=[1])
        history = await bob.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual(history["messages"][-1]["poll"]["closed"], True)
        await self.refused(
            alice,
            "send_message",
            "Invalid 'poll.closes_at': already past",
            recipient_id=gid,
            is_group=True,
            content="late",
            type="poll",
            poll={"options": ["a", "b"], "closes_at": now - 10},
        )

    @inline
    async def test_refused_polls_and_votes_change_nothing(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        text = await self.send(alice, gid, "not a poll", is_group=True)
        before = await self.snapshot()
        bad = [
            ({"type": "poll"}, "Invalid 'poll': a message of type poll, and only one, carries 'poll'"),
            ({"poll": {"options": ["a", "b"]}}, "Invalid 'poll': a message of type poll, and only one, carries 'poll'"),
            ({"type": "poll", "poll": {"options": ["a"]}}, "Invalid 'poll.options': expected 2 to 10 strings"),
            ({"type": "poll", "poll": {"options": ["a"] * 11}}, "Invalid 'poll.options': expected 2 to 10 strings"),
            ({"type": "poll", "poll": {"options": ["a", " "]}}, "Invalid 'poll.options': each 1 to 200 characters"),
            (
                {"type": "poll", "poll": {"options": ["a", "b"], "multiple": "yes"}},
                "Invalid 'poll.multiple': expected true or false",
            ),
            ({"type": "poll", "poll": {"options": ["a", "b"], "closes_at": "soon"}}, "Invalid 'poll.closes_at'"),
            ({"type": "poll", "poll": {"options": ["a", "b"], "other": 1}}, "Invalid 'poll': expected"),
        ]
        for payload, why in bad:
            answer = await alice.call("send_message", recipient_id=gid, is_group=True, content="q", **payload)
            self.assertEqual(answer.get("code"), "invalid_argument", payload)
            self.assertTrue(answer["error"].startswith(why), (payload, answer))
        sent = await self.poll(alice, gid)
        before = await self.snapshot()
        await self.refused(
            bob, "vote_poll", "Invalid 'message_id': not a poll", message_id=text["message_id"], option_ids=[0]
        )
        await self.refused(dave, "vote_poll", "Message not found", message_id=sent["message_id"], option_ids=[0])
        await self.refused(dave, "close_poll", "Message not found", message_id=sent["message_id"])
        await self.refused(
            bob,
            "vote_poll",
            "Invalid 'option_ids': expected a list of option ids (0 to 9)",
            message_id=sent["message_id"],
            option_ids=[-1],
        )
        self.assertEqual(await self.snapshot(), before)
        self.assertEqual(int((await self.rows("SELECT COUNT(*) FROM poll_votes"))[0][0]), 0)

    @inline
    async def test_polls_and_votes_come_back_in_sync_and_in_the_catch_up(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        cursor = await self.server.services.storage.feed.position()
        sent = await self.poll(alice, gid, closes_at="2999-01-01T00:00:00Z")
        self.assertEqual(sent["poll"]["closes_at"], "2999-01-01T00:00:00Z")
        await bob.call("vote_poll", message_id=sent["message_id"], option_ids=[0])
        await carol.call("vote_poll", message_id=sent["message_id"], option_ids=[0])
        await alice.call("close_poll", message_id=sent["message_id"])
        changes, _ = await feed(carol, cursor)
        message = [c for c in changes if c["kind"] == "message"][0]
        self.assertEqual(message["poll"]["my_votes"], [0])
        self.assertEqual(message["poll"]["closed"], True)
        polls = [c for c in changes if c["kind"] == "poll"]
        self.assertEqual([c["event"] for c in polls], ["poll_updated"] * 3)
        # What the poll is now: the tallies after both votes, closed.
        self.assertEqual(polls[0]["options"], [{"id": 0, "votes": 2}, {"id": 1, "votes": 0}, {"id": 2, "votes": 0}])
        self.assertEqual((polls[-1]["voters"], polls[-1]["closed"]), (2, True))
        page = await self.server.services.storage.feed.read(carol.id, cursor, 100)
        replayed = [c for c in page.changes if c.kind == "poll"]
        self.assertEqual(
            [replay.key(c) for c in replayed],
            [
                replay.poll(sent["message_id"], who, event, c.created_at)
                for (who, event), c in zip(
                    ((bob.id, "vote"), (carol.id, "vote"), (alice.id, "close")), replayed, strict=True
                )
            ],
        )
        self.assertEqual(replay.notice(replayed[-1], carol.id, set()).name, "poll_updated")


for_each_backend(PollTestsMixin, InProcessChatCase, globals())
