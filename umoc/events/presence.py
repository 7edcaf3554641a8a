"""Presence: ``user_status`` to a user's friends when they come online or go offline."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from umoc.app import Application
    from umoc.transport.socketio import ClientSocket

__all__ = ["install"]


async def _opened(app: "Application", socket: "ClientSocket") -> None:
    await app.presence.socket_opened(socket.user_id)


async def _closed(app: "Application", socket: "ClientSocket") -> None:
    if await app.presence.socket_closed(socket.user_id):
        await app.storage.users.set_last_seen(socket.user_id, app.clock.seconds())


def install(app: "Application") -> None:
    app.connect_hooks.append(_opened)
    app.disconnect_hooks.append(_closed)
