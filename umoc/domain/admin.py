"""What an administrator may look up, and moderation, for both ``umoc-admin`` and ``/api/admin/``.

The account changes (which sessions a change ends and what their sockets
are told, how invite codes are made) are commands in
`umoc.domain.commands.account` and `umoc.domain.commands.bots`.  Both
callers get it from ``umoc.wiring`` with a `Hub`: a node's own (its
sockets, and the Redis bus to the others), or for ``umoc-admin`` one with
no sockets whose bus, when Redis is configured, reaches every running node.
A moderator's deletion of a message is `umoc.domain.commands.messages.delete`,
as the sender's own.
With no Redis, running nodes notice ended sessions by themselves within
``sessions.check_interval`` (`SessionManager.sweep`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.cluster.hub import Hub
from umoc.domain.sessions import SessionManager
from umoc.domain.webhooks import Webhooks
from umoc.errors import UserError
from umoc.storage import Storage
from umoc.storage.admin import UserInfo
from umoc.timefmt import iso, iso_or_none

__all__ = ["Administration", "NotFoundError", "user_json"]

log = Logger()

#: Most accounts one listing returns.
MAX_LIST = 1000


class NotFoundError(UserError):
    """No such account or message."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_found")


def user_json(user: UserInfo) -> dict[str, Any]:
    """An account as ``umoc-admin --json`` and ``/api/admin/`` show it."""
    return {
        "user_id": user.id,
        "username": user.username,
        "is_admin": user.is_admin,
        "active": user.active,
        "deactivated_at": iso_or_none(user.deactivated_at),
        "created_at": iso(user.created_at),
        "last_seen": iso_or_none(user.last_seen),
        "sessions": user.sessions,
        "deleted_at": iso_or_none(user.deleted_at),
    }


class Administration:
    """What an administrator reads (accounts, the registration mode) and moderation.

    The account changes are commands (`umoc.domain.commands.account` and
    ``.bots``), called by the admin API and ``umoc-admin`` alike.
    """

    def __init__(
        self,
        storage: Storage,
        sessions: SessionManager,
        hub: Hub,
        clock: IReactorTime,
        webhooks: Webhooks,
    ) -> None:
        self._webhooks = webhooks
        self._storage = storage
        self._admin = storage.admin
        self._sessions = sessions
        self._hub = hub
        self._clock = clock

    async def user(self, user: int | str) -> UserInfo:
        """The account with this id or name; `NotFoundError` if there is none."""
        found = await self._admin.find(user)
        if found is None:
            raise NotFoundError("No such user")
        return found

    async def live_user(self, user: int | str) -> UserInfo:
        """`user`, refusing a deleted account (nothing may be done to it but look)."""
        found = await self.user(user)
        if found.deleted_at is not None:
            raise UserError("This account has been deleted", code="not_found")
        return found

    async def list_users(self, search: str | None = None, limit: int = 100, offset: int = 0) -> list[UserInfo]:
        if not 1 <= limit <= MAX_LIST:
            raise UserError(f"limit must be 1-{MAX_LIST}", code="invalid_argument")
        if offset < 0:
            raise UserError("offset must not be negative", code="invalid_argument")
        return await self._admin.list_users(search or None, limit, offset)

    async def registration_mode(self) -> tuple[str, str]:
        """``(mode, source)``: ``"database"`` when set by an administrator, else ``"config"``."""
        return await self._admin.registration_mode(self._sessions.registration_mode)
