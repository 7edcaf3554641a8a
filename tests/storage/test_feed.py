"""The change feed in storage, on both databases: every kind, in order, once, whatever the timestamps.

Every change here happens at the same instant (``T0``): the order can only
come from the feed's positions, never from a clock.  The PostgreSQL case
of two transactions committing out of id order uses two connections of
its own, so the test decides who commits when.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

from twisted.internet import defer

from tests.support.databases import (
    DatabaseTestCase,
    TwoWritersTestCase,
    for_each_backend,
    no_other_transaction_older_than_the_prune,
)
from tests.support.deferreds import eventually, inline
from umoc.domain.notices import shapes
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.groups import Ban, GroupChange, NewGroup
from umoc.records.groups import Mute as GroupMute
from umoc.records.messages import Deletion, Edit, MarkUnread, Mute, NewMessage, Reaction, ReadReceipt
from umoc.records.profiles import ProfileChange
from umoc.storage import Storage
from umoc.storage.changes import NewChange, record_txn
from umoc.storage.feed import EXPIRED_CURSOR, FeedPage

T0 = 1_700_000_000.0
MAX_MEMBERS = 100


def _summary(page_changes: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What tells changes apart: kind, event and the ids they name."""
    return [
        (
            c["kind"],
            c["event"],
            c.get("message_id") or c.get("chat_id") or c.get("id"),
            c.get("user_id"),
            c.get("content"),
        )
        for c in page_changes
    ]


