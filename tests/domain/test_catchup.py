"""Catch-up after a bus gap, on a `Clock`.

`CatchUpTests`: when catch-ups run, from which position each socket is
read, what is skipped as delivered, and when ``sync_needed`` is sent, over
a stand-in feed that answers what the test wrote in it (these tests are
about the catch-up, not the queries).

`ReplayMappingTests`: over a real database and a real node, each kind of
change is done once through its command while a socket listens; then the
hub forgets what it delivered and the catch-up replays the feed to a fresh
socket of the same user: it must get the same events with the same
payloads, in the same order, and a second catch-up (memory intact) nothing.
``tests/e2e/test_cluster_faults.py`` runs the whole thing over Redis.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.fakes import FakeSocket
from tests.support.node import NodeTestCase
from umoc.cluster.hub import Delivered, Hub
from umoc.domain.catchup import CatchUp
from umoc.domain.notices import replay
from umoc.errors import UserError
from umoc.socketapp import UserIdentity
from umoc.storage.feed import EXPIRED_CURSOR, Change, FeedPage
from umoc.storage.messages import Message

T0 = 1_700_000_000.0


def read_change(n: int, at: float, reader: int = 2) -> Change:
    """A ``read`` change: user ``reader`` read message ``m<n>`` (no record to name: the simplest kind)."""
    return Change("read", at, None, reader, f"user{reader}", {"message_ids": [f"m{n}"]})


def message_change(n: int, at: float, recipient: int = 1) -> Change:
    message = Message(f"m{n}", n + 1, 1, 2, "bob", recipient, False, "text", f"hello {n}", None, at)
    return Change("message", at, 1, 2, "bob", {}, message=message)


class FakeFeed:
    """Positions are ``c<index>`` into one list of ``(user_id, change)``, in commit order."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, Change]] = []
        self.asked = 0
        self.reads: list[tuple[int, str]] = []
        #: When set, each read waits on a Deferred the test fires.
        self.gate: list[defer.Deferred[None]] | None = None
        self.fail: Exception | None = None
        #: Positions before this index are pruned (EXPIRED_CURSOR).
        self.pruned = 0

    def add(self, user_id: int, change: Change) -> None:
        self.rows.append((user_id, change))

    def position(self) -> defer.Deferred[str]:
        self.asked += 1
        return defer.succeed(f"c{len(self.rows)}")

    def read(self, user_id: int, cursor: str, limit: int) -> defer.Deferred[FeedPage]:
        self.reads.append((user_id, cursor))
        if self.fail is not None:
            return defer.fail(self.fail)
        start = int(cursor[1:])
        if start < self.pruned:
            return defer.fail(UserError(EXPIRED_CURSOR, code="cursor_expired"))
        found, end = [], start
        for index in range(start, len(self.rows)):
            if len(found) == limit:
                break
            end = index + 1
            if self.rows[index][0] == user_id:
                found.append(self.rows[index][1])
        has_more = end < len(self.rows) and len(found) == limit
        page = FeedPage(found, f"c{end if has_more else len(self.rows)}", has_more)
        if self.gate is None:
            return defer.succeed(page)
        d: defer.Deferred[None] = defer.Deferred()
        self.gate.append(d)
        return d.addCallback(lambda _: page)


class FakeStorage:
    def __init__(self) -> None:
        self.feed = FakeFeed()


class CatchUpTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.hub = Hub(clock=self.clock)
        self.storage = FakeStorage()
        self.feed = self.storage.feed
        self.bus_ok = True
        self.catchup = CatchUp(self.hub, self.storage, self.clock, lambda: self.bus_ok)  # type: ignore[arg-type]

    def join(self, user_id: int = 1, cursor: str | None = "c0", sid: str = "a") -> FakeSocket:
        socket = FakeSocket(user_id, f"s{user_id}{sid}", sid=sid)
        socket.identity = UserIdentity(user_id, f"user{user_id}", f"s{user_id}{sid}", 0.0, cursor)
        self.hub.add(socket)  # type: ignore[arg-type]
        return socket

    def mark(self) -> None:
        self.successResultOf(defer.ensureDeferred(self.catchup.mark()))

    def gap(self, since: float) -> None:
        """A gap since ``since`` ends: the catch-up, then the time a hint waits."""
        self.successResultOf(self.catchup.request(since))
        self.clock.advance(CatchUp.HINT_WAIT)

    def live(self, user_id: int, change: Change) -> None:
        """The change is committed, and its live event reaches the user (the bus worked)."""
        self.feed.add(user_id, change)
        notice = replay.notice(change, user_id, set())
        self.hub.tell([user_id], notice, key=replay.key(change))

    def test_changes_of_the_gap_are_replayed_once_and_those_delivered_live_are_not(self) -> None:
        socket = self.join()
        self.live(1, read_change(1, T0))
        self.feed.add(1, read_change(2, T0 + 1))  # lost on the bus
        self.feed.add(1, message_change(3, T0 + 2))  # lost too
        self.live(1, read_change(4, T0 + 3))
        self.gap(T0 + 0.5)
        # Live first (m1, m4), then the two the gap lost, in feed order.
        self.assertEqual(
            [args[0] for args in socket.received], ["messages_read", "messages_read", "messages_read", "new_message"]
        )
        self.assertEqual([r["message_ids"] for r in socket.events("messages_read")], [["m1"], ["m4"], ["m2"]])
        self.assertEqual(self.catchup.replayed, 2)
        self.assertEqual(socket.events("sync_needed"), [], "an exact catch-up needs no hint")
        self.gap(T0 + 0.5)  # another node asks about the same outage
        self.assertEqual(len(socket.received), 4, "nothing twice")
        self.live(1, read_change(2, T0 + 1))  # a live copy delayed past the catch-up
        self.assertEqual(len(socket.received), 4)

    def test_live_deliveries_during_a_users_catch_up_come_after_it(self) -> None:
        socket = self.join()
        self.feed.add(1, read_change(1, T0))  # lost
        self.feed.gate = gate = []
        self.catchup.request(T0 - 1)
        self.live(1, read_change(2, T0 + 1))  # committed and told while the catch-up reads
        self.assertEqual(socket.received, [], "held")
        gate.pop().callback(None)
        self.assertEqual([r["message_ids"] for r in socket.events("messages_read")], [["m1"], ["m2"]])

    def test_deliveries_between_the_resubscription_and_the_catch_up_come_after_the_replay(self) -> None:
        socket = self.join()
        self.feed.add(1, read_change(1, T0))  # lost in the gap
        self.catchup.hold_for_gap()  # subscribed again; the ping that ends the gap is on its way
        self.live(1, read_change(2, T0 + 1))  # another node's publication arrives first
        self.assertEqual(socket.received, [], "held until the replay")
        self.gap(T0 - 1)
        self.assertEqual([r["message_ids"] for r in socket.events("messages_read")], [["m1"], ["m2"]])

    def test_a_hold_with_no_catch_up_after_it_is_released_after_its_limit(self) -> None:
        socket = self.join()
        self.catchup.hold_for_gap()
        self.live(1, read_change(2, T0 + 1))
        self.assertEqual(socket.received, [])
        self.clock.advance(CatchUp.EARLY_HOLD_LIMIT)
        self.assertEqual([r["message_ids"] for r in socket.events("messages_read")], [["m2"]])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_gap_with_nobody_connected_leaves_later_gaps_caught_up(self) -> None:
        self.gap(T0 - 5)  # nobody here: nothing to do, and it finishes at once
        self.assertFalse(self.catchup.running)
        self.assertEqual(self.clock.getDelayedCalls(), [], "no hint for sockets that connect later")
        socket = self.join()
        self.clock.advance(60)
        self.feed.add(1, read_change(1, self.clock.seconds()))
        self.gap(self.clock.seconds() - 3)
        self.assertEqual(len(socket.events("messages_read")), 1)

    def test_requests_during_a_run_merge_into_one_more_run(self) -> None:
        socket = self.join()
        self.feed.gate = gate = []
        first = self.catchup.request(T0 - 1)
        self.assertTrue(self.catchup.running)
        self.assertEqual(len(gate), 1)
        second, third = self.catchup.request(T0 - 30), self.catchup.request(T0 - 20)
        self.feed.add(1, read_change(1, T0))  # committed after the first run read
        gate.pop().callback(None)
        self.assertNoResult(first)  # the merged run goes on before anyone is told it is done
        self.assertEqual(len(gate), 1, "one more run, not two")
        gate.pop().callback(None)
        for d in (first, second, third):
            self.successResultOf(d)
        self.assertFalse(self.catchup.running)
        self.assertEqual(len(socket.events("messages_read")), 1)

    def test_each_socket_reads_from_the_later_of_a_mark_before_the_gap_and_its_connection_cursor(self) -> None:
        phone, laptop = self.join(1, "c0", "a"), self.join(1, None, "b")
        for n in range(6):  # a change, then a mark, every MARK_INTERVAL
            self.feed.add(1, read_change(n, self.clock.seconds()))
            self.mark()
            self.clock.advance(CatchUp.MARK_INTERVAL)
        newcomer = self.join(1, "c6", "c")  # connected after the last mark
        gap_start = self.clock.seconds() - 2  # marks c1-c4 were answered more than MARGIN before it
        self.gap(gap_start)
        self.assertEqual(sorted(set(self.feed.reads)), [(1, "c4"), (1, "c6")])
        for socket in (phone, laptop):
            self.assertEqual([r["message_ids"] for r in socket.events("messages_read")], [["m4"], ["m5"]])
        self.assertEqual(newcomer.events("messages_read"), [])
        self.assertEqual(self.catchup.replayed, 2)

    def test_a_change_replayed_from_one_position_reaches_the_sockets_at_another_too(self) -> None:
        old = self.join(1, "c0", "a")
        self.mark()  # at c0
        self.clock.advance(CatchUp.MARGIN + 1)
        self.feed.add(1, read_change(1, self.clock.seconds()))
        newer = self.join(1, "c0", "b")  # connected after the mark; its cursor is as old
        self.gap(self.clock.seconds())
        self.assertEqual(len(old.events("messages_read")), 1)
        self.assertEqual(len(newer.events("messages_read")), 1)

    def test_with_no_position_the_socket_is_told_to_sync_with_a_null_cursor(self) -> None:
        socket = self.join(1, None)
        self.mark()
        self.feed.add(1, read_change(1, T0))
        self.gap(self.clock.seconds() - 1)  # the mark is not MARGIN older than the gap
        self.assertEqual(socket.events("messages_read"), [])
        self.assertEqual(socket.events("sync_needed"), [{"reason": "cluster_gap", "cursor": None}])
        self.assertEqual(self.catchup.hinted, 1)

    def test_when_the_hub_forgot_deliveries_since_the_position_the_socket_syncs_instead(self) -> None:
        self.hub.delivered = Delivered(self.clock, size=2)
        socket = self.join(1, "c0")
        self.clock.advance(1)
        for n in range(3):  # the first key is forgotten: a replay from c0 could repeat it
            self.live(1, read_change(n, self.clock.seconds()))
        self.gap(T0 - 1)
        self.assertEqual(len(socket.events("messages_read")), 3, "live only")
        self.assertEqual(socket.events("sync_needed"), [{"reason": "cluster_gap", "cursor": "c0"}])

    def test_a_pruned_position_asks_for_a_sync_with_a_null_cursor(self) -> None:
        socket = self.join(1, "c0")
        self.feed.add(1, read_change(1, T0))
        self.feed.pruned = 1
        self.gap(T0 - 1)
        self.assertEqual(socket.events("sync_needed"), [{"reason": "cluster_gap", "cursor": None}])

    def test_a_long_read_stops_and_asks_for_a_sync_from_where_it_stopped(self) -> None:
        self.patch(CatchUp, "PAGE", 2)
        self.patch(CatchUp, "MAX_PER_USER", 4)
        socket = self.join(1, "c0")
        for n in range(7):
            self.feed.add(1, read_change(n, T0))
        self.gap(T0 - 1)
        self.assertEqual(len(socket.events("messages_read")), 4)
        self.assertEqual(socket.events("sync_needed"), [{"reason": "cluster_gap", "cursor": "c4"}])

    def test_a_failed_read_hints_a_sync_and_does_not_switch_catch_up_off(self) -> None:
        socket = self.join(1, "c0")
        self.feed.add(1, read_change(1, T0))
        self.feed.fail = RuntimeError("the database fell over")
        self.gap(T0 - 1)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(socket.events("sync_needed"), [{"reason": "cluster_gap", "cursor": "c0"}])
        self.feed.fail = None
        self.feed.add(1, read_change(2, T0))
        self.gap(T0 - 2)
        self.assertEqual(len(socket.events("messages_read")), 2)

    def test_another_nodes_request_about_the_same_outage_shares_the_hint(self) -> None:
        socket = self.join(1, None)
        self.successResultOf(self.catchup.request(T0 - 3))  # this node's own gap ends
        self.clock.advance(CatchUp.HINT_WAIT - 1)
        self.assertEqual(socket.events("sync_needed"), [], "the hint waits for the other nodes")
        self.successResultOf(self.catchup.request(T0 - 2))  # another node's publications failed meanwhile
        self.clock.advance(1)
        self.assertEqual(len(socket.events("sync_needed")), 1, "one hint for the outage")
        self.gap(T0 + 10)  # a later outage: a hint of its own
        self.assertEqual(len(socket.events("sync_needed")), 2)
        self.assertEqual(self.catchup.hinted, 2)

    def test_stopping_drops_the_scheduled_hint(self) -> None:
        socket = self.join(1, None)
        self.successResultOf(self.catchup.request(T0 - 3))
        self.catchup.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(CatchUp.HINT_WAIT)
        self.assertEqual(socket.events("sync_needed"), [])

    def test_no_marks_while_nobody_is_connected_or_the_bus_is_down(self) -> None:
        self.mark()
        self.assertEqual(self.feed.asked, 0)
        self.join()
        self.bus_ok = False
        self.mark()
        self.assertEqual(self.feed.asked, 0)
        self.bus_ok = True
        self.mark()
        self.assertEqual(self.feed.asked, 1)

    def test_marks_are_bounded(self) -> None:
        self.join()
        for _ in range(CatchUp.MAX_MARKS * 3):
            self.mark()
        self.assertEqual(len(self.catchup._marks), CatchUp.MAX_MARKS)


