"""PostgreSQL: a group-commit batch of direct messages is one round trip, whatever its size (issue 25),
thread replies included (issue 30); SQLite: two statements a message, and the full-text index written
once per many.

Round trips are counted as the statements psycopg2 sends (``execute``
calls on the pool's cursors); psycopg2's own ``BEGIN`` and ``COMMIT`` are one
each per batch, whatever the batch holds, and are not counted.  The batch
path (migration 030's ``post_messages_v3``) must store exactly what
`post_txn`, statement by statement, stores: the same rows in every table
it writes, the same answer to every message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, migrated_database, postgres_schema
from tests.support.deferreds import inline
from umoc.errors import RefusedError
from umoc.records import Actor
from umoc.records.groups import NewGroup
from umoc.records.messages import NewMessage
from umoc.storage import Storage, messages
from umoc.storage.database import Database, Txn
from umoc.storage.engine.txn import _named_row_cursor
from umoc.storage.messages import KeyTakenError, Message, write
from umoc.storage.messages.write import post_txn
from umoc.storage.threadrows import ThreadSummary

T0 = 1_710_072_000.0
DAY = 86_400.0
#: The tables a message writes, each in a stable order (``changes.xid`` is the transaction's: left out).
TABLES = {
    "messages": "SELECT seq, id, chat_id, sender_id, recipient_id, is_group, type, content, encrypted_content,"
    " created_at, reply_to_seq, mentions, client_msg_id, deleted_at FROM messages ORDER BY seq",
    "chats": "SELECT id, is_group, user_lo, user_hi, created_at, member_count, message_count, last_seq,"
    " last_activity FROM chats ORDER BY id",
    "user_chats": "SELECT user_id, chat_id, peer_id, is_group, joined_at, joined_seq, base_count, sent_count,"
    " read_count FROM user_chats ORDER BY user_id, chat_id",
    "contacts": "SELECT owner_id, contact_id, status, last_sent_day, streak, streak_last_day FROM contacts"
    " ORDER BY owner_id, contact_id",
    "changes": "SELECT id, chat_id, user_id, profile_id, kind, message_seq, actor_id, data, created_at"
    " FROM changes ORDER BY id",
    "unread_mentions": "SELECT user_id, chat_id, message_seq FROM unread_mentions ORDER BY 1, 2, 3",
}
#: What a thread reply writes besides (migration 024).
THREAD_TABLES = {
    "messages (threads)": "SELECT seq, extra, thread_root_seq, thread_id, also_in_chat, is_thread_root FROM messages"
    " ORDER BY seq",
    "threads": "SELECT root_seq, chat_id, reply_count, last_reply_at, last_reply_seq, participant_ids FROM threads"
    " ORDER BY root_seq",
    "thread_follows": "SELECT root_seq, user_id, chat_id, following, read_count FROM thread_follows ORDER BY 1, 2",
    "user_chats (last sent)": "SELECT user_id, chat_id, last_sent_at FROM user_chats ORDER BY 1, 2",
}


class _Counted:
    """How many statements the pool's cursors sent."""

    statements = 0


def _counting_cursor() -> type:
    base = _named_row_cursor()

    class CountingCursor(base):  # type: ignore[misc, valid-type]
        def execute(self, query: Any, vars: Any = None) -> Any:
            if query != "COMMIT":  # the pool's, one per transaction (sent on the transaction's own cursor)
                _Counted.statements += 1
            return super().execute(query, vars)

        def executemany(self, query: Any, vars_list: Any) -> Any:
            _Counted.statements += len(vars_list)  # psycopg2 sends one statement per row
            return super().executemany(query, vars_list)

    return CountingCursor


