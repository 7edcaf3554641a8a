"""A group message writes the same few rows whatever the group's size, on both databases."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.databases import DatabaseTestCase, for_each_backend
from tests.support.deferreds import inline
from umoc.records import Actor
from umoc.records.groups import NewGroup
from umoc.records.messages import NewMessage
from umoc.storage.database import Txn
from umoc.storage.messages.write import post_txn
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

        def friends_txn(txn: Txn) -> None:
            txn.executemany(
                "INSERT INTO contacts (owner_id, contact_id, status, requester_id, created_at, updated_at)"
                " VALUES (?, ?, 'FRIEND', ?, ?, ?)",
                [row for u in users[1:] for row in ((owner, u, owner, T0, T0), (u, owner, owner, T0, T0))],
            )

        await self.db.run("test.friends", friends_txn)
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


for_each_backend(WriteAmplificationTestsMixin, DatabaseTestCase, globals())
