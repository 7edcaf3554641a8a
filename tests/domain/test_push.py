"""When to push, on a `Clock`: after ``push.delay``, and not when the user came online, read it, or it was deleted."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from tests.support.deferreds import inline
from tests.support.fakes import FakeSocket
from tests.support.node import NodeTestCase
from umoc.credentials import new_token, token_digest
from umoc.domain.commands import push
from umoc.domain.push import Notice
from umoc.records import Actor
from umoc.records.push import PushRegistration
from umoc.records.sessions import NewSession
from umoc.storage.push import Registration

DELAY = 5.0


class PushTimingTests(NodeTestCase):
    config_overrides = {
        "ratelimits": {"enabled": False},
        "push": {"delay": f"{DELAY}s", "gateways": {"default": "https://push.invalid"}},
    }

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.sent: list[tuple[Registration, Notice]] = []
        self.services.push.send = self.record  # type: ignore[method-assign]
        self.alice = await self.connected("alice")
        self.bob = await self.user("bob")
        now = self.clock.seconds()
        await self.storage.users.create_session(
            NewSession(self.bob.id, "session-bob", token_digest(new_token()), now, now + 3600), 3
        )
        await self.storage.contacts.request(self.alice.user_id, "bob", now)
        await self.storage.contacts.accept(self.bob.id, self.alice.user_id, now)
        payload = {"kind": "gateway", "app_id": "com.example", "pushkey": "token", "gateway": None}
        bob = Actor.user(self.bob.id, "bob", session_id="session-bob")
        await push.register(self.services, bob, PushRegistration.parse(payload))
        # The push consumer of the feed, as a node starts it: it reads the feed from here on.
        await self.services.push.start()
        self.addCleanup(lambda: defer.ensureDeferred(self.services.push.close()))

    def record(self, registration: Registration, notice: Notice) -> defer.Deferred[None]:
        self.sent.append((registration, notice))
        return defer.succeed(None)

    async def send(self) -> dict[str, Any]:
        answer = await self.call(self.alice, "send_message", recipient_id=self.bob.id, content="hi")
        self.assertIn("message_id", answer, answer)
        return answer

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.services.push.decided()

    @inline
    async def test_an_offline_user_is_pushed_once_after_the_delay(self) -> None:
        sent = await self.send()
        await self.advance(DELAY - 0.1)
        self.assertEqual(self.sent, [])
        await self.advance(0.2)
        self.assertEqual([(r.target, n.event_id, n.unread) for r, n in self.sent], [("token", sent["message_id"], 1)])
        await self.advance(DELAY * 3)
        self.assertEqual(len(self.sent), 1)

    @inline
    async def test_no_push_when_the_user_came_online_meanwhile(self) -> None:
        await self.send()
        await self.advance(1)
        socket = FakeSocket(self.bob.id, "session-bob", "bob")
        self.node.socketapp.on_connect(socket)  # type: ignore[arg-type]
        self.addCleanup(lambda: defer.ensureDeferred(self._disconnect(socket)))
        await self.settled()
        await self.advance(DELAY)
        self.assertEqual(self.sent, [])

    @inline
    async def test_no_push_for_a_message_deleted_meanwhile(self) -> None:
        sent = await self.send()
        await self.call(self.alice, "delete_message", message_id=sent["message_id"])
        await self.advance(DELAY + 1)
        self.assertEqual(self.sent, [])

    @inline
    async def test_no_push_once_the_session_that_registered_ended(self) -> None:
        await self.send()
        await self.storage.users.delete_session("session-bob")
        await self.advance(DELAY + 1)
        self.assertEqual(self.sent, [])


class PushOnlyReadTests(PushTimingTests):
    """The push consumer reads only the rows that concern somebody with a registered device (issue 24's cost)."""

    @inline
    async def test_rows_nobody_can_be_pushed_for_are_read_past_not_returned(self) -> None:
        carol = await self.user("carol")
        now = self.clock.seconds()
        await self.storage.contacts.request(self.alice.user_id, "carol", now)
        await self.storage.contacts.accept(carol.id, self.alice.user_id, now)
        position = await self.storage.feed.position()
        to_carol = await self.call(self.alice, "send_message", recipient_id=carol.id, content="no device")
        to_bob = await self.send()
        kinds = ("message", "contact")
        pushable = await self.storage.outbox.read(position, kinds, 10, True)
        self.assertEqual(
            [r.change.message.id for r in pushable.rows if r.change and r.change.message], [to_bob["message_id"]]
        )
        self.assertTrue(pushable.skipped, "carol's message was read past")
        everything = await self.storage.outbox.read(position, kinds, 10)
        ids = [r.change.message.id for r in everything.rows if r.change and r.change.message]
        self.assertEqual(ids, [to_carol["message_id"], to_bob["message_id"]])
        self.assertEqual(pushable.position, everything.position, "the position moves past both all the same")
        nothing = await self.storage.outbox.read(pushable.position, kinds, 10, True)
        self.assertEqual((nothing.rows, nothing.skipped), ([], False))