class RoundTripTests(unittest.TestCase):
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    async def database(self) -> tuple[Database, Storage]:
        """A migrated schema's database with one write lane, its statements counted."""
        schema = await postgres_schema(self)
        db = Database.postgres(POSTGRES_DSN, 1, 2, schema=schema)  # one lane: a batch per queue
        # Before its first connection: every cursor of this pool counts what it sends.
        db._pool.connkw["cursor_factory"] = _counting_cursor()
        self.addCleanup(db.close)
        return db, Storage(db)

    async def friends(self, db: Database, storage: Storage, *names: str) -> list[int]:
        """Users, each pair of them friends (rows put in directly: no direct chat exists yet)."""
        users = [(await storage.users.create(name, "x", T0)).id for name in names]

        def friends_txn(txn: Txn) -> None:
            txn.executemany(
                "INSERT INTO contacts (owner_id, contact_id, status, requester_id, created_at, updated_at)"
                " VALUES (?, ?, 'FRIEND', ?, ?, ?)",
                [(a, b, a, T0, T0) for a in users for b in users if a != b],
            )

        await db.run("test.friends", friends_txn)
        return users

    async def one_batch(self, db: Database, storage: Storage, sends: list[tuple[Any, ...]]) -> tuple[list[Any], int]:
        """Post ``sends`` in one batch: each answer (or `Failure`) and the statements the batch sent.

        A first write holds the lane, so every post queues behind it and goes in the next batch together.
        """
        batches = db.writer.batches
        _Counted.statements = 0
        plug = db.write("test.plug", 0, lambda txn: None)
        posts = [storage.messages.post(*send) for send in sends]
        await plug
        results = await defer.DeferredList(posts, consumeErrors=True)
        self.assertEqual(db.writer.batches - batches, 2, "the plug's batch, then all the posts in one")
        return [r for _, r in results], _Counted.statements

    @inline
    async def test_a_batch_of_fifty_direct_messages_costs_the_round_trips_of_a_batch_of_one(self) -> None:
        db, storage = await self.database()
        a, b, c = await self.friends(db, storage, "a", "b", "c")
        sender, peer = Actor.user(a, "a"), Actor.user(b, "b")
        # A warm-up: the chat exists, today's streak day is written, a reply target is there.
        first, _ = await storage.messages.post(sender, NewMessage(b, False, "first"), "m-0", T0)

        def send(i: int) -> tuple[Any, ...]:
            who, to = (sender, b) if i % 2 else (peer, a)
            new = NewMessage(to, False, f"text {i}", mentions=(to,) if i % 3 == 0 else ())
            if i % 5 == 0:
                new = NewMessage(to, False, f"reply {i}", reply_to=first.id, client_msg_id=f"k{i}")
            return who, new, f"m-{i}", T0 + i

        ones, one = await self.one_batch(db, storage, [send(1)])
        fifties, fifty = await self.one_batch(db, storage, [send(i) for i in range(2, 52)])
        self.assertEqual(fifty, one)
        self.assertEqual(one, 1, "the batch's savepoint rides on the one call")
        self.assertFalse([r for r in ones + fifties if isinstance(r, Failure)])
        # Across the pairs of one lane too (a new chat, a first message of the day).
        mixed, count = await self.one_batch(
            db, storage, [(sender, NewMessage(c, False, "hi c"), "m-c", T0 + DAY), send(60)]
        )
        self.assertFalse([r for r in mixed if isinstance(r, Failure)])
        self.assertEqual(count, 1)
        stored = await db.run("t", lambda txn: txn.scalar("SELECT count(*) FROM messages"))
        self.assertEqual(stored, 1 + 1 + 50 + 2)

    @inline
    async def test_a_batch_with_thread_replies_costs_the_round_trips_of_a_batch_of_one(self) -> None:
        """Issue 30: replies (only in the thread, also in the chat, to a reply) share the batch's one call."""
        db, storage = await self.database()
        users = await self.friends(db, storage, *(f"u{i}" for i in range(6)))
        group = await storage.groups.create(users[0], NewGroup("g", None, tuple(users[1:])), T0, 10)
        actors = [Actor.user(u, f"u{i}") for i, u in enumerate(users)]
        roots = [
            (await storage.messages.post(actors[i], NewMessage(group, True, f"root {i}"), f"root-{i}", T0 + i))[0]
            for i in range(3)
        ]
        # A direct chat's thread too (the pair's lane differs from the group's: its own batch below).
        direct_root, _ = await storage.messages.post(actors[0], NewMessage(users[1], False, "dm root"), "dm-root", T0)

        def send(i: int) -> tuple[Any, ...]:
            who = actors[i % 6]
            if i % 5 == 0:
                return who, NewMessage(group, True, f"plain {i}", mentions=(users[0],)), f"s-{i}", T0 + 10 + i
            thread = roots[i % 3].id if i % 7 else "s-1"  # s-1 is a reply: its root's thread
            new = NewMessage(
                group,
                True,
                f"reply {i}",
                mentions=(users[(i + 1) % 6],) if i % 3 == 0 else (),
                thread_id=thread,
                also_in_chat=i % 4 == 0,
                extra={"n": i} if i % 6 == 0 else None,
                client_msg_id=f"k{i}" if i % 8 == 0 else None,
            )
            return who, new, f"s-{i}", T0 + 10 + i

        ones, one = await self.one_batch(db, storage, [send(1)])
        fifties, fifty = await self.one_batch(db, storage, [send(i) for i in range(2, 52)])
        self.assertEqual(fifty, one)
        self.assertEqual(one, 1, "the batch's savepoint rides on the one call")
        self.assertFalse([r for r in ones + fifties if isinstance(r, Failure)])
        self.assertEqual({r[0].thread_id for r in ones + fifties if r[0].thread_id}, {root.id for root in roots})
        direct = [
            (actors[1], NewMessage(users[0], False, f"dm reply {i}", thread_id=direct_root.id), f"d-{i}", T0 + 60 + i)
            for i in range(20)
        ]
        answers, count = await self.one_batch(db, storage, direct)
        self.assertEqual(count, 1)
        self.assertEqual([r[0].in_thread.reply_count for r in answers], list(range(1, 21)))
        # A refused reply in the middle fails alone, within the call.
        refused = [send(i) for i in range(60, 70)]
        refused[4] = (actors[1], NewMessage(group, True, "lost", thread_id="nope"), "s-lost", T0 + 80)
        results, count = await self.one_batch(db, storage, refused)
        self.assertEqual(count, 1)
        self.assertEqual([i for i, r in enumerate(results) if isinstance(r, Failure)], [4])
        self.assertEqual(results[4].getErrorMessage(), "Thread not found")

    @inline
    async def test_a_batch_of_group_messages_is_one_round_trip_too(self) -> None:
        db, storage = await self.database()
        users = await self.friends(db, storage, *(f"u{i}" for i in range(6)))
        group = await storage.groups.create(users[0], NewGroup("g", None, tuple(users[1:])), T0, 10)
        sends = [
            (Actor.user(users[i % 6], "u"), NewMessage(group, True, f"hi {i}", mentions=(users[0],)), f"g-{i}", T0 + i)
            for i in range(50)
        ]
        results, count = await self.one_batch(db, storage, sends)
        self.assertEqual(count, 1)
        self.assertEqual({tuple(sorted(audience)) for _, audience in results}, {tuple(users)})
        # Mentioned by the 41 messages the others sent (a sender's own mention counts for none).
        self.assertEqual(await storage.mentions.count(users[0], group, True), 41)

    @inline
    async def test_a_refused_message_in_the_middle_of_a_batch_fails_alone(self) -> None:
        db, storage = await self.database()
        a, b = await self.friends(db, storage, "a", "b")
        stranger = (await storage.users.create("s", "x", T0)).id
        sender = Actor.user(a, "a")
        sends = [(sender, NewMessage(b, False, f"ok {i}"), f"m-{i}", T0 + i) for i in range(50)]
        sends[25] = (sender, NewMessage(stranger, False, "refused"), "m-25", T0 + 25)
        results, count = await self.one_batch(db, storage, sends)
        self.assertEqual(count, 1, "the refusal was answered within the call")
        refused = [i for i, r in enumerate(results) if isinstance(r, Failure)]
        self.assertEqual(refused, [25])
        results[25].trap(RefusedError)
        self.assertEqual(results[25].getErrorMessage(), "You can only send direct messages to your friends")
        contents = await db.run(
            "t", lambda txn: [r[0] for r in txn.execute("SELECT content FROM messages ORDER BY seq").fetchall()]
        )
        self.assertEqual(contents, [f"ok {i}" for i in range(50) if i != 25])
        self.assertEqual([e.unread_count for e in await storage.messages.chat_list(b)], [49])

    @inline
    async def test_a_batch_the_function_gives_up_on_goes_message_by_message(self) -> None:
        """The function raises (here: a sender with no user row); the batch is written again by `post_txn`."""
        db, storage = await self.database()
        a, b = await self.friends(db, storage, "a", "b")
        sends = [(Actor.user(a, "a"), NewMessage(b, False, f"ok {i}"), f"m-{i}", T0 + i) for i in range(5)]
        sends[2] = (Actor.user(999, "ghost"), NewMessage(b, False, "ghost"), "m-2", T0 + 2)
        results, count = await self.one_batch(db, storage, sends)
        self.assertGreater(count, 5, "the call, then the statements of each message")
        self.assertEqual([isinstance(r, Failure) for r in results], [False, False, True, False, False])
        self.assertEqual(results[2].getErrorMessage(), "You can only send direct messages to your friends")
        contents = await db.run(
            "t", lambda txn: [r[0] for r in txn.execute("SELECT content FROM messages ORDER BY seq").fetchall()]
        )
        self.assertEqual(contents, ["ok 0", "ok 1", "ok 3", "ok 4"])

    @inline
    async def test_the_batch_stores_and_answers_what_post_txn_does_message_by_message(self) -> None:
        """The same sends, in one batch through the function and one by one through `post_txn`."""
        batch_db, batch_storage = await self.database()
        plain_db, plain_storage = await self.database()
        for db, storage in ((batch_db, batch_storage), (plain_db, plain_storage)):
            await self.friends(db, storage, "a", "b", "c")
            await storage.users.create("stranger", "x", T0)
            group = await storage.groups.create(1, NewGroup("g", None, (2,)), T0, 10)
            # A group where b reads only and c is muted until day two's 100th second (migration 020).
            moderated = await storage.groups.create(1, NewGroup("m", None, (2, 3)), T0, 10)
            await db.run(
                "t",
                lambda txn, g=moderated: txn.execute(
                    "UPDATE user_chats SET role = CASE user_id WHEN 2 THEN 'reader' ELSE role END,"
                    " muted_until = CASE user_id WHEN 3 THEN ? END WHERE chat_id = ?",
                    (T0 + DAY + 100, g),
                ),
            )
        a, b, c, stranger = Actor.user(1, "a"), Actor.user(2, "b"), Actor.user(3, "c"), 4
        await batch_storage.messages.post(a, NewMessage(2, False, "seed", client_msg_id="old"), "seed", T0)
        await plain_db.run("t", post_txn, a, NewMessage(2, False, "seed", client_msg_id="old"), "seed", T0)
        day2 = T0 + DAY
        sends: list[tuple[Any, ...]] = [
            (a, NewMessage(2, False, "day two"), "m1", day2),  # a's first of the day
            (b, NewMessage(1, False, "back", mentions=(1,)), "m2", day2 + 1),  # b's: the streak advances
            (a, NewMessage(3, False, "new chat", mentions=(1, 3)), "m3", day2 + 2),
            (a, NewMessage(2, False, "mentions c", mentions=(3,)), "m4", day2 + 3),  # c is no member
            (a, NewMessage(stranger, False, "refused"), "m5", day2 + 4),
            (a, NewMessage(1, False, "myself"), "m6", day2 + 5),
            (b, NewMessage(1, False, "reply", reply_to="m1"), "m7", day2 + 6),
            (c, NewMessage(1, False, "reply elsewhere", reply_to="m1"), "m8", day2 + 7),  # target in a-b
            (c, NewMessage(1, False, "reply to nothing", reply_to="nope"), "m9", day2 + 8),
            (a, NewMessage(2, False, "seed", client_msg_id="old"), "m10", day2 + 9),  # a retry within the window
            (a, NewMessage(2, False, "fresh key", client_msg_id="new"), "m11", day2 + 10),
            (a, NewMessage(3, False, "old key", client_msg_id="old"), "m12", day2 + 11),  # expired: taken over
            (c, NewMessage(2, False, "c to b, new chat", client_msg_id="new"), "m13", day2 + 12),
            (b, NewMessage(group, True, "to the group", mentions=(1,)), "g1", day2 + 13),
            (a, NewMessage(group, True, "mentions c", mentions=(3,)), "g2", day2 + 14),  # c is no member
            (c, NewMessage(group, True, "not my group"), "g3", day2 + 15),
            (a, NewMessage(group, True, "reply in the group", reply_to="g1"), "g4", day2 + 16),
            (b, NewMessage(group, True, "reply elsewhere", reply_to="m1"), "g5", day2 + 17),
            (a, NewMessage(group, True, "keyed", client_msg_id="gk", mentions=(1, 2)), "g6", day2 + 18),
            (a, NewMessage(999, True, "no such group"), "g7", day2 + 19),
            (b, NewMessage(moderated, True, "a reader"), "r1", day2 + 20),
            (c, NewMessage(moderated, True, "muted"), "r2", day2 + 21),
            (c, NewMessage(moderated, True, "mute over"), "r3", day2 + 200),
        ]
        keys_since = [T0 - 1] * 11 + [day2, day2] + [T0 - 1] * 10
        batched, count = await self.one_batch(
            batch_db, batch_storage, [(*send, since) for send, since in zip(sends, keys_since, strict=True)]
        )
        self.assertEqual(count, 3, "the call, then the retried key's message (its row, its reactions)")
        plain = []
        for send, since in zip(sends, keys_since, strict=True):
            try:
                plain.append(await plain_db.run("t", post_txn, *send, since))
            except (RefusedError, KeyTakenError):
                plain.append(Failure())
        # Numbers a refused insert used up on one path are gaps: compare seqs and ids by their order.
        batch_ranks, plain_ranks = await _ranks(batch_db), await _ranks(plain_db)
        self.assertEqual([_answer(r, batch_ranks) for r in batched], [_answer(r, plain_ranks) for r in plain])
        self.assertEqual(
            [isinstance(r, Failure) for r in batched],
            [False, False, False, True, True, True, False, True, True, True, False, False, False]
            + [False, True, True, False, True, False, True]
            + [True, True, False],
        )
        await _same_rows(self, (batch_db, batch_ranks), (plain_db, plain_ranks), TABLES)

    @inline
    async def test_the_batch_stores_and_answers_thread_replies_as_post_txn_does(self) -> None:
        """Issue 30: the same replies (and their refusals) through the function and through `post_txn`."""
        batch_db, batch_storage = await self.database()
        plain_db, plain_storage = await self.database()
        seeds = [
            ("root", 1, NewMessage(0, True, "root"), T0 + 1),
            ("root2", 2, NewMessage(0, True, "root two"), T0 + 2),
            ("gone", 1, NewMessage(0, True, "deleted root"), T0 + 3),
            ("dm", 1, NewMessage(2, False, "direct root"), T0 + 4),
            ("other", 1, NewMessage(-1, True, "root of another group"), T0 + 5),
        ]
        for db, storage in ((batch_db, batch_storage), (plain_db, plain_storage)):
            await self.friends(db, storage, "a", "b", "c", "d")
            group = await storage.groups.create(1, NewGroup("g", None, (2, 3, 4)), T0, 10)
            other = await storage.groups.create(1, NewGroup("o", None, (2,)), T0, 10)
            for message_id, sender_id, new, at in seeds:
                recipient = {0: group, -1: other}.get(new.recipient_id, new.recipient_id)
                new = replace(new, recipient_id=recipient)
                await db.run("t", post_txn, Actor.user(sender_id, "u"), new, message_id, at)
            await db.run("t", lambda txn: txn.execute("UPDATE messages SET deleted_at = ? WHERE id = 'gone'", (T0,)))
        a, b, c, d = (Actor.user(u, n) for u, n in ((1, "a"), (2, "b"), (3, "c"), (4, "d")))
        g, t = group, T0 + 100
        sends: list[tuple[Any, ...]] = [
            (b, NewMessage(g, True, "first reply", thread_id="root"), "r1", t),  # a (the root's sender) follows
            (c, NewMessage(g, True, "mentions d", thread_id="root", mentions=(4, 3)), "r2", t + 1),
            (a, NewMessage(g, True, "also in chat", thread_id="r1", also_in_chat=True), "r3", t + 2),  # to root
            (b, NewMessage(g, True, "again", thread_id="root", extra={"k": [1]}), "r4", t + 3),
            (d, NewMessage(g, True, "own root's first", thread_id="root2", mentions=(2,)), "r5", t + 4),
            (b, NewMessage(g, True, "to a deleted root", thread_id="gone"), "r6", t + 5),
            (b, NewMessage(g, True, "to nothing", thread_id="nope"), "r7", t + 6),
            (b, NewMessage(g, True, "another group's root", thread_id="other"), "r8", t + 7),
            (c, NewMessage(g, True, "a reply that replies", thread_id="root", reply_to="r3"), "r9", t + 8),
            (c, NewMessage(g, True, "keyed", thread_id="root", client_msg_id="kr"), "r10", t + 9),
            (c, NewMessage(g, True, "keyed again", thread_id="root", client_msg_id="kr"), "r11", t + 10),
            (b, NewMessage(1, False, "direct reply", thread_id="dm", also_in_chat=True), "r12", t + 11),
            (a, NewMessage(2, False, "direct, thread only", thread_id="dm"), "r13", t + 12),
            (c, NewMessage(1, False, "new chat, foreign root", thread_id="dm"), "r14", t + 13),
            (b, NewMessage(g, True, "plain", extra={}), "r15", t + 14),
            (a, NewMessage(g, True, "many participants", thread_id="root", mentions=(2, 3, 4)), "r16", t + 15),
        ]
        batched, count = await self.one_batch(batch_db, batch_storage, [(*send, T0) for send in sends])
        self.assertEqual(count, 3, "the call, then the retried key's message (its row, its reactions)")
        plain = []
        for send in sends:
            try:
                plain.append(await plain_db.run("t", post_txn, *send, T0))
            except (RefusedError, KeyTakenError):
                plain.append(Failure())
        batch_ranks, plain_ranks = await _ranks(batch_db), await _ranks(plain_db)
        self.assertEqual([_answer(r, batch_ranks) for r in batched], [_answer(r, plain_ranks) for r in plain])
        self.assertEqual(
            [i for i, r in enumerate(batched) if isinstance(r, Failure)], [5, 6, 7, 10, 13], "refused alone"
        )
        self.assertEqual(batched[0][0].in_thread, ThreadSummary(1, t, (2,)))
        await _same_rows(self, (batch_db, batch_ranks), (plain_db, plain_ranks), {**TABLES, **THREAD_TABLES})

    @inline
    async def test_a_thread_names_its_ten_latest_participants_in_a_batch_as_post_txn_does(self) -> None:
        """Twelve repliers, some twice: the function keeps `MAX_PARTICIPANTS`, the latest first."""
        names = [f"p{i}" for i in range(12)]
        sends = [
            (Actor.user(1 + u % 12, "p"), NewMessage(0, True, f"r {i}", thread_id="root"), f"r{i}", T0 + 10 + i)
            for i, u in enumerate((*range(12), 3, 0, 11, 5))
        ]
        summaries, rows = [], []
        for batched in (True, False):
            db, storage = await self.database()
            users = await self.friends(db, storage, *names)
            group = await storage.groups.create(users[0], NewGroup("g", None, tuple(users[1:])), T0, 20)
            await db.run("t", post_txn, Actor.user(users[0], "p0"), NewMessage(group, True, "root"), "root", T0)
            posts = [(who, replace(new, recipient_id=group), *rest) for who, new, *rest in sends]
            if batched:
                results, count = await self.one_batch(db, storage, posts)
                self.assertEqual(count, 1)
            else:
                results = [await db.run("t", post_txn, *post) for post in posts]
            summaries.append([message.in_thread for message, _ in results])
            rows.append(await db.run("t", lambda txn: txn.execute(THREAD_TABLES["threads"]).fetchall()[0][2:]))
        self.assertEqual(summaries[0], summaries[1])
        self.assertEqual(summaries[0][-1].participant_ids, (6, 12, 1, 4, 11, 10, 9, 8, 7, 5))
        self.assertEqual(rows[0], rows[1])


