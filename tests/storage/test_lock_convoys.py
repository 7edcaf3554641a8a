"""PostgreSQL: the two senders of a direct chat do not wait on each other's locks."""

from __future__ import annotations

import uuid

import psycopg2
from twisted.trial import unittest

from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, migrated_database
from tests.support.deferreds import inline
from umoc.records import Actor
from umoc.records.messages import NewMessage
from umoc.storage import Storage
from umoc.storage.database import POSTGRES, Txn, _named_row_cursor
from umoc.storage.messages.write import _direct_permission_txn, post_txn

T0 = 1_710_072_000.0


class DirectSendersTests(unittest.TestCase):
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    @inline
    async def setUp(self) -> None:
        self.db = await migrated_database(self, "postgres")
        self.addCleanup(self.db.close)
        storage = Storage(self.db)
        self.a = (await storage.users.create("a", "x", T0)).id
        self.b = (await storage.users.create("b", "x", T0)).id
        await storage.contacts.request(self.a, "b", T0)
        await storage.contacts.accept(self.b, self.a, T0)
        # The chat exists and both wrote today: the steady state of a conversation.
        await storage.messages.post(Actor.user(self.a, "a"), NewMessage(self.b, False, "x"), str(uuid.uuid4()), T0)
        await storage.messages.post(Actor.user(self.b, "b"), NewMessage(self.a, False, "x"), str(uuid.uuid4()), T0)
        self.schema = await self.db.run("t", lambda txn: txn.scalar("SELECT current_schema()"))

    def connection(self) -> Txn:
        conn = psycopg2.connect(
            POSTGRES_DSN, options=f"-c search_path={self.schema}", cursor_factory=_named_row_cursor()
        )
        self.addCleanup(conn.close)
        cursor = conn.cursor()
        cursor.execute("SET lock_timeout = '500ms'")
        return Txn(cursor, POSTGRES, (psycopg2.IntegrityError,))

    def test_a_send_in_flight_does_not_block_the_peers_permission_check_and_insert(self) -> None:
        first, second = self.connection(), self.connection()
        # a's message: every statement run, not yet committed (its locks held).
        post_txn(first, Actor.user(self.a, "a"), NewMessage(self.b, False, "x"), str(uuid.uuid4()), T0 + 5)
        # b's message meanwhile: the permission check, the insert and b's own row do not wait
        # (before, both contacts rows were locked FOR UPDATE: this hit lock_timeout).
        chat_id, _ = _direct_permission_txn(second, self.b, self.a, T0 + 6)
        second.execute(
            "INSERT INTO messages (id, chat_id, sender_id, recipient_id, is_group, type, content, created_at)"
            " VALUES (?, ?, ?, ?, 0, 'text', 'y', ?)",
            (str(uuid.uuid4()), chat_id, self.b, self.a, T0 + 6),
        )
        second.execute(
            "UPDATE user_chats SET sent_count = sent_count + 1 WHERE user_id = ? AND chat_id = ?", (self.b, chat_id)
        )
