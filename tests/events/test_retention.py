"""Retention (issue 31), on both databases: the purge erases old messages and all that names them.

What goes: the message rows, their files on disk, their reactions, edits,
receipts and pins, their search entries and their change-feed rows; the
chat's counters follow.  What stays: the messages of a user on legal hold
(until the hold is lifted), and what is younger than the chat's policy (the
server's ``retention.messages``, or a group's own ``retention``).  Each purge
transaction handles at most ``retention.batch`` messages of one chat.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, task

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase, LocalPerson
from umoc.config import RetentionConfig
from umoc.domain.commands import retention
from umoc.domain.retention import Purger
from umoc.records import Actor
from umoc.records.account import AccountRef, LegalHold
from umoc.storage.retention import Purged

DAY = 86400.0
ADMIN = Actor.operator("umoc-admin", "cli", address="cli")


class RetentionMixin:
    config_overrides = {"ratelimits": {"enabled": False}, "retention": {"messages": "1d", "batch": 2}}

    async def later(self, seconds: float, config: RetentionConfig | None = None) -> Purger:
        """A purger whose clock reads ``seconds`` from now; purge transactions' sizes go to ``self.batches``."""
        clock = task.Clock()
        clock.advance(reactor.seconds() + seconds)  # type: ignore[attr-defined]
        store = self.storage.retention
        if not hasattr(self, "batches"):
            self.originals = (store.purge, store.purge_oldest)
        purge, purge_oldest = self.originals
        self.batches: list[int] = []

        async def counted(done: Any) -> Purged:
            result: Purged = await done
            self.batches.append(result.messages)
            return result

        self.patch(store, "purge", lambda *a: counted(purge(*a)))
        self.patch(store, "purge_oldest", lambda *a: counted(purge_oldest(*a)))
        return Purger(self.storage, self.node.services.files, clock, config or self.config.retention)

    async def rows(self, sql: str, *params: Any) -> list[Any]:
        return await self.db.run("test", lambda txn: [tuple(r) for r in txn.execute(sql, params).fetchall()])

    async def share_file(self, sender: LocalPerson, recipient_id: int, data: bytes) -> dict[str, Any]:
        ready = await sender.call(
            "upload_file_prepare",
            recipient_id=recipient_id,
            is_group=False,
            file_name="minutes.pdf",
            file_size=len(data),
            file_type="application/pdf",
        )
        response = await self.server.http(
            "PUT", ready["upload_url"], data, {"Authorization": f"Bearer {ready['upload_token']}"}
        )
        self.assertEqual(response.code, 201)
        return await sender.call(
            "upload_file_complete",
            file_id=ready["file_id"],
            recipient_id=recipient_id,
            is_group=False,
            file_name="minutes.pdf",
            file_type="application/pdf",
        )

    async def people(self) -> tuple[LocalPerson, LocalPerson, LocalPerson, int]:
        alice, bob, carol = [await self.person(n) for n in ("alice", "bob", "carol")]
        await self.befriend(alice, bob)
        await self.befriend(alice, carol)
        group = await alice.call("create_group", name="club", member_ids=[bob.id, carol.id])
        return alice, bob, carol, group["id"]

    @inline
    async def test_old_messages_go_with_their_files_reactions_search_entries_and_feed_rows(self) -> None:
        alice, bob, carol, gid = await self.people()
        first = await bob.call("send_message", recipient_id=alice.id, content="quokkaplinth draft")
        await bob.call("edit_message", message_id=first["message_id"], content="quokkaplinth final")
        await alice.call("add_reaction", message_id=first["message_id"], emoji="👍")
        await self.share_file(bob, alice.id, b"%PDF-1.4 the minutes")
        (file_id,) = (await self.rows("SELECT id FROM files"))[0]
        path = self.node.services.files.path_for(file_id)
        self.assertTrue(path.exists())
        in_group = await alice.call("send_message", recipient_id=gid, is_group=True, content="zanzibarquux all")
        await alice.call("pin_message", message_id=in_group["message_id"])
        await carol.call("read_receipt", message_ids=[in_group["message_id"]], sender_id=alice.id)
        kept = await carol.call("send_message", recipient_id=gid, is_group=True, content="marmaladefjord kept")
        # carol is on legal hold: her messages stay, however old.
        await retention.set_legal_hold(self.node.services, ADMIN, LegalHold(AccountRef("carol"), True, "case 7"))
        await self.settled()
        purged_seqs = [r[0] for r in await self.rows("SELECT seq FROM messages WHERE sender_id <> ?", carol.id)]
        self.assertEqual(len(purged_seqs), 3)
        self.assertEqual(
            [c["unread_count"] for c in await alice.call("get_chats") if c["id"] == bob.id and not c["is_group"]], [2]
        )

        # A day is not yet past: nothing goes.
        self.assertEqual(await (await self.later(DAY / 2)).run(), 0)
        purger = await self.later(2 * DAY)
        self.assertEqual(await purger.run(), 3)
        self.assertTrue(self.batches and max(self.batches) <= 2, self.batches)
        self.assertEqual(sum(self.batches), 3)

        left = await self.rows("SELECT id FROM messages")
        self.assertEqual(left, [(kept["message_id"],)])
        self.assertFalse(path.exists(), "the file's bytes are still on disk")
        self.assertEqual(await self.rows("SELECT id FROM files"), [])
        marks = ",".join("?" * len(purged_seqs))
        for table in ("message_reactions", "message_edits", "message_reads", "message_pins", "changes"):
            found = await self.rows(f"SELECT message_seq FROM {table} WHERE message_seq IN ({marks})", *purged_seqs)
            self.assertEqual(found, [], table)
        for word in ("quokkaplinth", "zanzibarquux"):
            self.assertEqual((await alice.call("search_messages", query=word))["results"], [], word)
        self.assertEqual(len((await alice.call("search_messages", query="marmaladefjord"))["results"]), 1)
        # The counters follow: alice has nothing unread from bob, the group's history holds carol's message.
        self.assertEqual(
            [c["unread_count"] for c in await alice.call("get_chats") if c["id"] == bob.id and not c["is_group"]], [0]
        )
        history = await bob.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual([m["message_id"] for m in history["messages"]], [kept["message_id"]])
        # Nothing more is due: a second run purges nothing.
        self.assertEqual(await purger.run(), 0)

    @inline
    async def test_lifting_a_hold_lets_the_next_run_purge_what_it_kept(self) -> None:
        alice, bob, carol, gid = await self.people()
        await retention.set_legal_hold(self.node.services, ADMIN, LegalHold(AccountRef(carol.id), True))
        for n in range(3):
            await carol.call("send_message", recipient_id=gid, is_group=True, content=f"held {n}")
        await alice.call("send_message", recipient_id=gid, is_group=True, content="not held")
        self.assertEqual(await (await self.later(2 * DAY)).run(), 1)
        holds = await retention.legal_holds(self.node.services, ADMIN)
        self.assertEqual([(h.username, h.created_by) for h in holds], [("carol", "umoc-admin")])
        await retention.set_legal_hold(self.node.services, ADMIN, LegalHold(AccountRef("carol"), False))
        self.assertEqual(await retention.legal_holds(self.node.services, ADMIN), [])
        self.assertEqual(await (await self.later(2 * DAY)).run(), 3)
        self.assertEqual(await self.rows("SELECT seq FROM messages"), [])
        actions = await self.rows("SELECT action, target_id, details FROM audit_log ORDER BY id")
        self.assertEqual([(a, t) for a, t, _ in actions], [("user.legal_hold", str(carol.id))] * 2)

    @inline
    async def test_a_groups_own_retention_overrides_the_servers(self) -> None:
        alice, bob, carol, gid = await self.people()
        # The server keeps for ever; the group keeps an hour (set by its owner).
        forever = RetentionConfig(messages=0, batch=2)  # type: ignore[arg-type]
        updated = await alice.call("update_group", chat_id=gid, retention=3600)
        self.assertEqual(updated["retention"], 3600)
        refused = await bob.call("update_group", chat_id=gid, retention=7200)
        self.assertEqual(refused["code"], "forbidden")
        for n in range(5):
            await bob.call("send_message", recipient_id=gid, is_group=True, content=f"short lived {n}")
        direct = await bob.call("send_message", recipient_id=alice.id, content="kept for ever")
        purger = await self.later(2 * 3600, forever)
        self.assertEqual(await purger.run(), 5)
        self.assertEqual(self.batches, [2, 2, 1])
        self.assertEqual(await self.rows("SELECT id FROM messages"), [(direct["message_id"],)])
        # Back to the server's policy (keep for ever): nothing else goes.
        await alice.call("update_group", chat_id=gid, retention=0)
        await bob.call("send_message", recipient_id=gid, is_group=True, content="after")
        self.assertEqual(await (await self.later(2 * 3600, forever)).run(), 0)

    @inline
    async def test_a_stopping_node_ends_its_run_after_the_batch_in_hand(self) -> None:
        alice, bob, carol, gid = await self.people()
        for n in range(5):
            await bob.call("send_message", recipient_id=gid, is_group=True, content=f"old {n}")
        purger = await self.later(2 * DAY)
        store, walk = self.storage.retention, self.storage.retention.walk

        def walk_then_stop(*args: Any) -> Any:
            purger.close()  # the node stops while this batch is under way
            return walk(*args)

        self.patch(store, "walk", walk_then_stop)
        self.assertEqual(await purger.run(), 2)
        self.assertEqual(len(await self.rows("SELECT seq FROM messages")), 3)


for_each_backend(RetentionMixin, InProcessChatCase, globals())
