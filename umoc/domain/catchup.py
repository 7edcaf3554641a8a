"""Catch this node's sockets up from the database after a gap in the Redis bus.

While a node's bus is down (``umoc.cluster.buswatch``), messages stored by
other nodes do not reach its sockets live, and its own publications do not
reach theirs.  The database has them all.  When the bus works again, the
node replays to each of its users the ``new_message`` events stored since
the gap began, oldest first, skipping every message the hub already
delivered to that user (the hub remembers recent message ids), so each
reaches each socket exactly once, with no client action::

    gap ends (since = T)
      hold live deliveries for every local user
      for each local user, a few at a time (the database is async):
          missed_since(user, T - margin)  ->  new_message, oldest first, unless delivered
          release the user's held deliveries (newer, so they come after)

``margin`` covers a message stamped before the gap but published after
it began (the stamp is taken inside the transaction, the publication
follows the commit), and clocks that differ a little between nodes.  A
socket that joined after a message (beyond the margin) does not get it:
what predates a socket is what ``sync`` and connection state recovery are
for.  Requests that arrive while a catch-up runs are merged into one more
run, from the earliest time asked.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.cluster.hub import Hub
from umoc.domain.notices import shapes
from umoc.storage import Storage

__all__ = ["CatchUp"]

log = Logger()


class CatchUp:
    """Replays missed ``new_message`` events to this node's users."""

    #: Seconds before the gap's start that are looked at again.
    MARGIN = 10.0
    #: Users queried at once.
    CONCURRENCY = 4
    #: Messages fetched per query, and at most per user and catch-up.
    PAGE = 200
    MAX_PER_USER = 2_000

    def __init__(self, hub: Hub, storage: Storage, clock: IReactorTime) -> None:
        self._hub = hub
        self._storage = storage
        self._clock = clock
        self._pending: float | None = None
        self._running: defer.Deferred[None] | None = None
        #: How many events the catch-ups replayed (for tests and logs).
        self.replayed = 0

    def request(self, since: float) -> defer.Deferred[None]:
        """Catch up from ``since`` (epoch seconds); fires when every run asked for so far is done."""
        self._pending = since if self._pending is None else min(self._pending, since)
        if self._running is None:
            self._running = defer.ensureDeferred(self._run())
            self._running.addErrback(lambda f: log.failure("Catch-up failed", f))
        d: defer.Deferred[None] = defer.Deferred()
        self._running.addBoth(lambda result: (d.callback(None), result)[1])
        return d

    async def _run(self) -> None:
        try:
            while self._pending is not None:
                since, self._pending = self._pending, None
                await self._catch_up(since)
        finally:
            self._running = None

    async def _catch_up(self, since: float) -> None:
        users = list(self._hub.by_user)
        if not users:
            return
        started = self._clock.seconds()
        before = self.replayed
        self._hub.hold(users)
        semaphore = defer.DeferredSemaphore(self.CONCURRENCY)
        try:
            await defer.gatherResults(
                [semaphore.run(self._user_deferred, user_id, since - self.MARGIN) for user_id in users],
                consumeErrors=True,
            )
        finally:
            for user_id in users:
                self._hub.release(user_id)
        log.info(
            "Caught up {users} users from {since}: {count} missed messages in {seconds:.2f}s",
            users=len(users),
            since=since,
            count=self.replayed - before,
            seconds=self._clock.seconds() - started,
        )

    def _user_deferred(self, user_id: int, since: float) -> defer.Deferred[Any]:
        d = defer.ensureDeferred(self._user(user_id, since))
        d.addErrback(lambda f: log.failure("Catch-up of user {user_id} failed", f, user_id=user_id))
        d.addBoth(lambda _: self._hub.release(user_id))
        return d

    async def _user(self, user_id: int, since: float) -> None:
        after_seq, count = 0, 0
        while count < self.MAX_PER_USER and self._hub.is_local(user_id):
            found = await self._storage.messages.missed_since(user_id, since, self.PAGE, after_seq)
            for message in found:
                if self._hub.deliver_missed(
                    user_id, message.id, message.created_at, self.MARGIN, "new_message", shapes.new_message(message)
                ):
                    self.replayed += 1
            count += len(found)
            if len(found) < self.PAGE:
                return
            after_seq = found[-1].seq
