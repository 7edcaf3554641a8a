"""After a Redis cut, every live event of the gap reaches the other node's sockets exactly once.

Two nodes in this process on one database and the test Redis (real, from
``UMOC_TEST_REDIS``); node B reaches Redis through a `CutProxy`, node A
directly.  Alice (on A) writes to Bob (on B) before the cut and during it
(ten seconds on PostgreSQL, two on SQLite; B cut off from Redis: nothing A
publishes reaches B, nothing B publishes reaches A): a message, an edit, a
deletion, reactions, a read receipt, a profile change, a group, contacts.
Bob accepts her contact request during the cut, on B.  When B's bus works
again its catch-up reads Bob's change feed and replays what he missed: every
kind, in the order it happened, and nothing he had already got; A, asked by
B, catches Alice up with Bob's acceptance.  Duplicates are counted over the
whole session: 0.  Run on PostgreSQL (``UMOC_TEST_POSTGRES``) and on one
SQLite file.
"""

from __future__ import annotations

import collections
import json
import time
from typing import Any
from urllib.parse import urlsplit

from tests.e2e.test_cluster_faults import ClusterCase
from tests.support.client import Client
from tests.support.cutproxy import CutProxy
from tests.support.databases import NO_REDIS, REDIS_URL
from tests.support.deferreds import inline, sleep


def identity(event: str, payload: dict[str, Any]) -> str:
    """What makes one live event one and not another: a second event with it is a duplicate."""
    ids = {
        "new_message": ("message_id",),
        "message_edited": ("message_id", "edited_at"),
        "message_deleted": ("message_id",),
        "reaction_updated": ("message_id", "user_id", "emoji", "action"),
        "messages_read": ("reader_id", "message_ids", "timestamp"),
        "profile_updated": ("user_id", "status_text"),
        "group_created": ("id",),
        "group_updated": ("chat_id", "name"),
        "contact_removed": ("user_id",),
        "contact_request": ("user_id",),
        "contact_accepted": ("user_id",),
        "contact_added": ("user_id",),
    }.get(event)
    if ids is None:
        return json.dumps([event, payload], sort_keys=True)
    return json.dumps([event, *(payload.get(name) for name in ids)])


class Inbox:
    """Every event a client got, with its payload, in the order received."""

    def __init__(self, client: Client) -> None:
        self.events: list[tuple[str, Any]] = []
        self._client = client
        client.sio.on("*", self._record)

    def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if args else None))
        self._client._record(event, *args)

    def since(self, start: int, ignore: tuple[str, ...] = ("user_status", "typing_indicator")) -> list[tuple[str, Any]]:
        return [e for e in self.events[start:] if e[0] not in ignore]