_Ranked = tuple[Database, dict[str, dict[int, int]]]


async def _same_rows(case: unittest.TestCase, first: _Ranked, second: _Ranked, tables: dict[str, str]) -> None:
    """Both databases hold the same rows in each table, seqs and ids by rank."""
    for table, sql in tables.items():
        rows = [
            _ranked(await db.run("t", lambda txn, sql=sql: txn.execute(sql).fetchall()), ranks)
            for db, ranks in (first, second)
        ]
        case.assertEqual(rows[0], rows[1], table)


#: Columns holding a message's seq, a chat's id or a change's id.
_NUMBERED = {
    "seq": "seq",
    "last_seq": "seq",
    "reply_to_seq": "seq",
    "message_seq": "seq",
    "joined_seq": "seq",
    "thread_root_seq": "seq",
    "root_seq": "seq",
    "last_reply_seq": "seq",
    "chat_id": "chat",
}


async def _ranks(db: Database) -> dict[str, dict[int, int]]:
    """Each message seq, chat id and change id by its rank (1, 2, ...), with 0 for 0."""

    def ranks_txn(txn: Txn) -> dict[str, dict[int, int]]:
        ranks = {}
        for kind, sql in (
            ("seq", "SELECT seq FROM messages ORDER BY seq"),
            ("chat", "SELECT id FROM chats ORDER BY id"),
            ("change", "SELECT id FROM changes ORDER BY id"),
        ):
            ranks[kind] = {0: 0, **{int(r[0]): i for i, r in enumerate(txn.execute(sql).fetchall(), 1)}}
        return ranks

    return await db.run("t", ranks_txn)


