"""The change feed as the running service keeps it: pruning on its timer, and a feed read on another node."""

from __future__ import annotations

import tempfile

from tests.events.test_feed import feed
from tests.support.chat import ChatCase, Person, person_on
from tests.support.client import Client
from tests.support.cluster import ClusterTestCase
from tests.support.databases import for_each_backend, no_other_transaction_older_than_the_prune
from tests.support.deferreds import blocking, eventually, inline
from tests.support.server import test_config
from umoc.storage.feed import EXPIRED_CURSOR


class FeedServiceTestsMixin:
    async def position(self, person: Person) -> str:
        client = await self.connect(person.login)
        return (await client.expect("connection_successful"))["cursor"]

    @inline
    async def test_the_service_prunes_old_changes_and_an_older_cursor_expires(self) -> None:
        server = await self.start_server(
            test_config(tempfile.mkdtemp(prefix="umoc-srv-"), feed={"retention": "1s", "prune_interval": "50ms"})
        )
        self.server = server
        alice, bob = await self.person("alice"), await self.person("bob")
        cursor = await self.position(bob)
        await self.befriend(alice, bob)
        count = "SELECT COUNT(*) FROM changes"
        db = server.services.storage.db
        # The befriending's changes are pruned a second after they are written, which on a loaded machine
        # can be before the test could count them: what proves they were written, and then pruned, is
        # bob's cursor from before them expiring (a cursor expires only once a change after it is pruned).
        self.assertEqual(await eventually(lambda: db.run("count", lambda txn: txn.scalar(count)), 0), 0)
        answer = await bob.call("sync", cursor=cursor)
        self.assertEqual(answer, {"error": EXPIRED_CURSOR, "code": "cursor_expired"})
        if self.backend == "postgres":
            self.assertTrue(await no_other_transaction_older_than_the_prune(db))
        fresh = await self.position(bob)
        self.assertEqual((await bob.call("sync", cursor=fresh))["changes"], [])


for_each_backend(FeedServiceTestsMixin, ChatCase, globals())


class TwoNodeFeedTests(ClusterTestCase):
    """Changes made through node A, synced by a client connected to node B."""

    @inline
    async def test_changes_made_on_one_node_are_synced_on_the_other(self) -> None:
        a = await self.start_node(self.node_config())
        b = await self.start_node(self.node_config())
        alice = await person_on(self, a, "alice")
        bob_login = await b.user("bob")
        bob_client = Client(b.url, bob_login)
        self.clients.append(bob_client)
        await blocking(bob_client.connect)
        start = (await bob_client.expect("connection_successful"))["cursor"]
        bob = Person(bob_login, bob_client)
        await alice.call("add_contact", contact_username="bob")
        await bob.call("accept_contact", contact_id=alice.id)
        for i in range(3):
            await alice.call("send_message", recipient_id=bob.id, content=f"over there {i}", type="text")
        changes, _ = await feed(bob, start, limit=2)
        self.assertEqual(
            [(c["kind"], c["event"], c.get("content")) for c in changes],
            [("contact", "contact_request", None), ("contact", "contact_accepted", None)]
            + [("message", "new_message", f"over there {i}") for i in range(3)],
        )