class CatchUpAfterCutMixin:
    backend = "postgres"
    #: How long B stays cut off from Redis.
    cut = 10.0

    async def cut_for(self, proxy: CutProxy, node: Any, during: Any) -> None:
        """B cut off until its watch noticed and ``during`` ran, for ``cut`` seconds; back until it caught up."""
        watch, catchup = node.service.node.cluster.watch, node.service.node.cluster.catchup
        started = time.monotonic()
        await proxy.cut()
        await self.wait_for(lambda: watch.gap_start is not None)  # type: ignore[attr-defined]
        await during()
        await sleep(max(0.0, self.cut - (time.monotonic() - started)))
        proxy.restore()
        await self.wait_for(lambda: watch.gap_start is None and not catchup.running, timeout=20)  # type: ignore[attr-defined]

    @inline
    async def test_every_event_of_a_cut_reaches_the_other_nodes_socket_exactly_once(self) -> None:
        target = urlsplit(REDIS_URL)
        proxy = CutProxy(target.hostname or "127.0.0.1", target.port or 6379)
        self.addCleanup(proxy.stop)  # type: ignore[attr-defined]
        behind = f"redis://127.0.0.1:{proxy.port}{target.path or '/0'}"
        (a,) = await self.start_nodes(1)  # type: ignore[attr-defined]
        (b,) = await self.start_nodes(1, behind)  # type: ignore[attr-defined]
        login_alice, alice = await self.person(a, "alice")  # type: ignore[attr-defined]
        login_bob, bob = await self.person(b, "bob")  # type: ignore[attr-defined]
        inbox, alices = Inbox(bob), Inbox(alice)
        await self.befriend((login_alice, alice), (login_bob, bob))  # type: ignore[attr-defined]

        async def call(client: Client, event: str, **payload: Any) -> Any:
            answer = await client.call(event, client.with_session(**payload))
            self.assertNotIn("error", answer if isinstance(answer, dict) else {}, answer)  # type: ignore[attr-defined]
            return answer

        # Before the cut, told live (a catch-up reads from before them: none may come twice).
        sent = [await call(alice, "send_message", recipient_id=login_bob["user_id"], content=f"m{n}") for n in range(4)]
        await call(alice, "edit_message", message_id=sent[0]["message_id"], content="m0, edited before")
        from_bob = await call(bob, "send_message", recipient_id=login_alice["user_id"], content="from bob")
        await sleep(0.5)
        before, alice_before = len(inbox.events), len(alices.events)

        async def meanwhile() -> None:
            await call(alice, "send_message", recipient_id=login_bob["user_id"], content="during the cut")
            await call(alice, "edit_message", message_id=sent[1]["message_id"], content="m1, edited")
            await call(alice, "delete_message", message_id=sent[2]["message_id"])
            await call(alice, "add_reaction", message_id=sent[3]["message_id"], emoji="👍")
            await call(alice, "add_reaction", message_id=sent[3]["message_id"], emoji="🎉")
            await call(alice, "remove_reaction", message_id=sent[3]["message_id"], emoji="🎉")
            await call(alice, "read_receipt", message_ids=[from_bob["message_id"]], sender_id=login_bob["user_id"])
            await call(alice, "update_profile", status_text="away")
            group = await call(alice, "create_group", name="cut", member_ids=[login_bob["user_id"]])
            await call(alice, "update_group", chat_id=group["id"], name="cut, renamed")
            await call(alice, "remove_contact", contact_id=login_bob["user_id"])
            await call(alice, "add_contact", contact_username=login_bob["username"])
            # Bob answers on B, which cannot publish: A catches Alice up when B asks it to.
            await call(bob, "accept_contact", contact_id=login_alice["user_id"])

        await self.cut_for(proxy, b, meanwhile)
        await self.wait_for(  # type: ignore[attr-defined]
            lambda: any(name == "contact_accepted" for name, _ in alices.since(alice_before))
        )
        await sleep(0.5)  # anything late or repeated would come now
        # Bob's own answer went out live on B during the cut; then the catch-up, in the order of the changes.
        self.assertEqual(inbox.since(before)[0][0], "contact_accepted")
        after = inbox.since(before)[1:]
        self.assertEqual(
            [name for name, _ in after],
            [
                "new_message",
                "message_edited",
                "message_deleted",
                "reaction_updated",
                "reaction_updated",
                "reaction_updated",
                "messages_read",
                "profile_updated",
                "group_created",
                "group_updated",
                "contact_removed",
                "contact_request",
            ],
        )
        self.assertEqual(after[0][1]["content"], "during the cut")
        self.assertEqual(after[1][1]["content"], "m1, edited")
        self.assertEqual(after[2][1]["message_id"], sent[2]["message_id"])
        self.assertEqual(
            [(p["emoji"], p["action"]) for n, p in after if n == "reaction_updated"],
            [("👍", "added"), ("🎉", "added"), ("🎉", "removed")],
        )
        self.assertEqual(after[6][1]["message_ids"], [from_bob["message_id"]])
        self.assertEqual(after[9][1]["name"], "cut, renamed")
        # Alice got her own changes live on A, and Bob's acceptance from A's catch-up, each once.
        self.assertEqual(
            [name for name, _ in alices.since(alice_before) if name == "contact_accepted"], ["contact_accepted"]
        )
        for box, start in ((inbox, before), (alices, alice_before)):
            # Contact events name only the other user: the befriending before the cut told the same ones.
            events = [e for e in box.since(0) if not e[0].startswith("contact_")] + [
                e for e in box.since(start) if e[0].startswith("contact_")
            ]
            seen = collections.Counter(identity(name, payload) for name, payload in events)
            self.assertEqual({k: n for k, n in seen.items() if n > 1}, {}, "duplicates")
            self.assertEqual([n for n, _ in box.events if n == "sync_needed"], [], "an exact catch-up needs no hint")
        self.assertGreaterEqual(b.service.node.cluster.catchup.replayed, len(after))
        self.assertGreaterEqual(a.service.node.cluster.catchup.replayed, 1)


class CatchUpAfterCutPostgresTests(CatchUpAfterCutMixin, ClusterCase):
    backend = "postgres"


class CatchUpAfterCutSQLiteTests(CatchUpAfterCutMixin, ClusterCase):
    """The same on one SQLite file, with a shorter cut: the ten seconds are PostgreSQL's test to pay."""

    backend = "sqlite"
    cut = 2.0
    skip = NO_REDIS if not REDIS_URL else None
