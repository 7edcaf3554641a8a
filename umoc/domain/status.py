"""``user_status`` to a user's friends when they come online or go offline.

Only the transitions count (first socket anywhere, last socket anywhere),
so a second device does not announce its user twice.  Friends means friends
both ways, which already leaves out anyone a block separates.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from umoc.cluster.hub import Hub
from umoc.cluster.presence import Presence
from umoc.storage import Storage
from umoc.timefmt import iso

__all__ = ["StatusAnnouncer"]


class StatusAnnouncer:
    def __init__(self, presence: Presence, storage: Storage, hub: Hub, clock: IReactorTime) -> None:
        self._presence = presence
        self._storage = storage
        self._hub = hub
        self._clock = clock

    async def socket_opened(self, user_id: int, username: str) -> None:
        if await self._presence.socket_opened(user_id):
            friends = await self._storage.contacts.friend_ids(user_id)
            status = {"user_id": user_id, "username": username, "status": "online"}
            self._hub.emit_to_users(friends, "user_status", status)

    async def socket_closed(self, user_id: int, username: str) -> None:
        if await self._presence.socket_closed(user_id):
            now = self._clock.seconds()
            await self._storage.users.set_last_seen(user_id, now)
            friends = await self._storage.contacts.friend_ids(user_id)
            self._hub.emit_to_users(
                friends,
                "user_status",
                {"user_id": user_id, "username": username, "status": "offline", "last_seen": iso(now)},
            )
