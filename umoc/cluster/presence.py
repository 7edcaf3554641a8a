"""Who is online: this node's hub alone, or every node through Redis."""

from __future__ import annotations

from typing import Iterable, Protocol

from twisted.internet import defer

from umoc.cluster.hub import Hub

__all__ = ["LocalPresence", "Presence"]


class Presence(Protocol):
    def online_among(self, user_ids: Iterable[int]) -> defer.Deferred[set[int]]:
        """The subset of ``user_ids`` with at least one socket anywhere."""
        ...

    def socket_opened(self, user_id: int) -> defer.Deferred[bool]:
        """Count a new socket; True when the user just came online everywhere."""
        ...

    def socket_closed(self, user_id: int) -> defer.Deferred[bool]:
        """Uncount a socket; True when the user just went offline everywhere."""
        ...

    async def heartbeat(self) -> list[int]:
        """Refresh this node's entries; the users to announce online again (see ``redispresence``)."""
        ...

    async def reap_dead_nodes(self) -> list[int]:
        """Users of nodes that died who are now online nowhere; each returned to one node only."""
        ...


class LocalPresence:
    """One node alone: the hub is the whole truth.

    The hub has already added (or removed) the socket when these are called.
    """

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def online_among(self, user_ids: Iterable[int]) -> defer.Deferred[set[int]]:
        return defer.succeed({u for u in user_ids if self._hub.is_local(u)})

    def socket_opened(self, user_id: int) -> defer.Deferred[bool]:
        return defer.succeed(len(self._hub.by_user.get(user_id, ())) == 1)

    def socket_closed(self, user_id: int) -> defer.Deferred[bool]:
        return defer.succeed(not self._hub.is_local(user_id))

    async def heartbeat(self) -> list[int]:
        return []

    async def reap_dead_nodes(self) -> list[int]:
        return []
