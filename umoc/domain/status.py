"""``user_status`` to a user's friends when they come online or go offline.

Only the transitions count (first socket anywhere, last socket anywhere),
so a second device does not announce its user twice.  Friends means friends
both ways, which already leaves out anyone a block separates.

Besides sockets opening and closing, two things change who is online: a
node that dies (its users are claimed by exactly one surviving node, see
``umoc.cluster.redispresence``, which announces them offline through
`reap_dead_nodes`), and a node that stops cleanly (`withdraw`).
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterable, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from umoc.cluster.hub import Hub
from umoc.cluster.presence import Presence
from umoc.domain import notices
from umoc.storage import Storage
from umoc.timefmt import iso

__all__ = ["StatusAnnouncer"]

log = Logger()


Answer = TypeVar("Answer")


class PerUserReads(Generic[Answer]):
    """One read for many users at once, for a burst of connects (their position, their announcements).

    Every socket that opens or closes for a user's first or last time reads
    the user's friends; in a burst (clients reconnecting after a restart, a
    load balancer's shift) that was one database round trip per socket, on
    PostgreSQL most of what a connect cost.  The first caller reads at
    once, alone; callers that come while a read is in flight wait for the
    next one, which reads for all of them (at most `MAX_USERS`).  Each read
    starts after its callers asked, so no answer is older than the call.

    ``read(user_ids)`` answers ``{user_id: answer}`` for every one of them.
    """

    MAX_USERS = 500

    def __init__(self, read: Callable[[list[int]], defer.Deferred[dict[int, Answer]]]) -> None:
        self._read_users = read
        self._waiting: dict[int, list[defer.Deferred[Answer]]] = {}
        self._reading = False

    def get(self, user_id: int) -> defer.Deferred[Answer]:
        d: defer.Deferred[Answer] = defer.Deferred()
        self._waiting.setdefault(user_id, []).append(d)
        if not self._reading:
            self._read()
        return d

    def _read(self) -> None:
        waiting = self._waiting
        if len(waiting) > self.MAX_USERS:
            batch = dict(list(waiting.items())[: self.MAX_USERS])
            for user_id in batch:
                del waiting[user_id]
        else:
            batch, self._waiting = waiting, {}
        self._reading = True
        defer.maybeDeferred(self._read_users, list(batch)).addBoth(self._answer, batch)

    def _answer(self, result: Any, batch: dict[int, list[defer.Deferred[Answer]]]) -> None:
        self._reading = False
        if self._waiting:
            self._read()
        for user_id, waiters in batch.items():
            for d in waiters:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result[user_id])


class FriendReads(PerUserReads[list[int]]):
    """`PerUserReads` of ``friend_ids``."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(self._friend_ids_of)
        self._storage = storage

    def _friend_ids_of(self, user_ids: list[int]) -> defer.Deferred[dict[int, list[int]]]:
        return self._storage.contacts.friend_ids_of(user_ids)


class ArrivalReads(PerUserReads[tuple[str, list[int]]]):
    """`PerUserReads` of what a connect needs: ``(feed cursor, friend ids)``, in one read (`ArrivalStore.arrive`)."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(self._arrive)
        self._storage = storage

    def _arrive(self, user_ids: list[int]) -> defer.Deferred[dict[int, tuple[str, list[int]]]]:
        return self._storage.arrivals.arrive(user_ids).addCallback(_per_user)


def _per_user(found: tuple[str, dict[int, list[int]]]) -> dict[int, tuple[str, list[int]]]:
    cursor, friends = found
    return {user_id: (cursor, ids) for user_id, ids in friends.items()}


class StatusAnnouncer:
    #: Users announced at once when many change together (a node died): the database is shared.
    CONCURRENCY = 4

    def __init__(self, presence: Presence, storage: Storage, hub: Hub, clock: IReactorTime) -> None:
        self._presence = presence
        self._storage = storage
        self._hub = hub
        self._clock = clock
        self._friends = FriendReads(storage)
        self._arrivals = ArrivalReads(storage)

    def arrival(self, user_id: int) -> defer.Deferred[tuple[str, list[int]]]:
        """The feed cursor a connecting socket starts from and the user's friends, in one read shared by the
        connects of that moment; given to `socket_opened`, the ``online`` announcement reads nothing more."""
        return self._arrivals.get(user_id)

    async def socket_opened(self, user_id: int, username: str, friends: list[int] | None = None) -> None:
        """``friends``: read with the connect (`arrival`); None reads them if the user just came online."""
        if await self._presence.socket_opened(user_id):
            await self._online(user_id, username, friends)

    async def socket_closed(self, user_id: int, username: str) -> None:
        if await self._presence.socket_closed(user_id):
            await self._offline(user_id, username)

    async def _online(self, user_id: int, username: str, friends: list[int] | None = None) -> None:
        if friends is None:
            friends = await self._friends.get(user_id)
        status = {"user_id": user_id, "username": username, "status": "online"}
        self._hub.tell(friends, notices.USER_STATUS(status))

    async def _offline(self, user_id: int, username: str) -> None:
        now = self._clock.seconds()
        # ``last_seen`` and the friends it is told to, in one group-committed transaction.
        friends = await self._storage.arrivals.depart(user_id, now)
        self._hub.tell(
            friends,
            notices.USER_STATUS({"user_id": user_id, "username": username, "status": "offline", "last_seen": iso(now)}),
        )

    # -- many at once -------------------------------------------------------

    async def heartbeat(self) -> None:
        """The presence heartbeat; users another node had declared dead with this one are online again."""
        await self._each(await self._presence.heartbeat(), online=True)

    async def reap_dead_nodes(self) -> None:
        """Announce offline the users of nodes that died (this node alone claimed them)."""
        users = await self._presence.reap_dead_nodes()
        if users:
            log.info("A node stopped without saying goodbye; announcing {count} users offline", count=len(users))
        await self._each(users, online=False)

    async def announce_offline(self, user_ids: Iterable[int]) -> None:
        await self._each(list(user_ids), online=False)

    async def _each(self, user_ids: list[int], online: bool) -> None:
        if not user_ids:
            return
        semaphore = defer.DeferredSemaphore(self.CONCURRENCY)
        await defer.gatherResults(
            [semaphore.run(self._one, user_id, online) for user_id in user_ids], consumeErrors=True
        )

    def _one(self, user_id: int, online: bool) -> defer.Deferred[Any]:
        async def announce() -> None:
            user = await self._storage.users.by_id(user_id)
            if user is not None:
                await (self._online if online else self._offline)(user_id, user.username)

        d = defer.ensureDeferred(announce())
        d.addErrback(lambda f: log.failure("Could not announce user {user_id}", f, user_id=user_id))
        return d