def _ranked(rows: list[Any], ranks: dict[str, dict[int, int]]) -> list[tuple[Any, ...]]:
    """The rows with every seq and id replaced by its rank."""
    out = []
    for row in rows:
        values = []
        for name, value in zip(row.keys(), row, strict=True):
            kind = _NUMBERED.get(name, "")
            if name == "id" and isinstance(value, int):
                kind = "chat" if "is_group" in row.keys() else "change"
            if kind and value is not None:
                value = ranks[kind][int(value)]
            values.append(value)
        out.append(tuple(values))
    return out


def _answer(result: Any, ranks: dict[str, dict[int, int]]) -> Any:
    """What a caller sees of one post: its message and audience, or its error (and the original of a key)."""
    if isinstance(result, Failure):
        if result.check(KeyTakenError):
            return ("KeyTakenError", _message(result.value.original, ranks))
        return (result.type.__name__, result.getErrorMessage())
    message, audience = result
    return _message(message, ranks), sorted(audience)  # the members in no particular order


def _message(message: Message, ranks: dict[str, dict[int, int]]) -> Message:
    seqs = ranks["seq"]
    return replace(
        message,
        seq=seqs[message.seq],
        chat_id=ranks["chat"][message.chat_id],
        reply_to_seq=None if message.reply_to_seq is None else seqs[message.reply_to_seq],
        thread_root_seq=None if message.thread_root_seq is None else seqs[message.thread_root_seq],
    )


