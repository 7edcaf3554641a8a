"""Full-text search storage on both databases: who may find what, paging, input that looks like syntax."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from twisted.trial import unittest

from tests.support.databases import (
    NO_POSTGRES,
    POSTGRES_DSN,
    DatabaseTestCase,
    database_before,
    for_each_backend,
    seed_pair_txn,
)
from tests.support.deferreds import inline
from umoc.domain.search import query_terms
from umoc.errors import RefusedError
from umoc.records import Actor
from umoc.records.groups import NewGroup
from umoc.records.messages import Deletion, Edit, NewMessage
from umoc.storage import Storage
from umoc.storage.database import Txn, _load_migrations
from umoc.storage.messages import write
from umoc.storage.search import CommonWords, SearchPage

T0 = datetime(2024, 3, 10, 12, 0, tzinfo=UTC).timestamp()


class SearchStorageTestsMixin:
    async def user(self, name: str) -> int:
        return (await self.storage.users.create(name, "x", T0)).id

    async def friends(self, a: int, b: int) -> None:
        user = await self.storage.users.by_id(b)
        await self.storage.contacts.request(a, user.username, T0)
        await self.storage.contacts.accept(b, a, T0)

    async def post(self, sender: int, recipient: int, content: str, is_group: bool = False, kind: str = "text"):
        message, _ = await self.storage.messages.post(
            Actor.user(sender, "name"), NewMessage(recipient, is_group, content, kind), str(uuid.uuid4()), T0
        )
        return message

    async def find(self, user: int, query: str, chat=None, before=None, limit=20) -> SearchPage:
        return await self.storage.search.messages(user, query_terms(query), chat, before, limit)

    async def found(self, user: int, query: str, chat=None) -> list[str]:
        return [hit.message.content for hit in (await self.find(user, query, chat)).hits]

    async def trio(self) -> tuple[int, int, int]:
        """alice, bob and carol; alice is friends with both, bob and carol with each other."""
        alice, bob, carol = await self.user("alice"), await self.user("bob"), await self.user("carol")
        await self.friends(alice, bob)
        await self.friends(alice, carol)
        await self.friends(bob, carol)
        return alice, bob, carol

    @inline
    async def test_finds_whole_words_of_text_messages_in_any_case_newest_first(self) -> None:
        alice, bob, carol = await self.trio()
        await self.post(alice, bob, "Lunch on Friday?")
        await self.post(bob, alice, "friday works, lunch at noon")
        await self.post(carol, alice, "no lunches for me")
        group = await self.storage.groups.create(alice, NewGroup("team", None, [bob, carol]), T0, 10)
        await self.post(carol, group, "LUNCH is on me", is_group=True)
        self.assertEqual(
            await self.found(alice, "lunch"), ["LUNCH is on me", "friday works, lunch at noon", "Lunch on Friday?"]
        )
        # Every word must be there; the order of the words does not matter.
        self.assertEqual(await self.found(alice, "friday LUNCH"), ["friday works, lunch at noon", "Lunch on Friday?"])
        self.assertEqual(await self.found(alice, "lunch tuesday"), [])
        page = await self.find(bob, "lunch")
        hit = page.hits[0]
        self.assertEqual((hit.message.content, hit.chat_id, hit.message.is_group), ("LUNCH is on me", group, True))
        # bob's own message in his chat with alice: the chat is called by alice's id.
        self.assertEqual([(h.chat_id, h.message.sender_id) for h in page.hits[1:]], [(alice, bob), (alice, alice)])
        self.assertIsNone(page.next_before)

    @inline
    async def test_nothing_from_chats_the_user_cannot_read(self) -> None:
        alice, bob, carol = await self.trio()
        dave = await self.user("dave")
        await self.friends(dave, bob)
        await self.post(bob, carol, "secret between bob and carol")
        group = await self.storage.groups.create(bob, NewGroup("no alice", None, [carol]), T0, 10)
        await self.post(bob, group, "secret in a group without alice", is_group=True)
        await self.post(alice, bob, "not a secret")
        self.assertEqual(await self.found(alice, "secret"), ["not a secret"])
        self.assertEqual(len(await self.found(carol, "secret")), 2)
        # A member finds what came after they joined; one who leaves finds nothing more of the group.
        await self.storage.groups.add_member(group, bob, dave, T0, 10)
        self.assertEqual(await self.found(dave, "secret"), [])
        await self.post(carol, group, "secret after dave joined", is_group=True)
        self.assertEqual(await self.found(dave, "secret"), ["secret after dave joined"])
        await self.storage.groups.remove_member(group, dave, dave, T0)
        self.assertEqual(await self.found(dave, "secret"), [])

    @inline
    async def test_a_group_member_finds_nothing_from_before_they_joined(self) -> None:
        alice, bob, carol = await self.trio()
        group = await self.storage.groups.create(alice, NewGroup("team", None, [bob]), T0, 10)
        await self.post(bob, group, "plans before carol joined", is_group=True)
        await self.storage.groups.add_member(group, alice, carol, T0, 10)
        await self.post(alice, group, "plans after carol joined", is_group=True)
        self.assertEqual(await self.found(carol, "plans"), ["plans after carol joined"])
        self.assertEqual(await self.found(carol, "plans", chat=(group, True)), ["plans after carol joined"])
        # Those who were there find both.
        self.assertEqual(await self.found(bob, "plans"), ["plans after carol joined", "plans before carol joined"])

    @inline
    async def test_deleted_never_and_edited_only_by_the_current_text(self) -> None:
        alice, bob, _ = await self.trio()
        gone = await self.post(alice, bob, "delete this apple")
        kept = await self.post(alice, bob, "an apple stays")
        changed = await self.post(alice, bob, "a banana first")
        await self.storage.messages.delete(Actor.user(alice, "alice"), Deletion(gone.id), T0 + 1)
        await self.storage.edits.edit(alice, Edit(changed.id, "now a cherry"), T0 + 2, 0)
        self.assertEqual(await self.found(bob, "apple"), [kept.content])
        self.assertEqual(await self.found(bob, "banana"), [])
        found = (await self.find(bob, "cherry")).hits
        self.assertEqual(
            [(h.message.id, h.message.content, h.message.edited_at) for h in found],
            [(changed.id, "now a cherry", T0 + 2)],
        )
        await self.storage.messages.delete(Actor.user(alice, "alice"), Deletion(changed.id), T0 + 3)
        self.assertEqual(await self.found(bob, "cherry"), [])

    @inline
    async def test_a_search_right_after_a_send_finds_it_and_an_edit_right_after_finds_the_new_text(self) -> None:
        alice, bob, _ = await self.trio()
        self.assertEqual(await self.found(bob, "kiwi"), [])
        sent = await self.post(alice, bob, "a kiwi now")
        self.assertEqual(await self.found(bob, "kiwi"), ["a kiwi now"])
        await self.storage.edits.edit(alice, Edit(sent.id, "a mango now"), T0 + 1, 0)
        self.assertEqual(await self.found(bob, "kiwi"), [])
        self.assertEqual(await self.found(bob, "mango"), ["a mango now"])
        # A message edited and deleted before any search (on SQLite: before the index took it).
        late = await self.post(bob, alice, "a lime later")
        await self.storage.edits.edit(bob, Edit(late.id, "a lemon later"), T0 + 2, 0)
        gone = await self.post(bob, alice, "a lemon gone")
        await self.storage.messages.delete(Actor.user(bob, "bob"), Deletion(gone.id), T0 + 3)
        self.assertEqual(await self.found(alice, "lemon"), ["a lemon later"])
        self.assertEqual(await self.found(alice, "lime"), [])

    @inline
    async def test_file_messages_are_not_searchable(self) -> None:
        alice, bob, _ = await self.trio()
        await self.post(alice, bob, '{"file_id": "x", "file_name": "holiday.png"}', kind="image")
        await self.post(alice, bob, "holiday pictures coming")
        self.assertEqual(await self.found(bob, "holiday"), ["holiday pictures coming"])
        self.assertEqual(await self.found(bob, "file_name"), [])

    @inline
    async def test_one_chat_only_and_the_same_refusal_for_unknown_and_unreadable_chats(self) -> None:
        alice, bob, carol = await self.trio()
        await self.post(alice, bob, "kiwi for bob")
        await self.post(alice, carol, "kiwi for carol")
        group = await self.storage.groups.create(alice, NewGroup("team", None, [bob, carol]), T0, 10)
        await self.post(alice, group, "kiwi for the team", is_group=True)
        other = await self.storage.groups.create(bob, NewGroup("bob and carol", None, [carol]), T0, 10)
        self.assertEqual(await self.found(alice, "kiwi", (bob, False)), ["kiwi for bob"])
        self.assertEqual(await self.found(alice, "kiwi", (group, True)), ["kiwi for the team"])
        self.assertEqual(await self.found(alice, "kiwi", (carol, False)), ["kiwi for carol"])
        for chat in ((other, True), (other + 100, True), (group, False), (bob, True), (alice, False), (10**9, False)):
            with self.assertRaises(RefusedError) as caught:
                await self.find(alice, "kiwi", chat)
            self.assertEqual(caught.exception.message, "Unknown chat")

    @inline
    async def test_pages_return_each_hit_once_newest_first_while_new_messages_arrive(self) -> None:
        alice, bob, _ = await self.trio()
        sent = [
            await self.post(alice if i % 2 else bob, bob if i % 2 else alice, f"melon number {i}") for i in range(8)
        ]
        await self.post(alice, bob, "no fruit here")
        seen, before = [], None
        while True:
            page = await self.find(bob, "melon", before=before, limit=3)
            seen.extend(hit.message.id for hit in page.hits)
            if len(seen) == 3:
                await self.post(alice, bob, "a late melon")  # newer than the cursor: not on later pages
            if page.next_before is None:
                break
            self.assertEqual(len(page.hits), 3)
            before = page.next_before
        self.assertEqual(seen, [m.id for m in reversed(sent)])
        exact = await self.find(bob, "melon", limit=9)
        self.assertEqual(len(exact.hits), 9)
        self.assertIsNone(exact.next_before)

    @inline
    async def test_query_syntax_is_just_words(self) -> None:
        alice, bob, _ = await self.trio()
        await self.post(alice, bob, 'say "NEAR" or AND the NOT word, col:umn * - ^start')
        await self.post(alice, bob, "nothing")
        hostile = [
            '"',
            '""',
            '" OR "',
            "NEAR(a b)",
            "a*",
            "-nothing",
            "^start",
            "content:nothing",
            "chat_id : 1",
            "{content chat_id}: x",
            "AND",
            "OR",
            "NOT",
            "a + b",
            "(((",
            "'; DROP TABLE messages; --",
            "x:y",
            "\\",
            "%",
            "?",
            "$1",
            "e.mail@x.com",
            "foo_bar",
            "nothing OR near",
        ]
        for text in hostile:
            try:
                terms = query_terms(text)
            except Exception:  # noqa: BLE001 - no words at all: refused before the database
                continue
            await self.storage.search.messages(bob, terms)  # never a syntax error
        self.assertEqual(await self.found(bob, '"NEAR" AND'), [await self.first_content(bob, "near")])
        self.assertEqual(await self.found(bob, "-nothing"), ["nothing"])
        self.assertEqual(await self.found(bob, "nothing OR near"), [])
        self.assertEqual(await self.found(bob, "chat_id : 1"), [])
        self.assertEqual(await self.found(bob, "col:umn ^start*"), [await self.first_content(bob, "start")])

    async def first_content(self, user: int, word: str) -> str:
        return (await self.find(user, word)).hits[0].message.content

    @inline
    async def test_words_split_at_punctuation_alike_on_both_databases(self) -> None:
        alice, bob, _ = await self.trio()
        await self.post(alice, bob, "write to e.mail@example.com or see https://example.org/docs/v1.2")
        for query in ("mail", "example com", "docs", "https", "v1", "2", "example.org"):
            self.assertEqual(len(await self.found(bob, query)), 1, query)
        self.assertEqual(await self.found(bob, "exam"), [])

    @inline
    async def test_cjk_runs_are_whole_tokens_and_diacritics_are_kept(self) -> None:
        alice, bob, _ = await self.trio()
        await self.post(alice, bob, "東京タワーへ行く")
        await self.post(alice, bob, "東京 tower")
        await self.post(alice, bob, "Un CAFÉ crème")
        # A run of CJK characters is one token: only the whole run, or a run set apart by spaces, matches.
        self.assertEqual(await self.found(bob, "東京"), ["東京 tower"])
        self.assertEqual(await self.found(bob, "東京タワーへ行く"), ["東京タワーへ行く"])
        self.assertEqual(await self.found(bob, "タワー"), [])
        self.assertEqual(await self.found(bob, "café"), ["Un CAFÉ crème"])
        self.assertEqual(await self.found(bob, "CRÈME"), ["Un CAFÉ crème"])
        self.assertEqual(await self.found(bob, "cafe"), [])

    @inline
    async def test_a_user_in_many_chats_searches_them_all(self) -> None:
        me = await self.user("me")
        peers = []
        for i in range(60):
            peer = await self.user(f"peer{i}")
            await self.friends(me, peer)
            peers.append(peer)
            await self.post(peer, me, f"plum {i}")
        found = (await self.find(me, "plum", limit=50)).hits
        self.assertEqual([h.chat_id for h in found], list(reversed(peers))[:50])

    @inline
    async def test_common_and_rare_words_page_alike_on_either_plan(self) -> None:
        alice, bob, carol = await self.trio()
        group = await self.storage.groups.create(alice, NewGroup("team", None, [bob, carol]), T0, 10)
        other = await self.storage.groups.create(bob, NewGroup("not alice", None, [carol]), T0, 10)
        mine = []
        for i in range(90):
            chat, is_group = [(bob, False), (group, True), (other, True)][i % 3]
            text = f"the news {i}" + (" zebra" if i % 25 == 0 else "")
            message = await self.post(carol if is_group else alice, chat, text, is_group)
            if chat != other:
                mine.append(message)
        await self.db.run("test.analyze", lambda txn: txn.execute("ANALYZE messages"))
        plans: list[frozenset[str]] = [frozenset()]
        if self.backend == "postgres":
            now = [0.0]
            common = CommonWords(lambda: now[0])
            self.assertEqual(await self.db.run("test.common", common.get_txn), {"the", "news"})
            mine.append(await self.post(alice, bob, "the zebra"))
            await self.db.run("test.analyze", lambda txn: txn.execute("ANALYZE messages"))
            self.assertEqual(await self.db.run("test.common", common.get_txn), {"the", "news"})  # not re-read yet
            now[0] += CommonWords.REFRESH
            self.assertEqual(await self.db.run("test.common", common.get_txn), {"the", "news", "zebra"})
            plans.append(frozenset({"the", "news", "zebra"}))
        for words in plans:  # PostgreSQL: the GIN plan, then the one for common words

            class Fixed(CommonWords):
                def get_txn(self, txn: object, words: frozenset[str] = words) -> frozenset[str]:
                    return words

            self.patch(self.storage.search, "_common", Fixed(lambda: 0.0))
            zebras = [m for m in mine if "zebra" in m.content]
            news_zebras = [m for m in zebras if "news" in m.content]
            for query, expected in (("the", mine), ("zebra", zebras), ("news zebra", news_zebras)):
                seen, before = [], None
                while True:
                    page = await self.find(alice, query, before=before, limit=7)
                    seen += [hit.message.id for hit in page.hits]
                    if page.next_before is None:
                        break
                    before = page.next_before
                self.assertEqual(seen, [m.id for m in reversed(expected)], (query, words))


for_each_backend(SearchStorageTestsMixin, DatabaseTestCase, globals())


class SearchStorageIndexedEachBatchSQLiteTests(SearchStorageTestsMixin, DatabaseTestCase):
    """The same on SQLite with every batch of sends indexing what it stored (migration 027's position moving
    with each message): edits and deletions then meet indexed messages, where by default they meet waiting ones."""

    backend = "sqlite"

    def setUp(self) -> Any:
        self.patch(write, "INDEX_EVERY", 1)
        return super().setUp()


class BatchedIndexSQLiteTests(DatabaseTestCase):
    """SQLite (migration 027): sends index a batch at a time; a search indexes what waits, and only then."""

    backend = "sqlite"

    async def upto(self) -> tuple[int, int]:
        """The index's position and the newest seq."""
        row = await self.db.run(
            "t",
            lambda txn: txn.execute(
                "SELECT (SELECT seq FROM messages_fts_upto), (SELECT COALESCE(MAX(seq), 0) FROM messages)"
            ).fetchone(),
        )
        return int(row[0]), int(row[1])

    async def pair(self) -> tuple[int, int]:
        alice = (await self.storage.users.create("alice", "x", T0)).id
        bob = (await self.storage.users.create("bob", "x", T0)).id
        await self.storage.contacts.request(alice, "bob", T0)
        await self.storage.contacts.accept(bob, alice, T0)
        return alice, bob

    async def send(self, alice: int, bob: int, count: int, word: str) -> None:
        """``count`` messages in one batch (a first write holds the writer meanwhile)."""
        plug = self.db.write("test.plug", 0, lambda txn: None)
        sends = [
            self.storage.messages.post(
                Actor.user(alice, "a"), NewMessage(bob, False, f"{word} {i}"), str(uuid.uuid4()), T0
            )
            for i in range(count)
        ]
        await plug
        for d in sends:
            await d

    @inline
    async def test_a_batch_indexes_once_enough_wait_and_a_search_then_writes_nothing(self) -> None:
        self.patch(write, "INDEX_EVERY", 5)
        alice, bob = await self.pair()
        await self.send(alice, bob, 3, "plum")
        upto, newest = await self.upto()
        self.assertEqual(newest - upto, 3, "three wait")
        await self.send(alice, bob, 2, "plum")
        self.assertEqual(await self.upto(), (newest + 2, newest + 2), "five waited: the batch indexed them")
        batches = self.db.writer.batches
        page = await self.storage.search.messages(bob, ["plum"], limit=10)
        self.assertEqual(len(page.hits), 5)
        self.assertEqual(self.db.writer.batches, batches, "nothing waited: the search wrote nothing")
        await self.send(alice, bob, 1, "plum")
        page = await self.storage.search.messages(bob, ["plum"], limit=10)
        self.assertEqual(len(page.hits), 6)
        self.assertEqual(self.db.writer.batches, batches + 3, "the plug, the send, then the search's indexing")
        self.assertEqual((await self.upto())[0], newest + 3)

    @inline
    async def test_a_search_behind_many_messages_indexes_them_in_bounded_writes(self) -> None:
        self.patch(write, "INDEX_MOST", 2)
        alice, bob = await self.pair()
        await self.send(alice, bob, 5, "date")
        batches = self.db.writer.batches
        self.assertEqual(await self.found_count(bob, "date"), 5)
        self.assertEqual(self.db.writer.batches, batches + 3, "2 + 2 + 1")
        upto, newest = await self.upto()
        self.assertEqual(upto, newest)

    @inline
    async def test_a_refused_message_sends_the_batch_one_by_one_and_the_index_catches_up_later(self) -> None:
        self.patch(write, "INDEX_EVERY", 2)
        alice, bob = await self.pair()
        stranger = (await self.storage.users.create("stranger", "x", T0)).id
        plug = self.db.write("test.plug", 0, lambda txn: None)
        ok = [
            self.storage.messages.post(Actor.user(alice, "a"), NewMessage(bob, False, f"pear {i}"), f"p{i}", T0)
            for i in range(3)
        ]
        refused = self.storage.messages.post(Actor.user(alice, "a"), NewMessage(stranger, False, "pear"), "x", T0)
        await plug
        for d in ok:
            await d
        with self.assertRaises(RefusedError):
            await refused
        upto, newest = await self.upto()
        self.assertLess(upto, newest, "the batch went one by one: nothing indexed")
        self.assertEqual(await self.found_count(bob, "pear"), 3)
        self.assertEqual(await self.upto(), (newest, newest))
        # Counters and the feed as the statements of each message leave them.
        self.assertEqual([e.unread_count for e in await self.storage.messages.chat_list(bob)], [3])

    async def found_count(self, user: int, word: str) -> int:
        return len((await self.storage.search.messages(user, [word], limit=50)).hits)

    @inline
    async def test_counters_and_feed_rows_of_a_batch_are_those_of_its_messages_one_by_one(self) -> None:
        alice, bob = await self.pair()
        carol = (await self.storage.users.create("carol", "x", T0)).id
        await self.storage.contacts.request(alice, "carol", T0)
        await self.storage.contacts.accept(carol, alice, T0)
        plug = self.db.write("test.plug", 0, lambda txn: None)
        sends = []
        for i in range(12):
            sender, to = [(alice, bob), (bob, alice), (alice, carol)][i % 3]
            sends.append(
                self.storage.messages.post(
                    Actor.user(sender, "u"), NewMessage(to, False, f"fig {i}"), f"f{i}", T0 + 100 - i
                )
            )
        await plug
        seqs = [(await d)[0].seq for d in sends]

        def state_txn(txn: Txn) -> Any:
            return (
                [
                    tuple(r)
                    for r in txn.execute(
                        "SELECT message_seq, chat_id, actor_id FROM changes WHERE kind = 'message' ORDER BY id"
                    ).fetchall()
                ],
                [
                    tuple(r)
                    for r in txn.execute(
                        "SELECT id, message_count, last_seq, last_activity FROM chats ORDER BY id"
                    ).fetchall()
                ],
                [
                    tuple(r)
                    for r in txn.execute(
                        "SELECT user_id, chat_id, sent_count, last_sent_at FROM user_chats ORDER BY user_id, chat_id"
                    ).fetchall()
                ],
            )

        feed, chats, members = await self.db.run("t", state_txn)
        self.assertEqual([seq for seq, _, _ in feed], seqs, "feed rows in the order of the messages")
        ab, ac = chats[0][0], chats[1][0]
        # Times fall as seqs rise: last_activity keeps the newest time, last_seq the newest seq.
        self.assertEqual(chats, [(ab, 8, seqs[10], T0 + 100), (ac, 4, seqs[11], T0 + 98)])
        self.assertEqual(
            members,
            [
                (alice, ab, 4, T0 + 100 - 9),
                (alice, ac, 4, T0 + 100 - 11),
                (bob, ab, 4, T0 + 100 - 10),
                (carol, ac, 0, None),
            ],
        )


