"""The one dispatch table: event name -> (schema, rate class, handler, response event).

Domain modules (``umoc.events.auth``, ``.contacts``, ...) each export
``ROUTES``; `build_routes` joins them and refuses duplicates and unknown
rate classes.  Nothing else
in UMOC switches on event names.

Every refusal answers the ``error`` event ``{"message", "code", ...}`` and,
when asked, the ack ``{"error", "code", ...}`` (`UserError.payload`,
`UserError.ack`); ``code`` is one of `umoc.errors.CODES`, ``internal`` for
an exception that is no `UserError`.

Each socket's events run one at a time, in arrival order, so a client that
sends two messages sees them stored in that order; different sockets run
concurrently.  A socket with too many events waiting gets ``error`` for the
excess instead of growing a queue without bound.

When the node stops (`Router.close`), events not started yet are answered
with ``error`` and new ones too; `Router.idle` fires once those already
running are done, so what a client was told succeeded is committed.

Every event has a deadline, ``database.timeout`` counted from its arrival
(its wait behind the socket's earlier events included): one whose deadline
passed before it starts is answered ``error`` with ``code: "timeout"``
without running; one still running at its deadline is answered so then,
once, and its late result is dropped (it still completes, and the socket's
next event still waits for it, so order holds).  The node's deadlines share
one timer (`_Deadlines`), set for the earliest.

Past ``server.overload_wait`` (`umoc.domain.overload`) an event that writes
(``Route.writes``) is refused with ``code: "overloaded"`` and
``retry_after`` without running: on arrival if it would wait behind the
socket's earlier events (answered at once, before them), else when it
starts, before its payload is validated or a token drawn from its bucket.

With a replica (``database.read_dsn``), a socket's user is marked once an
event that writes has completed (its commit done), so their own reads go to
the primary until the replica has it (`umoc.storage.replica`).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Collection, Iterable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from umoc.config import RATE_CLASSES
from umoc.domain.notices import ERROR, ServerEvent
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.schema import Schema
from umoc.transport.socketio import ClientSocket

__all__ = ["EventContext", "Route", "Router", "build_routes"]

#: The answer to events that arrive while the node stops.
SHUTTING_DOWN = "The server is shutting down; send this again once reconnected"
#: The answer to an event whose deadline passed before it started: it was not run.
NOT_RUN_IN_TIME = "The server could not start this in time; it was not run, send it again"
#: The answer to an event still running at its deadline: it may yet take effect.
NOT_DONE_IN_TIME = "The server did not finish this in time; it may still take effect, check before sending it again"

log = Logger()

Handler = Callable[["EventContext", dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """How one client event is handled.

    ``response`` names the event the handler's result is emitted as (and the
    ack carries the same payload); None means the handler emits by itself.
    ``rate_class`` names a bucket in ``ratelimits`` config.
    """

    event: str
    schema: Schema
    handler: Handler
    response: ServerEvent | None = None
    rate_class: str = "events"
    #: A payload ``sessionID`` other than the socket's own is refused before the handler runs,
    #: unless the handler answers it itself (``verify_session`` says such a session is not valid).
    foreign_session_refused: bool = True
    #: The event may change state: refused while the node is overloaded (`umoc.domain.overload`).
    #: Only events that change nothing say False.
    writes: bool = True


@dataclass(frozen=True, slots=True)
class EventContext:
    """What a handler knows: the services and the socket that asked."""

    services: Services
    socket: ClientSocket

    @property
    def user_id(self) -> int:
        return self.socket.identity.user_id

    @property
    def username(self) -> str:
        return self.socket.identity.username

    @property
    def session_id(self) -> str:
        return self.socket.identity.session_id

    @property
    def actor(self) -> Actor:
        """This socket's user, as the domain commands take them."""
        identity = self.socket.identity
        return Actor.user(identity.user_id, identity.username, "socket", identity.session_id, self.socket.remote_ip)

    def now(self) -> float:
        return self.services.clock.seconds()


def build_routes(groups: Iterable[Iterable[Route]], rate_classes: Collection[str] = RATE_CLASSES) -> dict[str, Route]:
    """One table from the modules' ``ROUTES``.

    `ValueError` at start-up for an event routed twice, or a route whose
    ``rate_class`` is no bucket in ``ratelimits`` (``rate_classes``): a typo
    there would otherwise only show when the event is first sent.
    """
    table: dict[str, Route] = {}
    for group in groups:
        for route in group:
            if route.event in table:
                raise ValueError(f"event {route.event!r} routed twice")
            if route.rate_class not in rate_classes:
                raise ValueError(
                    f"event {route.event!r}: unknown rate class {route.rate_class!r} (expected one of "
                    + ", ".join(rate_classes)
                    + ")"
                )
            table[route.event] = route
    return table


