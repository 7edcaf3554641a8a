"""What a connect and a disconnect cost the database, over the wire, on both databases.

A socket of a cached session reads the feed position and its user's
friends in one transaction (``arrivals.arrive``); the user's last socket
closing writes ``last_seen`` and reads the friends in one (``users.last_seen``,
group-committed).  Friends still hear ``online`` and ``offline``, with the
cursor and ``last_seen`` as before.
"""

from __future__ import annotations

from typing import Any

from tests.support.databases import for_each_backend
from tests.support.deferreds import blocking, inline
from tests.support.server import ServerTestCase
from umoc.timefmt import iso


class ConnectReadsTestsMixin:
    server: Any

    def named_transactions(self) -> list[str]:
        """Every transaction and group-committed write the server runs from now on, by name."""
        names: list[str] = []
        metrics = self.server.service.node.services.storage.db.transactions
        done = metrics.done

        def counted(name: str, ok: bool, seconds: float, waited: float | None) -> None:
            names.append(name)
            done(name, ok, seconds, waited)

        metrics.done = counted
        self.addCleanup(setattr, metrics, "done", done)  # type: ignore[attr-defined]
        return names

    async def befriend(self, a: dict[str, Any], b: dict[str, Any]) -> None:
        contacts = self.server.service.node.services.storage.contacts
        await contacts.request(a["user_id"], b["username"], 1.0)
        await contacts.accept(b["user_id"], a["user_id"], 2.0)

    @inline
    async def test_a_cached_sessions_connect_reads_once_and_its_last_close_writes_once(self) -> None:
        alice = await self.server.user("alice")
        bob_login = await self.server.user("bob")
        await self.befriend(alice, bob_login)
        bob = await self.connect(bob_login)  # type: ignore[attr-defined]
        await bob.expect("connection_successful")
        first = await self.connect(alice)  # type: ignore[attr-defined]
        await first.expect("connection_successful")  # her session is in the cache from now on
        self.assertEqual((await bob.expect("user_status"))["status"], "online")
        await blocking(first.close)
        self.assertEqual((await bob.expect("user_status"))["status"], "offline")

        names = self.named_transactions()
        client = await self.connect(alice)  # type: ignore[attr-defined]
        hello = await client.expect("connection_successful")
        online = await bob.expect("user_status")
        self.assertEqual(online, {"user_id": alice["user_id"], "username": "alice", "status": "online"})
        self.assertIsInstance(hello["cursor"], str)
        self.assertEqual(names, ["arrivals.arrive"])  # no feed.position, no contacts.friend_ids_of

        # The cursor is where the feed stood: a sync from it starts after everything before the connect.
        sync = await client.call("sync", {"cursor": hello["cursor"]})
        self.assertEqual(sync["changes"], [])

        del names[:]
        await blocking(client.close)
        offline = await bob.expect("user_status")
        self.assertEqual(offline["status"], "offline")
        self.assertEqual(names, ["batch"])  # one group-committed transaction; no friend read of its own
        user = await self.server.service.node.services.storage.users.by_id(alice["user_id"])
        self.assertEqual(offline["last_seen"], iso(user.last_seen))

    @inline
    async def test_a_connect_of_an_uncached_session_still_reads_the_position_alongside_the_session(self) -> None:
        alice = await self.server.user("alice")
        names = self.named_transactions()
        client = await self.connect(alice)  # type: ignore[attr-defined]
        hello = await client.expect("connection_successful")
        self.assertIsInstance(hello["cursor"], str)
        await self.server.service.node.socketapp.idle()  # the announcement is made after the welcome
        self.assertEqual(sorted(names[:2]), ["feed.position", "users.session"])
        # Her first socket anywhere: her friends (none) are read for the announcement.
        self.assertEqual(names[2:], ["contacts.friend_ids_of"])


for_each_backend(ConnectReadsTestsMixin, ServerTestCase, globals())
