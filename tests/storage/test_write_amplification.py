"""A group message writes the same few rows whatever the group's size, on both databases."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.databases import DatabaseTestCase, befriend, for_each_backend
from tests.support.deferreds import inline
from umoc.records import Actor
from umoc.records.groups import MemberLimits, NewGroup
from umoc.records.messages import NewMessage
from umoc.storage.database import Rules, Txn
from umoc.storage.messages.write import post_batch_txn, post_txn
from umoc.storage.receipts import read_txn

T0 = 1_710_072_000.0


def _rows_changed_txn(txn: Txn, fn: Any, *args: Any) -> tuple[Any, int]:
    """``fn(txn, *args)``'s result and how many rows it inserted, updated or deleted, in this transaction."""

    def changed() -> int:
        if txn.dialect.name == "sqlite":
            return int(txn.scalar("SELECT total_changes()"))
        return int(
            txn.scalar("SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_user_tables")
        )

    before = changed()
    result = fn(txn, *args)
    return result, changed() - before


class WriteAmplificationTestsMixin:
    async def group_of(self, size: int, prefix: str) -> tuple[int, list[int]]:
        """A group of ``size`` members, all friends of the first (rows put in directly: fast for 300)."""
        users = [(await self.storage.users.create(f"{prefix}{i}", "x", T0)).id for i in range(size)]
        owner = users[0]
        await befriend(self.db, owner, users[1:], T0)
        group = await self.storage.groups.create(owner, NewGroup("g", None, users[1:]), T0, size)
        return group, users

    async def rows_per_message(self, group: int, sender: int, kind: str = "text") -> int:
        args = (Actor.user(sender, "name"), NewMessage(group, True, "hi", kind), str(uuid.uuid4()), T0 + 1)
        _, changed = await self.db.run("test.post", _rows_changed_txn, post_txn, *args)
        return changed

    @inline
    async def test_rows_written_per_group_message_do_not_depend_on_the_group_size(self) -> None:
        small, small_users = await self.group_of(3, "s")
        large, large_users = await self.group_of(300, "l")
        # Warm both up (a first message may create nothing extra, but be sure).
        await self.rows_per_message(small, small_users[1])
        await self.rows_per_message(large, large_users[1])
        small_rows = await self.rows_per_message(small, small_users[2])
        large_rows = await self.rows_per_message(large, large_users[2])
        self.assertEqual(small_rows, large_rows)
        # The message, the sender's own member row, the chat row, the change in the group's feed
        # stream; on SQLite a text message's words also go into the FTS5 index (its trigger writes
        # the index's own tables: a few rows, the same for any group), which SQLite counts as changes too.
        self.assertEqual(await self.rows_per_message(large, large_users[3], "image"), 4)
        if self.backend == "postgres":  # the words are a column of the message row
            self.assertEqual(large_rows, 4)
        unread = {e.id: e.unread_count for e in await self.storage.messages.chat_list(large_users[5])}
        self.assertEqual(unread[large], 3)

    @inline
    async def test_a_read_writes_the_readers_rows_only(self) -> None:
        large, users = await self.group_of(300, "l")
        message, _ = await self.storage.messages.post(
            Actor.user(users[1], "l1"), NewMessage(large, True, "hi"), str(uuid.uuid4()), T0 + 1
        )
        _, changed = await self.db.run("test.read", _rows_changed_txn, read_txn, users[7], users[1], [message.id], T0)
        # One message_reads row, the reader's member row, the read change in the sender's feed stream,
        # the chat_read change in the reader's own (their other devices' sync).
        self.assertEqual(changed, 4)

    async def broadcast_of(self, size: int, prefix: str) -> tuple[int, int]:
        """A ``broadcast`` of ``size`` members (users put in directly; no friendships: app-style joining)."""
        owner = (await self.storage.users.create(f"{prefix}owner", "x", T0)).id

        def users_txn(txn: Txn) -> list[int]:
            txn.executemany(
                "INSERT INTO users (username, password_hash, created_at) VALUES (?, 'x', ?)",
                [(f"{prefix}{i}", T0) for i in range(size - 1)],
            )
            rows = txn.execute("SELECT id FROM users WHERE username LIKE ? AND id <> ?", (f"{prefix}%", owner))
            return [int(r["id"]) for r in rows.fetchall()]

        readers = await self.db.run("test.users", users_txn)
        self.db.rules = Rules(require_friendship=False)  # contacts.require_friendship: false
        record = NewGroup("b", None, readers, kind="broadcast")
        return await self.storage.groups.create(owner, record, T0, MemberLimits(256, 100_000)), owner

    @inline
    async def test_a_broadcast_message_writes_the_same_rows_to_an_audience_of_three_or_of_thousands(self) -> None:
        small, small_owner = await self.broadcast_of(3, "s")
        large, large_owner = await self.broadcast_of(3000, "l")
        counts = []
        for group, owner in ((small, small_owner), (large, large_owner), (large, large_owner)):
            counts.append(await self.rows_per_message(group, owner, "image"))
            if self.backend == "postgres":
                # The group commit's path on PostgreSQL: migration 026's function, a batch in one call.
                call = (Actor.user(owner, "o"), NewMessage(group, True, "hi", "image"), str(uuid.uuid4()), T0 + 2)
                _, changed = await self.db.run(
                    "test.batch",
                    _rows_changed_txn,
                    post_batch_txn,
                    [(*call, 0.0), (*call[:2], str(uuid.uuid4()), T0 + 3, 0.0)],
                )
                counts.append(changed // 2)
        # The message, the sender's member row, the chat row, the feed row: whatever the audience.
        self.assertEqual(set(counts), {4})
        members = await self.db.run(
            "t", lambda txn: txn.scalar("SELECT member_count FROM chats WHERE id = ?", (large,))
        )
        self.assertEqual(int(members), 3000)


for_each_backend(WriteAmplificationTestsMixin, DatabaseTestCase, globals())
