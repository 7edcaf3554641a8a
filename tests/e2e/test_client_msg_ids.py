"""Idempotent sends over the wire: the in-process ``client_msg_id`` cases with python-socketio on a real server.

Whatever the in-process tests see (the duplicate's ack and ``new_message``
to the asking socket only, the key on the sender's sockets only, the
errors) is what a stock client receives over WebSocket frames.
"""

from __future__ import annotations

from twisted.internet import defer

from tests.events.test_client_msg_ids import ClientMsgIdTestsMixin
from tests.support.chat import ChatCase, Person, person_on
from tests.support.cluster import ClusterTestCase
from tests.support.deferreds import inline


class ClientMsgIdsOverTheWireTests(ClientMsgIdTestsMixin, ChatCase):
    backend = "sqlite"


class TwoNodesOneKeyOverTheWireTests(ClusterTestCase):
    """Two real server nodes on PostgreSQL and Redis; the sender's two sockets, one on each, send one key at once."""

    @inline
    async def test_one_message_is_stored_and_the_recipient_gets_it_once(self) -> None:
        a = await self.start_node(self.node_config())
        b = await self.start_node(self.node_config())
        alice, bob = await person_on(self, a, "alice"), await person_on(self, b, "bob")
        await alice.call("add_contact", contact_username="bob")
        await bob.call("accept_contact", contact_id=alice.id)
        alice_on_b = Person(alice.login, await self.connect_to(b, alice.login))
        for round_ in range(3):
            payload = {"recipient_id": bob.id, "content": f"once {round_}", "client_msg_id": f"wire-{round_}"}
            answers = await defer.gatherResults(
                [alice.call("send_message", **payload), alice_on_b.call("send_message", **payload)]
            )
            self.assertEqual(len({answer["message_id"] for answer in answers}), 1, answers)
            self.assertEqual(sorted(bool(answer.get("duplicate")) for answer in answers), [False, True], answers)
            told = await bob.client.expect("new_message")
            self.assertEqual(told["message_id"], answers[0]["message_id"])
            self.assertNotIn("client_msg_id", told)
        await bob.client.expect_none("new_message", within=0.5)
        self.assertEqual(bob.client.drain("new_message"), [], "each message reached the recipient once")
        count = await a.services.storage.db.run("t", lambda txn: txn.scalar("SELECT COUNT(*) FROM messages"))
        self.assertEqual(count, 3)