class SearchMigrationTestsMixin:
    """Migration 010 indexes the messages already there."""

    backend = "sqlite"

    @inline
    async def test_migration_indexes_existing_text_messages(self) -> None:
        db = await database_before(self, self.backend, 10)

        # Rows as a schema-9 server wrote them (today's code writes tables that schema lacks).
        def seed(txn: Txn) -> None:
            seed_pair_txn(txn, T0)
            for user_id, peer_id in ((1, 2), (2, 1)):
                txn.execute(
                    "INSERT INTO user_chats (user_id, chat_id, peer_id, is_group, joined_at) VALUES (?, 1, ?, 0, ?)",
                    (user_id, peer_id, T0),
                )
            for kind, text, deleted_at in (
                ("text", "old grape", None),
                ("text", "gone grape", T0),
                ("file", "grape.pdf", None),
                ("text", "other", None),
            ):
                txn.execute(
                    "INSERT INTO messages (id, chat_id, sender_id, recipient_id, is_group, type, content,"
                    " created_at, deleted_at) VALUES (?, 1, 1, 2, 0, ?, ?, ?, ?)",
                    (str(uuid.uuid4()), kind, text, T0, deleted_at),
                )

        await db.run("test.seed", seed)
        self.assertEqual(await db.migrate(), _load_migrations(db.dialect)[-1][0])
        storage = Storage(db)
        found = await storage.search.messages(2, ["grape"])
        self.assertEqual([h.message.content for h in found.hits], ["old grape"])
        await db.run(
            "test.insert",
            lambda txn: txn.execute(
                "INSERT INTO messages (id, chat_id, sender_id, recipient_id, is_group, type, content, created_at)"
                " VALUES (?, 1, 1, 2, 0, 'text', 'new grape', ?)",
                (str(uuid.uuid4()), T0),
            ),
        )
        found = await storage.search.messages(2, ["grape"])
        self.assertEqual([h.message.content for h in found.hits], ["new grape", "old grape"])


