"""Presence: ``user_status`` to a user's friends when they come online or go offline.

Only the transitions count (first socket anywhere, last socket anywhere),
so a second device does not announce its user twice.  Friends means friends
both ways, which already leaves out anyone a block separates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from umoc.clock import iso

if TYPE_CHECKING:
    from umoc.app import Application
    from umoc.transport.socketio import ClientSocket

__all__ = ["install"]


async def _opened(app: Application, socket: ClientSocket) -> None:
    if await app.presence.socket_opened(socket.user_id):
        friends = await app.storage.contacts.friend_ids(socket.user_id)
        app.hub.emit_to_users(
            friends, "user_status", {"user_id": socket.user_id, "username": socket.username, "status": "online"}
        )


async def _closed(app: Application, socket: ClientSocket) -> None:
    if await app.presence.socket_closed(socket.user_id):
        now = app.clock.seconds()
        await app.storage.users.set_last_seen(socket.user_id, now)
        friends = await app.storage.contacts.friend_ids(socket.user_id)
        app.hub.emit_to_users(
            friends,
            "user_status",
            {"user_id": socket.user_id, "username": socket.username, "status": "offline", "last_seen": iso(now)},
        )


def install(app: Application) -> None:
    app.connect_hooks.append(_opened)
    app.disconnect_hooks.append(_closed)