class DeliveredTests(unittest.SynchronousTestCase):
    def test_it_says_since_when_it_forgot_nothing(self) -> None:
        clock = Clock()
        delivered = Delivered(clock, size=2)
        for key in ("a", "b", "c"):
            clock.advance(1)
            delivered.add(key, [1])
        self.assertEqual(delivered.complete_since, 1.0, "'a', added at 1, is forgotten")
        self.assertFalse(delivered.has("a", 1))
        clock.advance(1)
        delivered.add("b", [2])  # reaching another user refreshes it
        clock.advance(1)
        delivered.add("d", [1])
        self.assertEqual(delivered.complete_since, 3.0, "'c' went before 'b'")
        self.assertTrue(delivered.has("b", 1) and delivered.has("b", 2))


class ReplayMappingMixin:
    """Each kind done once live, then replayed from the feed to a fresh socket: the same events, in order."""

    node: Any
    services: Any
    storage: Any
    clock: Any

    async def setup_people(self) -> None:
        self.alice = await self.connected("alice")  # type: ignore[attr-defined]
        self.bob = await self.connected("bob")  # type: ignore[attr-defined]
        self.carol = await self.connected("carol")  # type: ignore[attr-defined]
        self.dave = await self.connected("dave")  # type: ignore[attr-defined]
        for other in (self.bob, self.carol, self.dave):
            await self.call_ok(self.alice, "add_contact", contact_username=other.username)
            await self.call_ok(other, "accept_contact", contact_id=self.alice.user_id)

    async def call_ok(self, socket: FakeSocket, event: str, **payload: Any) -> Any:
        self.clock.advance(1)  # every change at a time of its own, as on a real clock
        answer = await self.call(socket, event, **payload)  # type: ignore[attr-defined]
        self.assertNotIn("error", answer if isinstance(answer, dict) else {}, answer)  # type: ignore[attr-defined]
        await self.settled()  # type: ignore[attr-defined]
        return answer

    async def replayed_to(self, user: FakeSocket, cursor: str) -> FakeSocket:
        """A fresh socket of ``user`` (connected at ``cursor``) after a catch-up from it."""
        fresh = FakeSocket(user.user_id, user.session_id, user.username, sid="fresh")
        fresh.identity = UserIdentity(user.user_id, user.username, user.session_id, 0.0, cursor)
        hub = self.services.hub
        hub.add(fresh)
        self.addCleanup(hub.remove, fresh)  # type: ignore[attr-defined]
        catchup = CatchUp(hub, self.storage, self.clock, presence=self.services.presence)
        await catchup.request(self.clock.seconds())
        return fresh

    @staticmethod
    def since(socket: FakeSocket, start: int) -> list[tuple[Any, ...]]:
        """What reached the socket after its first ``start`` events, typing and presence left out."""
        return [e for e in socket.received[start:] if e[0] not in ("typing_indicator", "user_status")]

    @staticmethod
    def as_now(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The events less what a later change altered (a replay shows it as it is now, as sync does).

        A group renamed after its creation, and the reactions list of a
        reaction change followed by another on the same message.
        """
        last: dict[str, int] = {}
        for n, event in enumerate(events):
            if event[0] == "reaction_updated":
                last[event[1]["message_id"]] = n
        shown = []
        for n, event in enumerate(events):
            if event[0] == "group_created":
                continue
            if event[0] == "reaction_updated" and last[event[1]["message_id"]] != n:
                event = (event[0], {k: v for k, v in event[1].items() if k != "reactions"})
            shown.append(event)
        return shown

    @inline
    async def test_every_kind_replays_as_it_was_told_live(self) -> None:
        await self.setup_people()
        alice, bob, carol, dave = self.alice, self.bob, self.carol, self.dave
        sent = [
            await self.call_ok(alice, "send_message", recipient_id=bob.user_id, content=f"hello {n}") for n in range(4)
        ]
        mine = await self.call_ok(bob, "send_message", recipient_id=alice.user_id, content="from bob")
        cursor = await self.storage.feed.position()
        start = {s: len(s.received) for s in (alice, bob, carol, dave)}

        await self.call_ok(alice, "send_message", recipient_id=bob.user_id, content="in the gap")
        await self.call_ok(alice, "edit_message", message_id=sent[0]["message_id"], content="hello, edited")
        await self.call_ok(alice, "delete_message", message_id=sent[1]["message_id"])
        await self.call_ok(alice, "add_reaction", message_id=sent[2]["message_id"], emoji="👍")
        await self.call_ok(alice, "add_reaction", message_id=sent[3]["message_id"], emoji="🎉")
        await self.call_ok(alice, "remove_reaction", message_id=sent[3]["message_id"], emoji="🎉")
        await self.call_ok(bob, "message_delivered", message_ids=[sent[2]["message_id"]])
        await self.call_ok(alice, "read_receipt", message_ids=[mine["message_id"]], sender_id=bob.user_id)
        await self.call_ok(
            alice, "mark_unread", chat_id=bob.user_id, is_group=False, from_message_id=mine["message_id"]
        )
        await self.call_ok(alice, "mute_chat", chat_id=bob.user_id, is_group=False)
        await self.call_ok(alice, "unmute_chat", chat_id=bob.user_id, is_group=False)
        group = await self.call_ok(alice, "create_group", name="g", member_ids=[bob.user_id])
        await self.call_ok(alice, "update_group", chat_id=group["id"], name="g2")
        await self.call_ok(alice, "add_group_member", chat_id=group["id"], user_id=carol.user_id)
        await self.call_ok(alice, "remove_group_member", chat_id=group["id"], user_id=carol.user_id)
        # The feed shows a profile change to those who are friends when it is read: after these, not before.
        await self.call_ok(alice, "remove_contact", contact_id=dave.user_id)
        await self.call_ok(alice, "add_contact", contact_username="dave")
        await self.call_ok(dave, "reject_contact", contact_id=alice.user_id)
        await self.call_ok(alice, "add_contact", contact_username="dave")
        await self.call_ok(dave, "accept_contact", contact_id=alice.user_id)
        await self.call_ok(alice, "block_contact", contact_id=dave.user_id)
        await self.call_ok(alice, "unblock_contact", contact_id=dave.user_id)
        await self.call_ok(alice, "update_profile", status_text="away")  # Dave is no friend by now

        for socket in (alice, bob, carol, dave):
            live = self.since(socket, start[socket])
            self.services.hub.delivered = Delivered(self.clock)  # the bus lost everything
            fresh = await self.replayed_to(socket, cursor)
            self.assertEqual(self.as_now(self.since(fresh, 0)), self.as_now(live), socket.username)
            self.assertEqual([e[0] for e in self.since(fresh, 0)], [e[0] for e in live], socket.username)
            # The memory intact, a catch-up sends nothing again.
            again = await self.replayed_to(socket, cursor)
            self.assertEqual(self.since(again, 0), [], socket.username)
        kinds = {e[0] for e in self.since(bob, start[bob])}
        self.assertTrue(
            {
                "new_message",
                "message_edited",
                "message_deleted",
                "reaction_updated",
                "messages_read",
                "profile_updated",
                "group_updated",
                "group_member_added",
                "group_member_removed",
            }
            <= kinds,
            kinds,
        )
        alice_kinds = [e[0] for e in self.since(alice, start[alice])]
        self.assertEqual(alice_kinds.count("chat_read"), 2, alice_kinds)  # the read, then mark_unread
        self.assertEqual(alice_kinds.count("chat_muted"), 2, alice_kinds)  # muted, then unmuted
        dave_kinds = {e[0] for e in self.since(dave, start[dave])}
        self.assertLessEqual({"contact_removed", "contact_request", "contact_rejected", "contact_accepted"}, dave_kinds)

    @inline
    async def test_a_group_created_in_the_gap_is_replayed_as_it_is_now(self) -> None:
        await self.setup_people()
        cursor = await self.storage.feed.position()
        start = len(self.bob.received)
        group = await self.call_ok(self.alice, "create_group", name="g", member_ids=[self.bob.user_id])
        live = self.since(self.bob, start)
        self.services.hub.delivered = Delivered(self.clock)
        fresh = await self.replayed_to(self.bob, cursor)
        self.assertEqual(self.since(fresh, 0), live)
        self.assertEqual(live[0][1]["id"], group["id"])

    @inline
    async def test_a_broadcasts_readers_are_replayed_only_their_own_membership_changes_as_told_live(self) -> None:
        await self.setup_people()
        alice, bob, carol, dave = self.alice, self.bob, self.carol, self.dave
        settings = {"kind": "broadcast", "visibility": "public", "join_rule": "open"}
        live_group = await self.call_ok(alice, "create_group", name="Live", member_ids=[], **settings)
        gid = live_group["id"]
        await self.call_ok(bob, "join_group", chat_id=gid)
        await self.call_ok(alice, "set_member_role", chat_id=gid, user_id=bob.user_id, role="moderator")
        await self.call_ok(carol, "join_group", chat_id=gid)
        cursor = await self.storage.feed.position()
        start = {s: len(s.received) for s in (alice, bob, carol, dave)}

        await self.call_ok(dave, "join_group", chat_id=gid)
        await self.call_ok(alice, "send_message", recipient_id=gid, content="welcome", is_group=True)
        await self.call_ok(bob, "mute_member", chat_id=gid, user_id=carol.user_id, duration=60)
        await self.call_ok(bob, "mute_member", chat_id=gid, user_id=dave.user_id, duration=60)
        await self.call_ok(dave, "leave_group", chat_id=gid)

        for socket in (alice, bob, carol, dave):
            live = self.since(socket, start[socket])
            self.services.hub.delivered = Delivered(self.clock)  # the bus lost everything
            fresh = await self.replayed_to(socket, cursor)
            # ``group_joined`` (the joiner's own sockets) is no feed change: its ``group_member_added`` is.
            live = [e for e in live if e[0] != "group_joined"]
            self.assertEqual(self.since(fresh, 0), live, socket.username)
        # Carol, a reader, heard of her own mute only; the staff of every change.
        carol_heard = [(e[0], e[1].get("user_id")) for e in self.since(carol, start[carol])]
        self.assertEqual(carol_heard, [("new_message", None), ("member_muted", carol.user_id)])
        bob_heard = [e[0] for e in self.since(bob, start[bob])]
        self.assertEqual(bob_heard.count("group_member_added"), 1, bob_heard)
        self.assertEqual(bob_heard.count("member_muted"), 2, bob_heard)
        self.assertEqual(bob_heard.count("group_member_removed"), 1, bob_heard)


for_each_backend(ReplayMappingMixin, NodeTestCase, globals())