class SQLiteStatementsTests(unittest.TestCase):
    """SQLite: a batch of direct messages costs 2 statements a message and a few per batch (issue 25).

    Counted with ``sqlite3``'s trace callback on the writer's connection:
    every statement the driver runs, and apart (``--``) those FTS5 runs on
    its own tables inside them.  The full-text index is off the per-message
    path (migration 027): a batch writes none of it until `INDEX_EVERY`
    messages wait, then one statement indexes them all.
    """

    async def database(self) -> tuple[Database, Storage, list[str]]:
        db = await migrated_database(self, "sqlite")
        self.addCleanup(db.close)
        traced: list[str] = []
        await db.run("test.trace", lambda txn: txn._cursor.connection.set_trace_callback(traced.append))
        return db, Storage(db), traced

    async def one_batch(self, db: Database, storage: Storage, traced: list[str], sends: list[Any]) -> list[str]:
        """Post ``sends`` in one batch; the statements it ran (a first write holds the writer meanwhile)."""
        del traced[:]
        plug = db.write("test.plug", 0, lambda txn: None)
        posts = [storage.messages.post(*send) for send in sends]
        await plug
        for post in posts:
            await post
        # No savepoint: on SQLite one would journal every page the batch changes (``Dialect.batch_savepoint``).
        self.assertEqual(traced[:2], ["BEGIN IMMEDIATE", "COMMIT"], "the plug's batch")
        return traced[2:]

    def sends(self, users: list[int], start: int, count: int) -> list[tuple[Any, ...]]:
        """Direct messages between friend pairs (0, 1), (2, 3), ... both ways."""
        out = []
        for i in range(start, start + count):
            pair = (i % (len(users) // 2)) * 2
            a, b = users[pair], users[pair + 1]
            sender, to = (a, b) if i % 2 else (b, a)
            out.append((Actor.user(sender, "u"), NewMessage(to, False, f"text {i}"), f"m-{i}", T0 + i))
        return out

    async def friends(self, db: Database, storage: Storage, count: int) -> list[int]:
        users = [(await storage.users.create(f"u{i}", "x", T0)).id for i in range(count)]
        await db.run(
            "test.friends",
            lambda txn: txn.executemany(
                "INSERT INTO contacts (owner_id, contact_id, status, requester_id, created_at, updated_at)"
                " VALUES (?, ?, 'FRIEND', ?, ?, ?)",
                [(a, b, a, T0, T0) for i, a in enumerate(users) for b in users[i ^ 1 : (i ^ 1) + 1]],
            ),
        )
        return users

    @inline
    async def test_a_direct_message_costs_two_statements_in_a_batch_and_no_full_text_index_write(self) -> None:
        db, storage, traced = await self.database()
        users = await self.friends(db, storage, 20)
        await self.one_batch(db, storage, traced, self.sends(users, 0, 20))  # the chats exist, today's day written
        one = await self.one_batch(db, storage, traced, self.sends(users, 100, 1))
        fifty = await self.one_batch(db, storage, traced, self.sends(users, 200, 50))
        statements = [sql for sql in fifty if not sql.startswith("--")]
        self.assertLessEqual(len(statements) - len([s for s in one if not s.startswith("--")]), 2 * 49)
        # BEGIN, the savepoint, 3 for the batch, the index's position, COMMIT.
        self.assertLessEqual(len(statements), 2 * 50 + 7)
        self.assertFalse(
            [sql for sql in fifty if sql.startswith(("--", "INSERT INTO messages_fts", "UPDATE messages_fts"))],
            "nothing written to the full-text index",
        )
        self.assertEqual(len([sql for sql in fifty if sql.startswith("INSERT INTO changes")]), 1)

    @inline
    async def test_a_thread_reply_and_a_plain_group_message_each_cost_two_statements_in_a_batch(self) -> None:
        """Issue 30: the sender with the root and its thread's counts, and the message; per batch, the threads'
        rows, the follows and the feed rows.

        Plain: the sender and the message; per batch, the senders' rows, the chat's and the feed rows.
        """
        db, storage, traced = await self.database()
        a, b = await self.friends(db, storage, 2)
        group = await storage.groups.create(a, NewGroup("g", None, (b,)), T0, 10)
        roots = [
            (await storage.messages.post(Actor.user(a, "a"), NewMessage(group, True, f"root {i}"), f"root-{i}", T0))[
                0
            ].id
            for i in range(3)
        ]

        def send(i: int, thread: bool) -> tuple[Any, ...]:
            new = NewMessage(group, True, f"text {i}", thread_id=roots[i % 3] if thread else None)
            return Actor.user((a, b)[i % 2], "u"), new, f"m-{i}", T0 + i

        await self.one_batch(db, storage, traced, [send(i, True) for i in range(10)])  # the threads exist
        plain = await self.one_batch(db, storage, traced, [send(i, False) for i in range(100, 150)])
        replies = await self.one_batch(db, storage, traced, [send(i, True) for i in range(200, 250)])
        counts = [len([sql for sql in batch if not sql.startswith("--")]) for batch in (plain, replies)]
        self.assertEqual(counts[0], counts[1])
        # BEGIN, the group's row, 2 a message, 3 for the batch, the index's position, COMMIT.
        self.assertLessEqual(counts[0], 2 * 50 + 7)
        for table in ("UPDATE user_chats", "UPDATE chats", "INSERT INTO changes"):
            self.assertEqual(len([sql for sql in plain if sql.startswith(table)]), 1, table)
        self.assertEqual(len([sql for sql in replies if sql.startswith("INSERT INTO threads")]), 1)
        self.assertEqual(len([sql for sql in replies if sql.startswith("INSERT INTO thread_follows")]), 1)

    @inline
    async def test_a_batch_of_replies_leaves_the_threads_as_the_same_replies_one_by_one(self) -> None:
        """Issue 30: SQLite's batch writes each thread and follow once, as each reply's own statements would."""
        outcomes = []
        for batched in (True, False):
            db, storage, traced = await self.database()
            users = await self.friends(db, storage, 4)
            rows = [(a, b, a, T0, T0) for x in users[2:] for a, b in ((users[0], x), (x, users[0]))]
            await db.run(
                "test.friends",
                lambda txn, rows=rows: txn.executemany(
                    "INSERT INTO contacts (owner_id, contact_id, status, requester_id, created_at, updated_at)"
                    " VALUES (?, ?, 'FRIEND', ?, ?, ?)",
                    rows,
                ),
            )
            group = await storage.groups.create(users[0], NewGroup("g", None, tuple(users[1:])), T0, 10)
            roots = []
            for i in range(2):
                sent = await storage.messages.post(
                    Actor.user(users[0], "u"), NewMessage(group, True, f"root {i}"), f"root-{i}", T0
                )
                roots.append(sent[0].id)
            # Followed and unfollowed before its first reply: a follow row, and a thread row without replies.
            await storage.threads.follow(users[2], roots[1], True, T0)
            await storage.threads.follow(users[2], roots[1], False, T0)
            sends = []
            for i in range(12):
                # Users 0 and 2 reply to the first root, 1 and 3 to the second (whose sender, 0, follows at its
                # first reply); now and then one mentions a user who never replies there (a new follower, the
                # root's sender already following, or user 2 who unfollowed), some replies are also in the chat.
                mentions = (users[(i + 1) % 4],) if i % 3 == 0 else ()
                new = NewMessage(
                    group, True, f"reply {i}", mentions=mentions, thread_id=roots[i % 2], also_in_chat=i % 5 == 0
                )
                sends.append((Actor.user(users[i % 4], "u"), new, f"r-{i}", T0 + i))
            if batched:
                del traced[:]
                summaries = [m.in_thread for m, _ in await self.posted(db, storage, traced, sends)]
                written = [sql for sql in traced if sql.startswith("INSERT INTO threads")]
                self.assertEqual(len(written), 1, "one batch, each thread's row written once")
            else:
                # Each by itself, with its own statements (no batch's `post_each_txn`): as PostgreSQL's `post_txn`.
                with_each = self.patch(messages, "post_together", lambda dialect, new: None)
                summaries = [(await storage.messages.post(*send))[0].in_thread for send in sends]
                with_each.restore()

            def state(txn: Any, group: int = group) -> tuple[Any, ...]:
                return tuple(
                    [tuple(r) for r in txn.execute(sql).fetchall()]
                    for sql in (
                        "SELECT root_seq, chat_id, reply_count, last_reply_at, last_reply_seq, participant_ids"
                        " FROM threads ORDER BY root_seq",
                        "SELECT root_seq, user_id, chat_id, following, read_count FROM thread_follows"
                        " ORDER BY root_seq, user_id",
                        "SELECT kind, chat_id, message_seq, actor_id, data FROM changes WHERE kind = 'message'"
                        " ORDER BY message_seq",
                        "SELECT seq, is_thread_root FROM messages ORDER BY seq",
                        "SELECT user_id, message_count FROM user_chats u JOIN chats c ON c.id = u.chat_id"
                        " WHERE c.id = " + str(group) + " ORDER BY user_id",
                    )
                )

            outcomes.append((summaries, await db.run("test.state", state)))
        self.assertEqual(outcomes[0], outcomes[1])
        self.assertEqual([s.reply_count for s in outcomes[0][0]], [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])

    async def posted(self, db: Database, storage: Storage, traced: list[str], sends: list[Any]) -> list[Any]:
        """`one_batch`, answering what each post stored."""
        plug = db.write("test.plug", 0, lambda txn: None)
        posts = [storage.messages.post(*send) for send in sends]
        await plug
        return [await post for post in posts]

    @inline
    async def test_the_batch_that_indexes_writes_the_index_once_for_all_its_messages(self) -> None:
        self.patch(write, "INDEX_EVERY", 1)
        db, storage, traced = await self.database()
        users = await self.friends(db, storage, 20)
        await self.one_batch(db, storage, traced, self.sends(users, 0, 20))
        one = await self.one_batch(db, storage, traced, self.sends(users, 100, 1))
        fifty = await self.one_batch(db, storage, traced, self.sends(users, 200, 50))
        # One new segment of the index for the whole batch (before migration 027: one per message, then merges);
        # FTS5 still writes each message's size row.
        for batch in (one, fifty):
            self.assertEqual(len([s for s in batch if "'messages_fts_idx'" in s and "INSERT" in s]), 1)
            self.assertEqual(len([s for s in batch if s.startswith("INSERT INTO messages_fts")]), 1)
        self.assertEqual(len([s for s in fifty if "'messages_fts_docsize'" in s]), 50)
        found = await storage.search.messages(users[0], ["text"], limit=100)
        self.assertEqual(len(found.hits), 2 + 1 + 5, "pair 0's share of each batch")
