"""Threads on both databases: replies (``thread_id``, ``also_in_chat``), ``thread_updated``, ``get_thread``,
``get_threads``, ``follow_thread``, unread counts, ``sync``, search and push audiences.

Each event's happy path and its refusals (which change nothing), what the
main timeline shows and counts, and the rows a reply writes (O(1) whatever
the group's size).
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.events.test_feed import feed
from tests.events.test_messaging_v2 import MISSING, MessagingCase, Person
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from umoc.domain.notices import replay
from umoc.storage.push import Registration


class ThreadTestsMixin(MessagingCase):
    config_overrides: dict[str, dict[str, Any]] = {"ratelimits": {"enabled": False}}

    async def reply(self, sender: Person, gid: int, thread_id: str, content: str, **extra: Any) -> dict[str, Any]:
        return await self.send(sender, gid, content, is_group=True, thread_id=thread_id, **extra)

    async def unread(self, person: Person, gid: int) -> int:
        chats = await person.call("get_chats")
        return int(next(c for c in chats if c["id"] == gid and c["is_group"])["unread_count"])

    async def count(self, sql: str, *params: Any) -> int:
        return int((await self.rows(sql, *params))[0][0])

    @inline
    async def test_a_reply_reaches_members_updates_the_root_and_stays_out_of_history(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        root = await self.send(alice, gid, "plans?", is_group=True)
        await self.drain(alice, bob, carol, dave)
        reply = await self.reply(bob, gid, root["message_id"], "Friday")
        self.assertEqual((reply["thread_id"], reply["also_in_chat"]), (root["message_id"], False))
        for person in (alice, carol):
            shown = await person.client.expect("new_message")
            self.assertEqual((shown["message_id"], shown["thread_id"]), (reply["message_id"], root["message_id"]))
        update = {
            "chat_id": gid,
            "is_group": True,
            "thread_id": root["message_id"],
            "reply_count": 1,
            "last_reply_at": reply["timestamp"],
            "participant_ids": [bob.id],
        }
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("thread_updated"), update)
        await dave.client.expect_none("thread_updated", within=0.1)
        # A reply to a reply goes to the root.
        second = await self.reply(carol, gid, reply["message_id"], "Saturday")
        self.assertEqual(second["thread_id"], root["message_id"])

        history = await carol.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual([m["message_id"] for m in history["messages"]], [root["message_id"]])
        self.assertEqual(history["total_messages"], 1)
        self.assertEqual(
            history["messages"][0]["thread"],
            {"reply_count": 2, "last_reply_at": second["timestamp"], "participant_ids": [carol.id, bob.id]},
        )
        page = await carol.call("get_thread", thread_id=root["message_id"])
        self.assertEqual(page["thread_id"], root["message_id"])
        self.assertEqual(page["root"]["message_id"], root["message_id"])
        self.assertEqual(page["root"]["thread"]["reply_count"], 2)
        self.assertEqual([m["message_id"] for m in page["messages"]], [reply["message_id"], second["message_id"]])
        self.assertEqual(page["has_more"], False)
        older = await carol.call("get_thread", thread_id=root["message_id"], before=second["message_id"], limit=1)
        self.assertEqual(
            ([m["message_id"] for m in older["messages"]], older["has_more"]), ([reply["message_id"]], False)
        )
        newest = await carol.call("get_thread", thread_id=root["message_id"], limit=1)
        self.assertEqual(
            ([m["message_id"] for m in newest["messages"]], newest["has_more"]), ([second["message_id"]], True)
        )

    @inline
    async def test_also_in_chat_shows_the_reply_in_the_main_timeline_too(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        root = await self.send(alice, gid, "vote", is_group=True)
        both = await self.reply(bob, gid, root["message_id"], "yes, and everyone should see", also_in_chat=True)
        self.assertEqual(both["also_in_chat"], True)
        await self.reply(carol, gid, root["message_id"], "thread only")
        history = await dave.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual(history.get("error"), "Unknown chat")
        history = await carol.call("get_chat_history", chat_id=gid, is_group=True)
        self.assertEqual([m["message_id"] for m in history["messages"]], [root["message_id"], both["message_id"]])
        self.assertEqual(history["messages"][1]["thread_id"], root["message_id"])
        self.assertEqual(history["total_messages"], 2)
        self.assertEqual(history["messages"][0]["thread"]["reply_count"], 2)

    @inline
    async def test_unread_counts_cover_followed_threads_and_opening_reads_them(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        root = await self.send(alice, gid, "question", is_group=True)
        await bob.call("read_receipt", message_ids=[root["message_id"]], sender_id=alice.id)
        await carol.call("read_receipt", message_ids=[root["message_id"]], sender_id=alice.id)
        await self.reply(bob, gid, root["message_id"], "answer 1")
        await self.reply(bob, gid, root["message_id"], "answer 2")
        # alice follows as the root's sender; bob replied (read up to his reply); carol does not follow.
        self.assertEqual(await self.unread(alice, gid), 2)
        self.assertEqual(await self.unread(bob, gid), 0)
        self.assertEqual(await self.unread(carol, gid), 0)
        listed = await alice.call("get_threads", chat_id=gid, is_group=True)
        self.assertEqual(len(listed["threads"]), 1)
        entry = listed["threads"][0]
        self.assertEqual(
            {k: v for k, v in entry.items() if k != "root"},
            {
                "thread_id": root["message_id"],
                "chat_id": gid,
                "is_group": True,
                "reply_count": 2,
                "last_reply_at": entry["last_reply_at"],
                "unread_count": 2,
                "following": True,
            },
        )
        self.assertEqual(entry["root"]["content"], "question")
        theirs = (await carol.call("get_threads", chat_id=gid, is_group=True))["threads"][0]
        self.assertEqual((theirs["unread_count"], theirs["following"]), (0, False))
        self.assertEqual((await carol.call("get_threads"))["threads"], [])
        self.assertEqual([t["thread_id"] for t in (await alice.call("get_threads"))["threads"]], [root["message_id"]])
        # Opening the thread's newest page reads it.
        await alice.call("get_thread", thread_id=root["message_id"])
        self.assertEqual(await self.unread(alice, gid), 0)
        self.assertEqual((await alice.call("get_threads"))["threads"][0]["unread_count"], 0)
        # Being mentioned follows.
        await self.reply(bob, gid, root["message_id"], "@carol?", mentions=[carol.id])
        self.assertEqual(await self.unread(carol, gid), 1)
        self.assertEqual(await self.unread(alice, gid), 1)

    @inline
    async def test_chat_read_counts_followed_threads_as_get_chats_does(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        phone = await self.second_socket(alice)
        cursor = await self.server.services.storage.feed.position()
        root = await self.send(alice, gid, "question", is_group=True)
        await self.reply(bob, gid, root["message_id"], "answer 1")
        second = await self.reply(bob, gid, root["message_id"], "answer 2")
        plain = await self.send(bob, gid, "in the chat", is_group=True)
        self.assertEqual(await self.unread(alice, gid), 3)  # two followed replies and one main message
        # The push badge is the same sum.
        registration = Registration(
            str(uuid.uuid4()), alice.id, "webpush", "https://push.invalid/a", "p256dh", "auth", None, None, 0.0
        )
        await self.server.services.storage.push.register(registration, alice.login["sessionID"])
        self.assertEqual((await self.server.services.storage.push.targets([alice.id]))[alice.id].unread, 3)
        await self.drain(alice)
        phone.drain_all()
        # A read receipt's chat_read (ack to none, notice to every socket) counts the followed replies too.
        await alice.call("read_receipt", message_ids=[plain["message_id"]], sender_id=bob.id)
        read = await phone.expect("chat_read")
        self.assertEqual((read["chat_id"], read["unread_count"]), (gid, 2))
        self.assertEqual(await self.unread(alice, gid), 2)
        marked = await alice.call("mark_unread", chat_id=gid, is_group=True, from_message_id=plain["message_id"])
        self.assertEqual(marked["unread_count"], 3)
        self.assertEqual((await phone.expect("chat_read"))["unread_count"], 3)
        self.assertEqual(await self.unread(alice, gid), 3)
        # An older page reads nothing; the newest page reads the thread and tells every socket.
        older = await alice.call("get_thread", thread_id=root["message_id"], before=second["message_id"], limit=1)
        self.assertEqual(len(older["messages"]), 1)
        await phone.expect_none("chat_read", within=0.1)
        await alice.call("get_thread", thread_id=root["message_id"], limit=1)
        opened = await phone.expect("chat_read")
        self.assertEqual(
            opened,
            {
                "chat_id": gid,
                "is_group": True,
                "last_read_message_id": None,
                "unread_count": 1,
                "mention_count": 0,
            },
        )
        self.assertEqual(await self.unread(alice, gid), 1)
        # Opening it again (nothing unread) tells nobody.
        await alice.call("get_thread", thread_id=root["message_id"])
        await phone.expect_none("chat_read", within=0.1)
        # The same counts in alice's sync, in order.
        changes, _ = await feed(alice, cursor)
        self.assertEqual([c["unread_count"] for c in changes if c["kind"] == "chat_read"], [2, 3, 1])

    @inline
    async def test_follow_thread_follows_and_unfollows_and_repeats_answer_only_the_asker(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        phone = await self.second_socket(carol)
        cursor = await self.server.services.storage.feed.position()
        root = await self.send(alice, gid, "news", is_group=True)
        await self.reply(bob, gid, root["message_id"], "old reply")
        await self.drain(carol)
        phone.drain_all()
        followed = await carol.call("follow_thread", thread_id=root["message_id"], follow=True)
        self.assertEqual(followed, {"thread_id": root["message_id"], "following": True})
        self.assertEqual(await carol.client.expect("thread_followed"), followed)
        self.assertEqual(await phone.expect("thread_followed"), followed)
        # Following starts with nothing unread; the next reply is.
        self.assertEqual(await self.unread(carol, gid), 1)  # the root itself, in the main timeline
        await self.reply(bob, gid, root["message_id"], "new reply")
        self.assertEqual(await self.unread(carol, gid), 2)
        again = await carol.call("follow_thread", thread_id=root["message_id"])
        self.assertEqual(await carol.client.expect("thread_followed"), again)
        await phone.expect_none("thread_followed", within=0.1)
        unfollowed = await carol.call("follow_thread", thread_id=root["message_id"], follow=False)
        self.assertEqual(unfollowed, {"thread_id": root["message_id"], "following": False})
        self.assertEqual(await phone.expect("thread_followed"), unfollowed)
        self.assertEqual(await self.unread(carol, gid), 1)
        # In carol's sync, and the catch-up replays each under the live key.
        changes, _ = await feed(carol, cursor)
        follows = [c for c in changes if c["kind"] == "thread_follow"]
        self.assertEqual(
            follows,
            [
                {"kind": "thread_follow", "event": "thread_followed", "thread_id": root["message_id"], "following": f}
                for f in (True, False)
            ],
        )
        replies = [c for c in changes if c["kind"] == "message" and c.get("thread_id") == root["message_id"]]
        self.assertEqual([c["content"] for c in replies], ["old reply", "new reply"])
        self.assertEqual(replies[0]["also_in_chat"], False)
        page = await self.server.services.storage.feed.read(carol.id, cursor, 100)
        replayed = [c for c in page.changes if c.kind == "thread_follow"]
        self.assertEqual(
            [replay.key(c) for c in replayed],
            [
                replay.thread_follow(root["message_id"], f, c.created_at)
                for f, c in zip((True, False), replayed, strict=True)
            ],
        )
        # Nobody else's stream holds it.
        others, _ = await feed(alice, cursor)
        self.assertEqual([c for c in others if c["kind"] == "thread_follow"], [])

    @inline
    async def test_refusals_change_nothing(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        root = await self.send(alice, gid, "root", is_group=True)
        reply = await self.reply(bob, gid, root["message_id"], "reply")
        direct = await self.send(alice, dave.id, "elsewhere")
        before = await self.rows("SELECT root_seq, reply_count, participant_ids FROM threads")
        messages = await self.count("SELECT COUNT(*) FROM messages")
        await self.refused(
            alice, "send_message", "Thread not found", recipient_id=gid, is_group=True, content="x", thread_id=MISSING
        )
        await self.refused(
            alice,
            "send_message",
            "Invalid 'thread_id': not a message of this chat",
            recipient_id=gid,
            is_group=True,
            content="x",
            thread_id=direct["message_id"],
        )
        await self.refused(
            dave,
            "send_message",
            "Unknown chat",
            recipient_id=gid,
            is_group=True,
            content="x",
            thread_id=root["message_id"],
        )
        await self.refused(
            alice,
            "send_message",
            "Invalid 'also_in_chat': only a thread reply ('thread_id') has it",
            recipient_id=gid,
            is_group=True,
            content="x",
            also_in_chat=True,
        )
        await self.refused(
            alice,
            "send_message",
            "Invalid 'thread_id': expected a UUID string",
            recipient_id=gid,
            is_group=True,
            content="x",
            thread_id="nope",
        )
        for event, extra in (("get_thread", {}), ("follow_thread", {"follow": True})):
            await self.refused(dave, event, "Thread not found", thread_id=root["message_id"], **extra)
            await self.refused(alice, event, "Thread not found", thread_id=MISSING, **extra)
            await self.refused(
                alice,
                event,
                "Invalid 'thread_id': a reply in a thread, not its root (use the reply's thread_id)",
                thread_id=reply["message_id"],
                **extra,
            )
        await self.refused(dave, "get_threads", "Unknown chat", chat_id=gid, is_group=True)
        await self.refused(
            alice,
            "get_thread",
            "Invalid 'limit': expected an integer from 1 to 100",
            thread_id=root["message_id"],
            limit=101,
        )
        await self.refused(
            alice, "get_threads", "Invalid 'cursor': expected a next_cursor of get_threads", cursor="abc"
        )
        await self.refused(
            alice,
            "get_thread",
            "Invalid 'before': not a reply of this thread",
            thread_id=root["message_id"],
            before=root["message_id"],
        )
        self.assertEqual(await self.rows("SELECT root_seq, reply_count, participant_ids FROM threads"), before)
        self.assertEqual(await self.count("SELECT COUNT(*) FROM messages"), messages)
        # A deleted root takes no more replies; a deleted reply counts no more.
        await bob.call("delete_message", message_id=reply["message_id"])
        page = await alice.call("get_thread", thread_id=root["message_id"])
        self.assertEqual((page["messages"], page["root"].get("thread")), ([], None))
        await alice.call("delete_message", message_id=root["message_id"])
        await self.refused(
            bob,
            "send_message",
            "Thread not found",
            recipient_id=gid,
            is_group=True,
            content="x",
            thread_id=root["message_id"],
        )

    @inline
    async def test_direct_threads_reads_and_deletions_keep_the_main_counts_right(self) -> None:
        alice, bob = await self.pair()
        root = await self.send(alice, bob.id, "lunch?")
        await self.drain(alice, bob)
        reply = await self.send(bob, alice.id, "sure", thread_id=root["message_id"])
        both = await self.send(bob, alice.id, "at noon", thread_id=root["message_id"], also_in_chat=True)
        # Each side names the chat as it calls it.
        self.assertEqual((await alice.client.expect("thread_updated"))["chat_id"], bob.id)
        self.assertEqual((await bob.client.expect("thread_updated"))["chat_id"], alice.id)

        def unread(chats: list[dict[str, Any]], peer: int) -> int:
            return int(next(c for c in chats if c["id"] == peer and not c["is_group"])["unread_count"])

        # alice: the also_in_chat reply in the main timeline, and two unread replies of her followed thread.
        self.assertEqual(unread(await alice.call("get_chats"), bob.id), 3)
        # A read receipt of the thread-only reply leaves the main count alone (it was never in it).
        await alice.call("read_receipt", message_ids=[reply["message_id"], both["message_id"]], sender_id=bob.id)
        await alice.call("get_thread", thread_id=root["message_id"])
        self.assertEqual(unread(await alice.call("get_chats"), bob.id), 0)
        history = await alice.call("get_chat_history", chat_id=bob.id)
        self.assertEqual(history["total_messages"], 2)
        # Deleting the thread-only reply changes no main count; deleting the other does.
        await bob.call("delete_message", message_id=reply["message_id"])
        self.assertEqual((await alice.call("get_chat_history", chat_id=bob.id))["total_messages"], 2)
        await bob.call("delete_message", message_id=both["message_id"])
        history = await alice.call("get_chat_history", chat_id=bob.id)
        self.assertEqual(
            ([m["message_id"] for m in history["messages"]], history["total_messages"]), ([root["message_id"]], 1)
        )
        self.assertNotIn("thread", history["messages"][0])
        self.assertEqual(unread(await bob.call("get_chats"), alice.id), 1)  # the root, never read by receipt

    @inline
    async def test_a_reply_writes_o1_rows_and_a_plain_send_none_of_them(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        root = await self.send(alice, gid, "root", is_group=True)
        tables = ("messages", "changes", "threads", "thread_follows")
        counts = [await self.count(f"SELECT COUNT(*) FROM {t}") for t in tables]
        await self.reply(bob, gid, root["message_id"], "first")
        after = [await self.count(f"SELECT COUNT(*) FROM {t}") for t in tables]
        # The reply, its feed row, the thread, and two follows (bob replying, alice the root's sender).
        self.assertEqual([a - b for a, b in zip(after, counts, strict=True)], [1, 1, 1, 2])
        await self.reply(carol, gid, root["message_id"], "second")
        again = [await self.count(f"SELECT COUNT(*) FROM {t}") for t in tables]
        self.assertEqual([a - b for a, b in zip(again, after, strict=True)], [1, 1, 0, 1])
        await self.send(alice, gid, "plain", is_group=True)
        plain = [await self.count(f"SELECT COUNT(*) FROM {t}") for t in tables]
        self.assertEqual([a - b for a, b in zip(plain, again, strict=True)], [1, 1, 0, 0])

    @inline
    async def test_replies_are_searchable_and_push_reaches_followers_only(self) -> None:
        alice, bob, carol, dave, gid = await self.team()
        cursor = await self.server.services.storage.feed.position()
        root = await self.send(alice, gid, "root", is_group=True)
        reply = await self.reply(bob, gid, root["message_id"], "xylophone tuning")
        found = await carol.call("search_messages", query="xylophone")
        self.assertEqual([r["message_id"] for r in found["results"]], [reply["message_id"]])
        batch = await self.server.services.storage.outbox.read(cursor, ("message",), 100)
        audiences = {row.change.message.id: row.audience for row in batch.rows if row.change and row.change.message}
        self.assertEqual(sorted(audiences[root["message_id"]]), sorted([bob.id, carol.id]))
        self.assertEqual(audiences[reply["message_id"]], (alice.id,))


for_each_backend(ThreadTestsMixin, InProcessChatCase, globals())
