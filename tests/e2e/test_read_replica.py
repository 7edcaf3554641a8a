"""``database.read_dsn``: history, search, ``sync`` and the export read from a real streaming standby (issue 33).

A primary and its standby built here (``tests/support/pgstandby.py``), one
node with ``dsn`` on the primary and ``read_dsn`` on the standby.  Replay on
the standby is paused (``pg_wal_replay_pause()``), so what a read returns
says which side answered it: the standby lacks everything written since.
"""

from __future__ import annotations

import json
import tempfile
import time
from typing import Any

import treq
from twisted.internet import reactor

from tests.support.client import Client
from tests.support.databases import NO_POSTGRES, POSTGRES_DSN
from tests.support.deferreds import blocking, inline, sleep
from tests.support.pgstandby import NO_PG_BINARIES, PostgresPair
from tests.support.server import ServerTestCase, test_config
from umoc.storage import open_storage


class ReadReplicaTests(ServerTestCase):
    skip = NO_POSTGRES if not POSTGRES_DSN else NO_PG_BINARIES

    @inline
    async def setUp(self) -> None:
        self.clients: list[Client] = []
        self.addCleanup(self._disconnect_clients)
        self.pair = PostgresPair()
        self.addCleanup(self.pair.stop)
        await blocking(self.pair.start)
        primary = f"postgresql://postgres@127.0.0.1:{self.pair.primary_port}/postgres"
        standby = f"postgresql://postgres@127.0.0.1:{self.pair.standby_port}/postgres"
        # A generous lag bound: the standby stays paused for the whole test, and is read all the same.
        config = test_config(
            tempfile.mkdtemp(prefix="umoc-srv-"),
            database={"dsn": primary, "read_dsn": standby, "read_max_lag": "60s", "timeout": "5s"},
            ratelimits={"enabled": False},
        )
        storage = open_storage(config, reactor)
        self.reads = storage.reads
        self.server = await self.start_server(config, storage=storage)

    async def person(self, name: str) -> tuple[dict[str, Any], Client, str]:
        login = await self.server.user(name)
        client = await self.connect(login)
        connected = await client.expect("connection_successful")
        return login, client, connected["cursor"]

    async def until_replica_serves(self, *user_ids: int) -> None:
        deadline = time.monotonic() + 15
        while not all(self.reads.serves(u) for u in user_ids):
            self.assertLess(time.monotonic(), deadline, "the replica never caught up")
            await sleep(0.05)

    async def export(self, login: dict[str, Any]) -> dict[str, Any]:
        headers = {"X-Session-ID": login["sessionID"], "X-Session-Token": login["token"]}
        response = await treq.get(self.server.url + "/api/export", headers=headers, persistent=False)
        self.assertEqual(response.code, 200)
        return json.loads(await response.text())

    @inline
    async def test_reads_come_from_the_replica_but_the_writers_own_and_unreached_cursors_from_the_primary(
        self,
    ) -> None:
        (alice, a, _), (bob, b, _) = await self.person("alice"), await self.person("bob")
        carol, c, _ = await self.person("carol")
        await a.call("add_contact", a.with_session(contact_username="bob"))
        await b.call("accept_contact", b.with_session(contact_id=alice["user_id"]))
        connected = await (await self.connect(bob)).expect("connection_successful")
        before_alpha = connected["cursor"]
        sent = await a.call("send_message", a.with_session(recipient_id=bob["user_id"], content="alpha words"))
        self.assertEqual(sent.get("content"), "alpha words", sent)
        await self.until_replica_serves(alice["user_id"], bob["user_id"], carol["user_id"])

        # From here the standby replays nothing: whatever it answers lacks what comes next.
        await blocking(self.pair.query, self.pair.standby_port, "SELECT pg_wal_replay_pause()")
        sent = await a.call("send_message", a.with_session(recipient_id=bob["user_id"], content="omega words"))
        self.assertEqual(sent.get("content"), "omega words", sent)
        await c.call("add_contact", c.with_session(contact_username="bob"))
        served = dict(self.reads.served)

        def history(client: Client, peer: int) -> Any:
            return client.call("get_chat_history", client.with_session(chat_id=peer, page_size=50))

        # Bob wrote nothing: the replica answers, without omega.
        mine = await history(b, alice["user_id"])
        self.assertEqual([m["content"] for m in mine["messages"]], ["alpha words"], mine)
        found = await b.call("search_messages", b.with_session(query="omega"))
        self.assertEqual(found["results"], [])
        found = await b.call("search_messages", b.with_session(query="alpha"))
        self.assertEqual([r["content"] for r in found["results"]], ["alpha words"])
        since = await b.call("sync", b.with_session(since=0))
        self.assertEqual([m["content"] for m in since["messages"]], ["alpha words"])
        page = await b.call("sync", b.with_session(cursor=before_alpha))
        self.assertEqual([ch.get("content") for ch in page["changes"] if ch["kind"] == "message"], ["alpha words"])
        from_replica = page["cursor"]
        exported = await self.export(bob)
        self.assertEqual([k["username"] for k in exported["contacts"]], ["alice"])  # carol's request not replayed
        # history 1, search 2, sync 2, the export 5 (profile, contacts, groups, files, messages).
        self.assertEqual(self.reads.served["replica"] - served["replica"], 10, self.reads.served)
        self.assertEqual(self.reads.served["primary"] - served["primary"], 0, self.reads.served)
        scraped = self.server.services.metrics.render().decode()
        self.assertIn('umoc_replica_reads_total{side="replica"}', scraped)
        self.assertIn("umoc_replica_lag_seconds", scraped)

        # Alice just wrote: her reads go to the primary, and see her message.
        theirs = await history(a, bob["user_id"])
        self.assertEqual([m["content"] for m in theirs["messages"]], ["alpha words", "omega words"])
        found = await a.call("search_messages", a.with_session(query="omega"))
        self.assertEqual([r["content"] for r in found["results"]], ["omega words"])

        # A cursor the standby has not reached (Bob connects after omega): the primary answers, as it should.
        connected = await (await self.connect(bob)).expect("connection_successful")
        after_omega = connected["cursor"]
        sent = await a.call("send_message", a.with_session(recipient_id=bob["user_id"], content="gamma words"))
        self.assertEqual(sent.get("content"), "gamma words", sent)
        page = await b.call("sync", b.with_session(cursor=after_omega))
        self.assertNotIn("error", page, page)
        self.assertEqual([ch.get("content") for ch in page["changes"] if ch["kind"] == "message"], ["gamma words"])

        # The cursor the standby gave Bob ends at a primary snapshot it had replayed: read there again it
        # has nothing newer yet (it lags), and nothing is skipped: once replay resumes, omega and gamma come.
        page = await b.call("sync", b.with_session(cursor=from_replica))
        self.assertEqual(page["changes"], [], page)
        self.assertEqual(page["cursor"], from_replica)

        # Replay resumed: once the standby has Alice's writes, her reads go back to it.
        await blocking(self.pair.query, self.pair.standby_port, "SELECT pg_wal_replay_resume()")
        await self.until_replica_serves(alice["user_id"])
        served = dict(self.reads.served)
        theirs = await history(a, bob["user_id"])
        self.assertEqual(len(theirs["messages"]), 3)
        self.assertEqual(self.reads.served["replica"], served["replica"] + 1)
        await self.until_replica_serves(bob["user_id"])
        page = await b.call("sync", b.with_session(cursor=from_replica))
        messages = [ch.get("content") for ch in page["changes"] if ch["kind"] == "message"]
        self.assertEqual(messages, ["omega words", "gamma words"], page)
        exported = await self.export(bob)
        self.assertEqual([k["username"] for k in exported["contacts"]], ["alice", "carol"])
