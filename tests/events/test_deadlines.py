"""Every socket event is answered within ``database.timeout`` of its arrival (issue 22, G8).

On a `Clock`: a slow event (a route whose handler waits until the test
lets it go, standing in for one stuck on the database) and the events
queued behind it on the same socket.  The slow one is answered with a
``timeout`` error at its deadline and its late result is dropped; one that
waited its whole deadline in the queue is answered so then, never run.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from umoc.events.router import NOT_DONE_IN_TIME, NOT_RUN_IN_TIME, Route
from umoc.records.schema import SESSION_ID, Schema

NOT_DONE = {"error": NOT_DONE_IN_TIME, "code": "timeout"}
NOT_RUN = {"error": NOT_RUN_IN_TIME, "code": "timeout"}


class EventDeadlineTests(NodeTestCase):
    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.timeout = self.config.database.timeout
        self.gate: defer.Deferred[Any] = defer.Deferred()
        self.finished: list[Any] = []

        async def slow(ctx: Any, payload: dict[str, Any]) -> Any:
            result = await self.gate
            self.finished.append(result)
            return result

        router = self.node.socketapp.router
        router.routes["slow_test_event"] = Route("slow_test_event", Schema(SESSION_ID), slow)
        self.addCleanup(router.routes.pop, "slow_test_event")
        self.addCleanup(lambda: None if self.gate.called else self.gate.callback({"cleanup": True}))
        self.socket = await self.connected("alice")

    def send(self, ack_id: int, event: str, **payload: Any) -> defer.Deferred[Any]:
        answer = self.socket.answer(ack_id)
        self.node.socketapp.on_event(self.socket, event, [payload], ack_id)  # type: ignore[arg-type]
        return answer

    def test_events_answer_at_their_deadline_and_a_queued_one_is_not_run(self) -> None:
        slow = self.send(1, "slow_test_event")
        queued = self.send(2, "ping", timestamp=1)
        self.clock.advance(self.timeout - 0.1)
        self.assertFalse(slow.called or queued.called, "nothing answered before the deadline")
        self.clock.advance(0.2)
        self.assertEqual(self.successResultOf(slow), NOT_DONE)
        self.assertEqual(self.successResultOf(queued), NOT_RUN)
        errors = self.socket.events("error")
        self.assertEqual(
            errors, [{"message": NOT_DONE_IN_TIME, "code": "timeout"}, {"message": NOT_RUN_IN_TIME, "code": "timeout"}]
        )

        self.gate.callback({"late": True})
        self.assertEqual(self.finished, [{"late": True}], "the slow event still completed")
        self.assertEqual([a for a in self.socket.acks if a[0] == 1], [(1, NOT_DONE)], "its late result was dropped")
        self.assertEqual(self.socket.events("pong"), [], "the queued ping never ran")
        self.assertEqual(len(self.socket.events("error")), 2, "each answered once")

        after = self.send(3, "ping", timestamp=1)
        self.assertEqual(self.successResultOf(after)["timestamp"], 1, "the socket serves again")

    def test_a_queued_event_that_starts_in_time_runs_with_what_is_left(self) -> None:
        slow = self.send(1, "slow_test_event")
        self.clock.advance(1)
        queued = self.send(2, "ping", timestamp=1)
        self.clock.advance(self.timeout - 1.5)
        self.gate.callback({"done": True})
        self.assertEqual(self.successResultOf(slow), {"done": True})
        self.assertEqual(self.successResultOf(queued)["timestamp"], 1)
        self.clock.advance(self.timeout * 2)
        self.assertEqual(self.socket.events("error"), [], "no timeout after the answers")
        self.assertEqual(len(self.socket.acks), 2)

    def test_an_event_received_past_its_deadline_is_refused_without_running(self) -> None:
        received = self.clock.seconds() - self.timeout - 1
        router = self.node.socketapp.router
        self.successResultOf(defer.ensureDeferred(router.handle(self.socket, "ping", [{"timestamp": 1}], 9, received)))
        self.assertEqual(self.socket.acks[-1], (9, NOT_RUN))
        self.assertEqual(self.socket.events("pong"), [])

    def test_a_handler_failing_after_its_deadline_answers_only_once(self) -> None:
        slow = self.send(1, "slow_test_event")
        self.clock.advance(self.timeout + 0.1)
        self.assertEqual(self.successResultOf(slow), NOT_DONE)
        self.gate.errback(RuntimeError("late failure"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1, "the failure is still logged")
        self.assertEqual(self.socket.events("error"), [{"message": NOT_DONE_IN_TIME, "code": "timeout"}])
        self.assertEqual(len(self.socket.acks), 1)

    def test_events_share_one_timer_and_each_is_answered_at_its_own_deadline(self) -> None:
        router = self.node.socketapp.router
        # A read, so that its long wait since ``received`` is no overload (`umoc.domain.overload`).
        route = router.routes["slow_test_event"]
        router.routes["slow_read_test_event"] = Route("slow_read_test_event", route.schema, route.handler, writes=False)
        self.addCleanup(router.routes.pop, "slow_read_test_event")
        before = len(self.clock.getDelayedCalls())
        first = self.send(1, "slow_test_event")
        self.clock.advance(1)
        second = self.send(2, "ping", timestamp=1)  # queued behind the slow one
        self.assertEqual(len(self.clock.getDelayedCalls()), before + 1, "one timer for both deadlines")
        # A deadline earlier than those already kept (received long ago) moves the timer forward.
        received = self.clock.seconds() - self.timeout + 0.5
        early = defer.ensureDeferred(router.handle(self.socket, "slow_read_test_event", [{}], 3, received))
        self.clock.advance(0.5)
        self.assertEqual(self.socket.acks, [(3, NOT_DONE)], "the early one at its deadline, the others not yet")
        self.clock.advance(self.timeout - 1.5 - 0.1)
        self.assertFalse(first.called)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(first), NOT_DONE)
        self.assertFalse(second.called, "the queued one's deadline is a second later")
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(second), NOT_RUN)
        self.gate.callback({"late": True})
        self.successResultOf(early)
        self.assertEqual(len(self.clock.getDelayedCalls()), before, "no timer left once every event is done")
