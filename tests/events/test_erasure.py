"""Erasure leaves nothing behind (issue 22, G11), on both databases.

After ``delete_account`` with ``erase`` (here the administrators' path, which
is the same `Accounts.delete`): search finds none of the erased words, the
SQLite file and its WAL hold none of their bytes once the background scrub
ran, and the deleted user's reactions are gone, each removal in the feed and
told to the chat's members as ``reaction_updated``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase, LocalPerson

#: Words only bob ever writes: none may be found, or stay on disk, after his erasure.
ERASED = ("zanzibarquux", "quokkaplinth", "xylophonemirth", "marmaladefjord")


class _History:
    async def history(self) -> dict[str, Any]:
        alice, bob, carol = await self.person("alice"), await self.person("bob"), await self.person("carol")
        await self.befriend(alice, bob)
        await self.befriend(alice, carol)
        group = await alice.call("create_group", name="club", member_ids=[bob.id, carol.id])
        await self.settled()
        direct = await bob.call("send_message", recipient_id=alice.id, content=f"{ERASED[0]} at noon")
        await bob.call("send_message", recipient_id=group["id"], is_group=True, content=f"{ERASED[1]} for all")
        edited = await bob.call("send_message", recipient_id=alice.id, content=f"{ERASED[2]} first draft")
        await bob.call("edit_message", message_id=edited["message_id"], content=f"{ERASED[3]} second draft")
        mine = await alice.call("send_message", recipient_id=bob.id, content="hello bob")
        theirs = await carol.call("send_message", recipient_id=group["id"], is_group=True, content="hi club")
        await bob.call("add_reaction", message_id=mine["message_id"], emoji="👍")
        await bob.call("add_reaction", message_id=theirs["message_id"], emoji="🎉")
        await bob.call("add_reaction", message_id=theirs["message_id"], emoji="❤️")
        await alice.call("add_reaction", message_id=theirs["message_id"], emoji="🎉")
        await self.settled()
        for person in (alice, bob, carol):
            person.client.drain_all()
        return {
            "alice": alice,
            "bob": bob,
            "carol": carol,
            "group": group,
            "mine": mine,
            "theirs": theirs,
            "direct": direct,
        }

    async def erase(self, bob: LocalPerson) -> None:
        await self.node.services.accounts.delete(bob.id, True, "admin")
        await self.settled()
        await self.node.services.accounts.scrubbed()


class ErasureTestsMixin(_History):
    @inline
    async def test_search_finds_no_erased_word(self) -> None:
        h = await self.history()
        alice = h["alice"]
        before = await alice.call("search_messages", query=ERASED[0])
        self.assertEqual(len(before["results"]), 1)
        await self.erase(h["bob"])
        for word in ERASED:
            found = await alice.call("search_messages", query=word)
            self.assertEqual(found["results"], [], word)

    @inline
    async def test_the_users_reactions_are_gone_and_the_members_told(self) -> None:
        h = await self.history()
        alice, bob, carol, group = h["alice"], h["bob"], h["carol"], h["group"]
        await self.erase(bob)
        left = await self.db.run(
            "test", lambda txn: txn.execute("SELECT user_id, emoji FROM message_reactions").fetchall()
        )
        self.assertEqual([(int(r["user_id"]), r["emoji"]) for r in left], [(alice.id, "🎉")])
        told_alice = alice.client.drain("reaction_updated")
        told_carol = carol.client.drain("reaction_updated")
        # Alice: her direct message (the chat is bob's id for her) and carol's group message, twice.
        self.assertEqual(
            sorted((u["message_id"], u["chat_id"], u["emoji"]) for u in told_alice),
            sorted(
                [
                    (h["mine"]["message_id"], bob.id, "👍"),
                    (h["theirs"]["message_id"], group["id"], "🎉"),
                    (h["theirs"]["message_id"], group["id"], "❤️"),
                ]
            ),
        )
        self.assertEqual(
            sorted((u["message_id"], u["emoji"]) for u in told_carol),
            sorted([(h["theirs"]["message_id"], "🎉"), (h["theirs"]["message_id"], "❤️")]),
        )
        for update in told_alice + told_carol:
            self.assertEqual((update["user_id"], update["action"]), (bob.id, "removed"))
        on_group = [u for u in told_carol if u["emoji"] == "❤️"][0]
        self.assertEqual(on_group["reactions"], [{"emoji": "🎉", "count": 1, "user_ids": [alice.id]}])
        mine = [u for u in told_alice if u["emoji"] == "👍"][0]
        self.assertEqual((mine["is_group"], mine["reactions"]), (False, []))
        # The feed records each removal, as remove_reaction does.
        changes = await self.db.run(
            "test",
            lambda txn: txn.execute(
                "SELECT data FROM changes WHERE kind = 'reaction' AND actor_id = ? ORDER BY id", (bob.id,)
            ).fetchall(),
        )
        removed = [json.loads(r["data"]) for r in changes if json.loads(r["data"])["action"] == "removed"]
        self.assertEqual(sorted(d["emoji"] for d in removed), sorted(["👍", "🎉", "❤️"]))

    @inline
    async def test_reactions_are_removed_in_batches(self) -> None:
        h = await self.history()
        self.node.services.accounts.ERASE_BATCH = 1  # one message's reactions per transaction
        await self.erase(h["bob"])
        left = await self.db.run(
            "test",
            lambda txn: txn.execute(
                "SELECT COUNT(*) FROM message_reactions WHERE user_id = ?", (h["bob"].id,)
            ).fetchone()[0],
        )
        self.assertEqual(left, 0)
        self.assertEqual(len(h["alice"].client.drain("reaction_updated")), 3)


class SQLiteBytesTests(_History, InProcessChatCase):
    """On SQLite: not one byte of an erased word in the database file or its WAL."""

    backend = "sqlite"

    def files(self, path: str) -> bytes:
        found = b""
        for name in (path, path + "-wal"):
            if os.path.exists(name):
                with open(name, "rb") as f:
                    found += f.read()
        return found

    @inline
    async def test_no_erased_word_stays_in_the_file_or_the_wal(self) -> None:
        path = await self.db.run("test", lambda txn: txn.execute("PRAGMA database_list").fetchone()[2])
        h = await self.history()
        await self.db.run("test", lambda txn: txn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        on_disk = self.files(path)
        self.assertTrue(all(word.encode() in on_disk for word in ERASED))  # the test sees them before
        await self.erase(h["bob"])
        on_disk = self.files(path)
        for word in ERASED:
            self.assertNotIn(word.encode(), on_disk, word)
            self.assertNotIn(word[:8].encode(), on_disk, word)  # no prefix left in the index's pages either
        # The others' words are still there.
        self.assertIn(b"hello bob", on_disk)


for_each_backend(ErasureTestsMixin, InProcessChatCase, globals())