class Router:
    """Validates, rate-limits and runs events; answers with the response event and ack."""

    MAX_QUEUED = 64

    def __init__(self, services: Services, routes: dict[str, Route]) -> None:
        self.services = services
        self.routes = routes
        self._queues: dict[Any, deque[_Pending]] = {}
        self._running: set[defer.Deferred[None]] = set()
        self._deadlines = _Deadlines(services.clock)
        self.closed = False
        #: With a replica (``database.read_dsn``), who wrote is remembered for read-your-writes; else None.
        self._reads = services.storage.reads if services.storage.reads.replicated else None

    def dispatch(self, socket: ClientSocket, event: str, args: list[Any], ack_id: int | None) -> None:
        if self.closed:
            self._reply_error(socket, ack_id, UserError(SHUTTING_DOWN, code="unavailable"))
            return
        pending = _Pending(socket, event, args, ack_id, self.services.clock.seconds())
        queue = self._queues.get(socket)
        if queue is None:
            queue = self._queues[socket] = deque()
            queue.append(pending)
            self._drain(socket, queue)
        elif len(queue) >= self.MAX_QUEUED:
            self._reply_error(
                socket, ack_id, UserError("Too many events in flight; slow down", code="too_many_pending")
            )
        elif (refusal := self._overloaded(event)) is not None:
            # Refused now rather than after the socket's earlier events: it would not run anyway.
            self._reply_error(socket, ack_id, refusal)
        else:
            # Answered at its deadline even while it still waits behind the socket's earlier events.
            pending.queue = queue
            self._deadlines.add(pending.received + self._timeout(), pending)
            queue.append(pending)

    def _overloaded(self, event: str) -> UserError | None:
        """The refusal for a write while the node is overloaded, else None (reads and unknown events)."""
        route = self.routes.get(event)
        if route is None or not route.writes:
            return None
        return self.services.admission.refusal("socket")

    def _timeout(self) -> float:
        return self.services.config.database.timeout

    def forget(self, socket: ClientSocket) -> None:
        queue = self._queues.pop(socket, None)
        if queue is not None:
            for pending in queue:
                pending.finished = True
            queue.clear()
            self._deadlines.done()

    def close(self) -> None:
        """Refuse every event not started yet, and those to come (the node is stopping)."""
        self.closed = True
        for socket, queue in list(self._queues.items()):
            refused = [queue.pop() for _ in range(len(queue) - 1)]  # queue[0] is running
            for pending in reversed(refused):
                pending.finished = True
                self._reply_error(socket, pending.ack_id, UserError(SHUTTING_DOWN, code="unavailable"))
        self._deadlines.done()

    def idle(self) -> defer.Deferred[Any]:
        """Fires when the events running now are done."""
        return defer.DeferredList(list(self._running), consumeErrors=True)

    def _drain(self, socket: ClientSocket, queue: deque[_Pending]) -> None:
        """Run queued events one after another; synchronous results do not recurse."""
        while queue:
            pending = queue[0]
            pending.finished = True  # its deadline is handle's to keep from now on
            d = defer.ensureDeferred(self.handle(socket, pending.event, pending.args, pending.ack_id, pending.received))
            if not d.called:
                self._running.add(d)

                def next_one(_: Any, d: defer.Deferred[None] = d) -> None:
                    self._running.discard(d)
                    if queue:
                        queue.popleft()
                    if self._queues.get(socket) is queue:
                        if queue:
                            self._drain(socket, queue)
                        else:
                            del self._queues[socket]

                d.addBoth(next_one)
                return
            queue.popleft()
        if self._queues.get(socket) is queue:
            del self._queues[socket]

    async def handle(
        self, socket: ClientSocket, event: str, args: list[Any], ack_id: int | None, received: float | None = None
    ) -> None:
        """Run one event, received at ``received`` (now by default), within its deadline; never raises."""
        clock = self.services.clock
        started = clock.seconds()
        ok = False
        answer = _Answer(socket, ack_id)
        deadline = (started if received is None else received) + self._timeout()
        try:
            if deadline <= started:
                raise UserError(NOT_RUN_IN_TIME, code="timeout")
            self._deadlines.add(deadline, answer)
            route = self.routes.get(event)
            if route is None:
                raise UserError(f"Unknown event '{event[:64]}'", code="unknown_event")
            if route.writes:
                # Its wait behind the socket's earlier events counts: past the bound it is late already.
                self.services.admission.check("socket", 0.0 if received is None else started - received)
            payload = route.schema.validate(args[0] if args else None)
            claimed = payload.get("sessionID")
            if claimed is not None and claimed != socket.identity.session_id and route.foreign_session_refused:
                raise UserError("sessionID does not match this connection's session", code="invalid_argument")
            limiter = self.services.ratelimiter
            allowed, retry_after = await limiter.can_do_action(route.rate_class, f"user:{socket.user_id}")
            if not allowed:
                self.services.metrics.refused(route.rate_class)
                raise UserError("Rate limit exceeded; try again later", retry_after=retry_after, code="rate_limited")
            if self._reads is not None and route.writes:
                try:
                    result = await route.handler(EventContext(self.services, socket), payload)
                finally:
                    # Committed (or refused, or failed halfway): this user's reads go to the primary for now.
                    self._reads.wrote(socket.user_id)
            else:
                result = await route.handler(EventContext(self.services, socket), payload)
            if answer.given:
                pass  # answered at the deadline: the late result is dropped
            elif route.response is not None:
                answer.given = True
                socket.tell(route.response(result))
                if ack_id is not None:
                    socket.ack(ack_id, result)
            elif ack_id is not None:
                answer.given = True
                socket.ack(ack_id, result if result is not None else {"ok": True})
            ok = not answer.timed_out
        except UserError as exc:
            answer.error(exc)
        except Exception:  # noqa: BLE001 - one bad event must not end the connection
            log.failure("Error handling event {event}", event=event)
            answer.error(UserError("Internal server error", code="internal"))
        finally:
            answer.finished = True
            self._deadlines.done()
            self.services.metrics.event_done(
                event if event in self.routes else "unknown", ok, self.services.clock.seconds() - started
            )

    @staticmethod
    def _reply_error(socket: ClientSocket, ack_id: int | None, error: UserError) -> None:
        socket.tell(ERROR(error.payload()))
        if ack_id is not None:
            socket.ack(ack_id, error.ack())