class FeedTestsMixin:
    storage: Storage

    async def users(self, *names: str) -> list[int]:
        return [(await self.storage.users.create(name, "not a hash", T0)).id for name in names]

    async def befriend(self, a: int, b: int, b_name: str) -> None:
        await self.storage.contacts.request(a, b_name, T0)
        await self.storage.contacts.accept(b, a, T0)

    async def send(self, sender: int, name: str, to: int, content: str, is_group: bool = False) -> str:
        message_id = f"00000000-0000-4000-8000-{self.next_id():012d}"
        await self.storage.messages.post(Actor.user(sender, name), NewMessage(to, is_group, content), message_id, T0)
        return message_id

    def next_id(self) -> int:
        self._ids = getattr(self, "_ids", 0) + 1
        return self._ids

    async def read_all(self, user_id: int, cursor: str, limit: int) -> tuple[list[dict[str, Any]], str, int]:
        """Every change after ``cursor`` in pages of ``limit``: the changes (as sent), the last cursor, the pages."""
        changes: list[dict[str, Any]] = []
        pages = 0
        while True:
            page: FeedPage = await self.storage.feed.read(user_id, cursor, limit)
            pages += 1
            self.assertLessEqual(len(page.changes), limit)
            changes += [shapes.feed_change(c, user_id, set()) for c in page.changes]
            cursor = page.cursor
            if not page.has_more:
                return changes, cursor, pages

    @inline
    async def test_every_kind_replays_once_in_order_across_pages_and_nothing_else(self) -> None:
        alice, bob, carol, dave = await self.users("alice", "bob", "carol", "dave")
        start = await self.storage.feed.position()
        await self.befriend(alice, bob, "bob")  # bob: contact_request, contact_accepted
        await self.befriend(alice, carol, "carol")  # not bob's
        sent = [await self.send(alice, "alice", bob, f"m{i}") for i in range(6)]  # 6 messages, one instant
        await self.send(alice, "alice", carol, "secret")  # another pair's chat
        await self.storage.edits.edit(alice, Edit(sent[0], "m0 edited"), T0, 0)
        await self.storage.reactions.add(bob, Reaction(sent[1], "👍"), T0, 20)
        await self.storage.reactions.remove(bob, Reaction(sent[1], "👍"), T0)
        mine = await self.send(bob, "bob", alice, "from bob")
        await self.storage.messages.mark_read(alice, ReadReceipt(bob, (mine,)), T0)  # bob: read
        await self.storage.deliveries.mark_delivered(alice, [mine], T0)  # bob: delivered
        await self.storage.messages.mark_read(bob, ReadReceipt(alice, (sent[1],)), T0)  # alice's; bob: chat_read
        await self.storage.readstate.mark_unread(bob, MarkUnread(alice, False, sent[1]), T0)  # bob: chat_read
        await self.storage.push.mute(bob, Mute(alice, False, True, T0 + 60), T0)  # bob: chat_muted
        await self.storage.push.mute(alice, Mute(bob, False), T0)  # alice's own
        await self.storage.edits.edit(alice, Edit(sent[2], "edited, then deleted"), T0, 0)
        await self.storage.messages.delete(Actor.user(alice, "alice"), Deletion(sent[2]), T0)  # bob: delete only
        group = await self.storage.groups.create(alice, NewGroup("early", None, [carol]), T0, MAX_MEMBERS)
        await self.send(alice, "alice", group, "before bob joined", is_group=True)
        await self.storage.groups.add_member(group, alice, bob, T0, MAX_MEMBERS)  # bob: member_added
        await self.send(alice, "alice", group, "while bob is in", is_group=True)  # bob: message
        await self.storage.groups.update(alice, GroupChange(group, "renamed"), T0)  # bob: group updated
        await self.storage.groups.remove_member(group, alice, bob, T0)  # bob: member_removed
        await self.send(alice, "alice", group, "after bob left", is_group=True)
        await self.storage.groups.update(alice, GroupChange(group, "renamed again"), T0)
        # bob: a contact's profile
        await self.storage.profiles.update(alice, ProfileChange(display_name="Alice"), now=T0)
        await self.storage.profiles.update(carol, ProfileChange(display_name="Carol"), now=T0)  # not bob's contact
        await self.storage.profiles.update(bob, ProfileChange(status_text="here"), now=T0)  # bob: his own
        await self.storage.contacts.block(bob, dave, T0)  # bob: contact_blocked
        # bob: group created
        team = await self.storage.groups.create(alice, NewGroup("team", None, [bob]), T0, MAX_MEMBERS)

        changes, cursor, pages = await self.read_all(bob, start, 3)
        expected = [
            ("contact", "contact_request", None, alice, None),
            ("contact", "contact_accepted", None, alice, None),
            ("message", "new_message", sent[0], None, "m0 edited"),
            ("message", "new_message", sent[1], None, "m1"),
            ("message", "new_message", sent[3], None, "m3"),
            ("message", "new_message", sent[4], None, "m4"),
            ("message", "new_message", sent[5], None, "m5"),
            ("edit", "message_edited", sent[0], None, "m0 edited"),
            ("reaction", "reaction_updated", sent[1], bob, None),
            ("reaction", "reaction_updated", sent[1], bob, None),
            ("message", "new_message", mine, None, "from bob"),
            ("read", "messages_read", None, None, None),
            ("delivered", "messages_delivered", alice, alice, None),
            ("chat_read", "chat_read", alice, None, None),
            ("chat_read", "chat_read", alice, None, None),
            ("chat_muted", "chat_muted", alice, None, None),
            ("delete", "message_deleted", sent[2], None, None),
            ("member_added", "group_member_added", group, bob, None),
            ("message", "new_message", None, None, "while bob is in"),
            ("group", "group_updated", group, None, None),
            ("member_removed", "group_member_removed", group, bob, None),
            ("profile", "profile_updated", None, alice, None),
            ("profile", "profile_updated", None, bob, None),
            ("contact", "contact_blocked", None, dave, None),
            ("group", "group_created", team, None, None),
        ]
        got = _summary(changes)
        got[18] = got[18][:2] + (None, None, got[18][4])  # a group message's id is made here; its content tells it
        self.assertEqual(got, expected)
        self.assertEqual(pages, 9)  # 25 changes in pages of 3
        # What bob's other devices are told: the counts as they were then, and the mute.
        read, unread, muted = changes[13:16]
        self.assertEqual(
            (read["last_read_message_id"], read["unread_count"], read["mention_count"], read["is_group"]),
            (sent[1], 5, 0, False),
        )
        self.assertEqual((unread["last_read_message_id"], unread["unread_count"]), (None, 6))
        self.assertEqual((muted["muted"], muted["until"], muted["is_group"]), (True, "2023-11-14T22:14:20Z", False))
        by_kind = {c["kind"]: c for c in changes}
        self.assertEqual(
            set(by_kind),
            {
                "message",
                "edit",
                "delete",
                "reaction",
                "read",
                "delivered",
                "contact",
                "group",
                "member_added",
                "member_removed",
                "profile",
                "chat_read",
                "chat_muted",
            },
        )
        self.assertEqual(changes[8]["action"], "added")
        self.assertEqual(changes[9]["action"], "removed")
        self.assertEqual(changes[9]["reactions"], [])
        self.assertEqual(changes[11]["reader_id"], alice)
        self.assertEqual(changes[11]["message_ids"], [mine])
        self.assertEqual(changes[12]["message_ids"], [mine])
        self.assertEqual(changes[7]["chat_id"], alice)  # as bob calls the chat
        self.assertEqual(changes[19]["name"], "renamed")
        self.assertEqual(changes[21]["display_name"], "Alice")
        self.assertEqual([m["user_id"] for m in changes[24]["members"]], [alice, bob])
        self.assertEqual(changes[1]["username"], "alice")
        self.assertEqual(changes[1]["status"], "FRIEND")
        # Deleted text never comes back: not the message, not its edit.
        self.assertNotIn("edited, then deleted", repr(changes))

        # One read gives the same; from the last cursor, nothing until something new.
        whole, end, _ = await self.read_all(bob, start, 500)
        self.assertEqual(whole, changes)
        self.assertEqual((await self.storage.feed.read(bob, cursor, 10)).changes, [])
        await self.send(alice, "alice", bob, "later")
        later, _, _ = await self.read_all(bob, end, 10)
        self.assertEqual([c.get("content") for c in later], ["later"])

        # Dave sees nothing of bob's block; carol none of bob's chat.
        dave_changes, _, _ = await self.read_all(dave, start, 100)
        self.assertEqual(dave_changes, [])
        carol_kinds = {c["event"] for c in (await self.read_all(carol, start, 100))[0]}
        self.assertNotIn("contact_blocked", carol_kinds)
        self.assertNotIn("m1", repr((await self.read_all(carol, start, 100))[0]))

    @inline
    async def test_group_committed_writes_come_out_once_each_in_each_chats_order(self) -> None:
        alice, bob, carol = await self.users("alice", "bob", "carol")
        await self.befriend(alice, bob, "bob")
        await self.befriend(carol, bob, "bob")
        start = await self.storage.feed.position()
        senders = [(alice, "alice"), (carol, "carol")]
        sends = [
            self.storage.messages.post(
                Actor.user(*senders[i % 2]),
                NewMessage(bob, False, f"message {i}"),
                f"00000000-0000-4000-8000-{i:012d}",
                T0,
            )
            for i in range(80)
        ]
        posted = [message for message, _ in await defer.gatherResults(sends)]
        self.assertGreater(self.db.writer.items, self.db.writer.batches)  # they did share transactions
        changes, _, _ = await self.read_all(bob, start, 7)
        self.assertEqual(sorted(c["message_id"] for c in changes), sorted(m.id for m in posted))
        for sender in (alice, carol):
            in_feed = [c["message_id"] for c in changes if c["sender_id"] == sender]
            by_seq = [m.id for m in sorted(posted, key=lambda m: m.seq) if m.sender_id == sender]
            self.assertEqual(in_feed, by_seq)

    @inline
    async def test_a_read_across_a_block_is_not_in_the_senders_feed(self) -> None:
        alice, bob = await self.users("alice", "bob")
        await self.befriend(alice, bob, "bob")
        sent = await self.send(bob, "bob", alice, "before the block")
        start = await self.storage.feed.position()
        await self.storage.contacts.block(alice, bob, T0)
        await self.storage.messages.mark_read(alice, ReadReceipt(bob, (sent,)), T0)  # counts for alice; bob is not told
        changes, _, _ = await self.read_all(bob, start, 10)
        self.assertEqual(changes, [])

    @inline
    async def test_the_position_excludes_what_came_before(self) -> None:
        alice, bob = await self.users("alice", "bob")
        await self.befriend(alice, bob, "bob")
        await self.send(alice, "alice", bob, "before")
        position = await self.storage.feed.position()
        await self.send(alice, "alice", bob, "after")
        changes, _, _ = await self.read_all(bob, position, 100)
        self.assertEqual([c["content"] for c in changes], ["after"])

    @inline
    async def test_positions_asked_together_share_one_query(self) -> None:
        alice, bob = await self.users("alice", "bob")
        await self.befriend(alice, bob, "bob")
        await self.send(alice, "alice", bob, "before")
        ran: list[str] = []
        transactions = self.storage.db.transactions
        done = transactions.done
        self.patch(transactions, "done", lambda desc, *rest: (ran.append(desc), done(desc, *rest)))
        together = await defer.gatherResults([self.storage.feed.position() for _ in range(20)])
        self.assertEqual(ran.count("feed.position"), 1)
        self.assertEqual(len(set(together)), 1)
        await self.send(alice, "alice", bob, "after")
        changes, _, _ = await self.read_all(bob, together[0], 100)
        self.assertEqual([c["content"] for c in changes], ["after"])
        later = await self.storage.feed.position()  # a new query once the shared one answered
        self.assertEqual((await self.read_all(bob, later, 100))[0], [])

    @inline
    async def test_a_deleted_account_leaves_its_contacts_a_removal_and_its_group_a_departure(self) -> None:
        alice, bob, carol = await self.users("alice", "bob", "carol")
        await self.befriend(alice, bob, "bob")
        await self.befriend(alice, carol, "carol")
        group = await self.storage.groups.create(alice, NewGroup("team", None, [bob, carol]), T0, 10)
        await self.storage.profiles.update(alice, ProfileChange(display_name="Alice"), now=T0)
        start = await self.storage.feed.position()
        await self.storage.accounts.delete(alice, T0 + 1, None)
        changes, _, _ = await self.read_all(bob, start, 100)
        self.assertEqual(
            [(c["kind"], c.get("event"), c.get("user_id"), c.get("chat_id")) for c in changes],
            [
                ("contact", "contact_removed", alice, None),
                ("member_removed", "group_member_removed", alice, group),
                # She owned it: bob, who joined with carol and has the lower id, is its owner now.
                ("member_role", "member_role_changed", bob, group),
            ],
        )
        # Nothing of hers is left in her own or her profile's stream.
        left = await self.storage.db.run(
            "count",
            lambda txn: txn.scalar(
                "SELECT COUNT(*) FROM changes WHERE (user_id = ? AND chat_id IS NULL) OR profile_id = ?", (alice, alice)
            ),
        )
        self.assertEqual(left, 0)

    @inline
    async def test_thread_follows_are_in_no_stream_and_read_once_by_their_follower_only(self) -> None:
        alice, bob = await self.users("alice", "bob")
        await self.befriend(alice, bob, "bob")
        root = await self.send(alice, "alice", bob, "root")
        start = await self.storage.feed.position()
        # A row as 0.3.0 wrote it before migration 028, in her own stream: read there, not twice.
        legacy = NewChange("thread_follow", T0, user_id=alice, actor_id=alice, data={"thread_id": root, "following": 0})
        await self.storage.db.run("legacy", record_txn, legacy)
        for follow in (True, False, True):
            await self.storage.threads.follow(alice, root, follow, T0)
        streams = await self.storage.db.run(
            "streams",
            lambda txn: txn.execute(
                "SELECT user_id, chat_id, profile_id FROM changes WHERE kind = 'thread_follow' ORDER BY id"
            ).fetchall(),
        )
        # Releases before 0.3.0 read every row of a user's own stream and refuse a kind they do not know.
        self.assertEqual([tuple(r) for r in streams[1:]], [(None, None, None)] * 3)
        for limit in (1, 100):
            changes, _, _ = await self.read_all(alice, start, limit)
            self.assertEqual([c["following"] for c in changes], [0, True, False, True])
        self.assertEqual((await self.read_all(bob, start, 100))[0], [])
        await self.storage.accounts.delete(alice, T0 + 1, None)
        left = await self.storage.db.run(
            "count", lambda txn: txn.scalar("SELECT COUNT(*) FROM changes WHERE kind = 'thread_follow'")
        )
        self.assertEqual(left, 0)

    @inline
    async def test_a_broadcasts_readers_read_only_their_own_membership_changes_as_told_live(self) -> None:
        host, mod, ann, ben, cat = await self.users("host", "mod", "ann", "ben", "cat")
        open_group = NewGroup("Live", None, (), "public", "open", "broadcast")
        live = await self.storage.groups.create(host, open_group, T0, 10)
        chat = await self.storage.groups.create(host, replace(open_group, name="Chat", kind="group"), T0, 10)
        await self.storage.joining.join(live, mod, T0, MAX_MEMBERS)
        await self.storage.groups.set_member_role(live, host, mod, "moderator", T0)
        await self.storage.joining.join(chat, ann, T0, MAX_MEMBERS)
        start = await self.storage.feed.position()
        for user in (ann, ben, cat):
            await self.storage.joining.join(live, user, T0, MAX_MEMBERS)
        await self.storage.joining.join(chat, ben, T0, MAX_MEMBERS)
        await self.send(host, "host", live, "welcome", is_group=True)
        await self.storage.moderation.mute(mod, GroupMute(live, ann, 60), T0)
        await self.storage.moderation.mute(mod, GroupMute(live, cat, 60), T0)
        await self.storage.groups.remove_member(live, ben, ben, T0)
        await self.storage.moderation.ban(mod, Ban(live, cat), T0)
        await self.send(host, "host", live, "bye", is_group=True)

        def seen(changes: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
            return [
                (c["kind"], c.get("chat_id") or c.get("recipient_id"), c.get("user_id") or c.get("content"))
                for c in changes
            ]

        everything = [
            ("member_added", live, ann),
            ("member_added", live, ben),
            ("member_added", live, cat),
            ("member_added", chat, ben),
            ("message", live, "welcome"),
            ("member_muted", live, ann),
            ("member_muted", live, cat),
            ("member_removed", live, ben),
            ("member_banned", live, cat),
            ("member_removed", live, cat),
            ("message", live, "bye"),
        ]
        for limit in (1, 3, 100):
            # The staff read every membership change; a reader only theirs (the ordinary group's all).
            self.assertEqual(seen((await self.read_all(mod, start, limit))[0]), [c for c in everything if c[1] == live])
            self.assertEqual(
                seen((await self.read_all(ann, start, limit))[0]),
                [c for c in everything if c[1] == chat or c[0] == "message" or c[2] == ann],
            )
            # A reader who left reads up to their removal, their own changes only (as the others do).
            self.assertEqual(
                seen((await self.read_all(ben, start, limit))[0]),
                [
                    ("member_added", live, ben),
                    ("member_added", chat, ben),
                    ("message", live, "welcome"),
                    ("member_removed", live, ben),
                ],
            )

    async def settled_position(self) -> str:
        """A position past every change written so far (on PostgreSQL: once no older transaction is open anywhere)."""
        if self.backend == "postgres":

            def settled(txn: Any) -> bool:
                return bool(txn.scalar("SELECT pg_snapshot_xmin(pg_current_snapshot()) > MAX(xid) FROM changes"))

            await eventually(lambda: self.storage.db.run("test", settled))
        return await self.storage.feed.position()

    @inline
    async def test_pruning_expires_the_cursors_from_before_it_and_keeps_the_rest(self) -> None:
        alice, bob = await self.users("alice", "bob")
        start = await self.storage.feed.position()
        await self.befriend(alice, bob, "bob")
        await self.send(alice, "alice", bob, "old")  # at T0
        after_old = await self.settled_position()
        await self.storage.messages.post(
            Actor.user(alice, "alice"), NewMessage(bob, False, "new"), "00000000-0000-4000-8000-00000000ffff", T0 + 100
        )
        count = "SELECT COUNT(*) FROM changes"
        before = await self.storage.db.run("count", lambda txn: txn.scalar(count + " WHERE created_at < ?", (T0 + 50,)))
        # The two accounts (``registered``), the request and the acceptance, each on both sides, and "old".
        self.assertEqual(before, 7)
        self.assertEqual(await self.storage.feed.prune(T0 + 50, batch=2), 7)  # in batches of 2
        self.assertEqual(await self.storage.feed.prune(T0 + 50), 0)  # nothing more is that old
        with self.assertRaises(UserError) as refused:
            await self.storage.feed.read(bob, start, 100)
        self.assertEqual(refused.exception.message, EXPIRED_CURSOR)
        changes, _, _ = await self.read_all(bob, after_old, 100)
        self.assertEqual([c.get("content") for c in changes], ["new"])
        # A new position reads on; nothing before the cutoff is left.
        if self.backend == "postgres":
            self.assertTrue(await no_other_transaction_older_than_the_prune(self.storage.db))
        self.assertEqual((await self.read_all(bob, await self.storage.feed.position(), 100))[0], [])
        self.assertEqual(await self.storage.db.run("count", lambda txn: txn.scalar(count)), 1)

    @inline
    async def test_bad_and_foreign_cursors_are_refused(self) -> None:
        (alice,) = await self.users("alice")
        good = await self.storage.feed.position()
        other = "1|p|5:5:|||" if self.backend == "sqlite" else "1|s|0"
        future = "1|s|99999" if self.backend == "sqlite" else "1|p|1:999999999:|||"
        for cursor in (
            "",
            "not base64 !",
            "x" * 20000,
            good + "AA",
            base64.urlsafe_b64encode(b"2|s|1").decode(),
            base64.urlsafe_b64encode(other.encode()).decode(),
            base64.urlsafe_b64encode(future.encode()).decode().rstrip("="),
        ):
            with self.assertRaises(UserError, msg=cursor[:40]):
                await self.storage.feed.read(alice, cursor, 10)


for_each_backend(FeedTestsMixin, DatabaseTestCase, globals())


class OutOfOrderCommitTests(TwoWritersTestCase):
    """PostgreSQL: a transaction with the smaller id commits after a read went past the larger one."""

    def write(self, conn: Any, owner: int, other: int) -> int:
        """A contact change in ``owner``'s stream, uncommitted; its id."""
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO changes (user_id, kind, actor_id, data, created_at)"
                ' VALUES (%s, \'contact\', %s, \'{"event":"contact_removed","status":null}\', %s) RETURNING id',
                (owner, other, T0),
            )
            return cur.fetchone()[0]

    @inline
    async def test_the_earlier_id_committed_later_is_read_next_time_and_nothing_twice(self) -> None:
        bob = (await self.storage.users.create("bob", "x", T0)).id
        others = [(await self.storage.users.create(name, "x", T0)).id for name in ("first", "second")]
        cursor = await self.storage.feed.position()
        slow, fast = self.conns
        slow_id = self.write(slow, bob, others[0])
        fast_id = self.write(fast, bob, others[1])
        self.assertLess(slow_id, fast_id)
        fast.commit()
        page = await self.storage.feed.read(bob, cursor, 10)
        self.assertEqual([c.actor_id for c in page.changes], [others[1]])
        slow.commit()
        again = await self.storage.feed.read(bob, page.cursor, 10)
        self.assertEqual([c.actor_id for c in again.changes], [others[0]])
        self.assertEqual((await self.storage.feed.read(bob, again.cursor, 10)).changes, [])

    @inline
    async def test_a_transaction_left_open_across_a_prune_expires_no_fresh_cursor(self) -> None:
        """A session idle in transaction since before the pruned changes: new cursors still read, old ones expire."""
        bob = (await self.storage.users.create("bob", "x", T0)).id
        others = [(await self.storage.users.create(f"u{i}", "x", T0)).id for i in range(3)]
        before = await self.storage.feed.position()
        idle, writer = self.conns
        held = self.write(idle, bob, others[0])  # open, with an xid older than everything pruned below
        self.write(writer, bob, others[1])
        writer.commit()
        self.assertGreater(await self.storage.feed.prune(T0 + 50), 0)
        with idle.cursor() as cur:
            cur.execute("SELECT pg_current_xact_id()::text::bigint")
            held_xid = cur.fetchone()[0]
        self.assertTrue(await no_other_transaction_older_than_the_prune(self.storage.db, held_xid))
        fresh = await self.storage.feed.position()
        self.assertEqual((await self.storage.feed.read(bob, fresh, 10)).changes, [])
        with self.assertRaises(UserError) as refused:
            await self.storage.feed.read(bob, before, 10)
        self.assertEqual(refused.exception.message, EXPIRED_CURSOR)
        # New changes reach the fresh cursor while the transaction stays open.
        self.write(writer, bob, others[2])
        writer.commit()
        page = await self.storage.feed.read(bob, fresh, 10)
        self.assertEqual([c.actor_id for c in page.changes], [others[2]])
        self.assertEqual((await self.storage.feed.read(bob, page.cursor, 10)).changes, [])
        self.assertGreater(held, 0)
        idle.rollback()

    @inline
    async def test_a_commit_while_paging_a_window_waits_for_the_next_window(self) -> None:
        bob = (await self.storage.users.create("bob", "x", T0)).id
        others = [(await self.storage.users.create(f"u{i}", "x", T0)).id for i in range(4)]
        cursor = await self.storage.feed.position()
        slow, fast = self.conns
        late = self.write(slow, bob, others[0])
        for other in others[1:]:
            self.write(fast, bob, other)
        fast.commit()
        first = await self.storage.feed.read(bob, cursor, 2)
        self.assertTrue(first.has_more)
        slow.commit()  # committed while the window is paged: not in it, nor skipped
        second = await self.storage.feed.read(bob, first.cursor, 2)
        third = await self.storage.feed.read(bob, second.cursor, 2)
        seen = [c.actor_id for page in (first, second, third) for c in page.changes]
        self.assertEqual(seen, [others[1], others[2], others[3], others[0]])
        self.assertGreater(late, 0)