class SearchMigrationSQLiteTests(SearchMigrationTestsMixin, unittest.TestCase):
    backend = "sqlite"

    @inline
    async def test_migration_027_starts_the_index_position_after_what_the_trigger_indexed(self) -> None:
        db = await database_before(self, "sqlite", 27)

        def seed(txn: Txn) -> None:
            seed_pair_txn(txn, T0)
            for text in ("old quince", "old quince again", "other"):
                txn.execute(
                    "INSERT INTO messages (id, chat_id, sender_id, recipient_id, is_group, type, content, created_at)"
                    " VALUES (?, 1, 1, 2, 0, 'text', ?, ?)",
                    (str(uuid.uuid4()), text, T0),
                )
            for user_id, peer_id in ((1, 2), (2, 1)):
                txn.execute(
                    "INSERT INTO user_chats (user_id, chat_id, peer_id, is_group, joined_at) VALUES (?, 1, ?, 0, ?)",
                    (user_id, peer_id, T0),
                )

        await db.run("test.seed", seed)  # indexed by migration 010's insert trigger
        await db.migrate()
        self.assertEqual(await db.run("t", lambda txn: txn.scalar("SELECT seq FROM messages_fts_upto")), 3)
        storage = Storage(db)
        batches = db.writer.batches
        found = await storage.search.messages(2, ["quince"])
        self.assertEqual([h.message.content for h in found.hits], ["old quince again", "old quince"])
        self.assertEqual(db.writer.batches, batches, "nothing waited")
        # An indexed message deleted leaves the index (the trigger kept for messages at or below the position).
        await db.run("t", lambda txn: txn.execute("UPDATE messages SET deleted_at = ? WHERE seq = 2", (T0,)))
        found = await storage.search.messages(2, ["quince"])
        self.assertEqual([h.message.content for h in found.hits], ["old quince"])


class SearchMigrationPostgresTests(SearchMigrationTestsMixin, unittest.TestCase):
    backend = "postgres"
    if not POSTGRES_DSN:
        skip = NO_POSTGRES