class _Pending:
    """An event in its socket's queue; while it waits behind earlier ones, its deadline is kept here.

    ``finished`` once it starts (`Router.handle` keeps its deadline from
    then on), is refused or its socket goes: its deadline is then moot.
    """

    __slots__ = ("socket", "event", "args", "ack_id", "received", "queue", "finished")

    def __init__(self, socket: ClientSocket, event: str, args: list[Any], ack_id: int | None, received: float) -> None:
        self.socket = socket
        self.event = event
        self.args = args
        self.ack_id = ack_id
        self.received = received
        #: The socket's queue, once it waits in it behind earlier events.
        self.queue: deque[_Pending] | None = None
        self.finished = False

    def expire(self) -> None:
        """It waited its whole deadline behind earlier events: answered, and never run."""
        self.finished = True
        if self.queue is not None and self in self.queue:
            self.queue.remove(self)  # never queue[0]: that one runs (finished)
        Router._reply_error(self.socket, self.ack_id, UserError(NOT_RUN_IN_TIME, code="timeout"))


class _Answer:
    """One event's answer: given once, by its result, its error or its deadline, whichever comes first.

    ``finished`` once `Router.handle` is done with it: its deadline is then moot.
    """

    __slots__ = ("socket", "ack_id", "given", "timed_out", "finished")

    def __init__(self, socket: ClientSocket, ack_id: int | None) -> None:
        self.socket = socket
        self.ack_id = ack_id
        self.given = False
        self.timed_out = False
        self.finished = False

    def expire(self) -> None:
        """Still running at its deadline: answered so now (it may yet take effect)."""
        self.error(UserError(NOT_DONE_IN_TIME, code="timeout"))

    def error(self, error: UserError) -> None:
        if self.given:
            return
        self.given = True
        self.timed_out = error.code == "timeout"
        Router._reply_error(self.socket, self.ack_id, error)


class _Deadlines:
    """The deadlines of the events waiting and running on this node, kept by one timer.

    A `DelayedCall` per event, made when it starts and cancelled when it
    ends (nearly always long before its deadline), cost more than the rest of
    the router's own work for a message (``bench/bench_hotpath.py``).  Here
    each deadline is an entry of a heap, and one timer is set for the
    earliest: moved only when an earlier one comes, cancelled when no entry
    is left.  An entry ``finished`` (its event answered, or started, or
    gone) is dropped when it reaches the top; one not finished at its
    deadline is expired then, at the same moment its own timer would have
    fired.
    """

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, _Pending | _Answer]] = []
        self._order = itertools.count()
        self._call: IDelayedCall | None = None
        self._at = 0.0

    def add(self, at: float, entry: _Pending | _Answer) -> None:
        """``entry.expire()`` at ``at`` unless it is ``finished`` by then."""
        heapq.heappush(self._heap, (at, next(self._order), entry))
        if self._call is None or at < self._at:
            self._arm(at)

    def done(self) -> None:
        """An entry finished: those at the top are dropped; with none left, so is the timer."""
        heap = self._heap
        while heap and heap[0][2].finished:
            heapq.heappop(heap)
        if not heap and self._call is not None:
            self._call.cancel()
            self._call = None

    def _arm(self, at: float) -> None:
        if self._call is not None:
            self._call.cancel()
        self._at = at
        self._call = self._clock.callLater(max(0.0, at - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._call = None
        now = max(self._clock.seconds(), self._at)
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)[2]
            if not entry.finished:
                entry.expire()
        while heap and heap[0][2].finished:
            heapq.heappop(heap)
        if heap and self._call is None:
            self._arm(heap[0][0])
