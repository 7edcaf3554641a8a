"""A refusal reaches the socket with its code, and a fault answers ``internal`` (issue 27).

The router turns a handler's `UserError` into the ``error`` event
``{"message", "code"}`` and the ack ``{"error", "code"}``, and any other
exception into ``Internal server error`` with code ``internal``; the
socket stays connected.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from umoc.events.router import Route
from umoc.records.schema import SESSION_ID, Schema


class ErrorCodeTests(NodeTestCase):
    @inline
    async def setUp(self) -> None:
        await super().setUp()

        async def broken(ctx: Any, payload: dict[str, Any]) -> Any:
            raise RuntimeError("a bug")

        router = self.node.socketapp.router
        router.routes["broken_test_event"] = Route("broken_test_event", Schema(SESSION_ID), broken, writes=False)
        self.addCleanup(router.routes.pop, "broken_test_event")
        self.socket = await self.connected("alice")

    def send(self, ack_id: int, event: str, payload: Any) -> defer.Deferred[Any]:
        answer = self.socket.answer(ack_id)
        self.node.socketapp.on_event(self.socket, event, [payload], ack_id)  # type: ignore[arg-type]
        return answer

    def test_a_fault_answers_internal_and_the_socket_lives_on(self) -> None:
        answer = self.successResultOf(self.send(1, "broken_test_event", {}))
        self.assertEqual(answer, {"error": "Internal server error", "code": "internal"})
        self.assertEqual(self.socket.events("error"), [{"message": "Internal server error", "code": "internal"}])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(self.socket.connected)

    def test_validation_and_unknown_events_name_their_codes(self) -> None:
        self.assertEqual(
            self.successResultOf(self.send(1, "ping", "not an object")),
            {"error": "Invalid payload: expected a JSON object", "code": "invalid_argument"},
        )
        self.assertEqual(
            self.successResultOf(self.send(2, "no_such_event", {})),
            {"error": "Unknown event 'no_such_event'", "code": "unknown_event"},
        )
