"""What an administrator may do, for both ``umoc-admin`` and ``/api/admin/``.

The rules live here once: which sessions a change ends and what their
sockets are told, how invite codes are made.  (A moderator's deletion of a
message is `umoc.domain.commands.messages.delete`, as the sender's own.)
Both callers give it a `Hub`: a node's own (its sockets, and the Redis bus
to the others), or for ``umoc-admin`` one with no sockets whose bus, when
Redis is configured, reaches every running node.
With no Redis, running nodes notice ended sessions by themselves within
``sessions.check_interval`` (`SessionManager.sweep`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.cluster.hub import Hub
from umoc.credentials import new_token, token_digest
from umoc.domain.accounts import AccountNotFoundError, Accounts
from umoc.domain.sessions import SessionManager
from umoc.domain.webhooks import Webhooks
from umoc.errors import UserError
from umoc.storage import Storage
from umoc.storage.admin import UserInfo
from umoc.storage.users import REGISTRATION_MODES
from umoc.timefmt import iso, iso_or_none

__all__ = ["Administration", "NotFoundError", "user_json"]

log = Logger()

DEACTIVATED = "Your account has been deactivated"
PASSWORD_RESET = "Your password was reset by an administrator"
REVOKED = "Your session was ended by an administrator"

#: Most accounts one listing returns.
MAX_LIST = 1000
#: Most accounts one invite code may create.
MAX_INVITE_USES = 1000


class NotFoundError(UserError):
    """No such account or message."""


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
    """Accounts, sessions, moderation, registration mode and invites; ``actor`` names who did it in the log."""

    def __init__(
        self,
        storage: Storage,
        sessions: SessionManager,
        hub: Hub,
        clock: IReactorTime,
        webhooks: Webhooks | None = None,
        accounts: Accounts | None = None,
    ) -> None:
        #: Deletes accounts (None: `delete_user` is unavailable).
        self._accounts = accounts
        #: None for ``umoc-admin``, which sends no webhooks.
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
            raise UserError("This account has been deleted")
        return found

    async def delete_user(self, user: int | str, erase: bool, actor: str) -> dict[str, Any]:
        """Delete the account as its owner's ``delete_account`` does (see `Accounts`); what was removed."""
        if self._accounts is None:
            raise UserError("Account deletion is not available here")
        found = await self.live_user(user)
        try:
            deleted = await self._accounts.delete(found.id, erase, actor)
        except AccountNotFoundError:
            raise NotFoundError("No such user") from None
        return {
            "user_id": found.id,
            "username": found.username,
            "erased": erase,
            "sessions_ended": len(deleted.sessions),
            "groups_left": len(deleted.groups),
            "files_removed": len(deleted.files),
        }

    async def create_user(self, username: str, password: str, is_admin: bool, actor: str) -> UserInfo:
        """A new account whatever the registration mode; `UsernameTakenError` if the name is taken."""
        created = await self._sessions.create_account(username, password, is_admin)
        log.info(
            "Account {username} created by {actor} (admin: {is_admin})",
            username=created.username,
            actor=actor,
            is_admin=is_admin,
        )
        if self._webhooks is not None:
            self._webhooks.emit("user.registered", {"user_id": created.id, "username": created.username})
        return await self.user(created.id)

    async def create_bot(self, username: str, actor: str) -> tuple[UserInfo, str]:
        """A bot account and its API token (shown once; only a digest is kept).

        A bot has no password anyone knows: it acts only through
        ``/api/bot/`` with its token.
        """
        created = await self._sessions.create_account(username, new_token() + new_token())
        token = new_token()
        await self._storage.bots.make_bot(created.id, token_digest(token), self._clock.seconds())
        log.info("Bot {username} created by {actor}", username=created.username, actor=actor)
        return await self.user(created.id), token

    async def new_bot_token(self, user: int | str, actor: str) -> str:
        """Another token for an existing bot (or make an account a bot); older tokens stay valid until revoked."""
        found = await self.live_user(user)
        token = new_token()
        await self._storage.bots.make_bot(found.id, token_digest(token), self._clock.seconds())
        log.info("New token for bot {username} by {actor}", username=found.username, actor=actor)
        return token

    async def revoke_bot_tokens(self, user: int | str, actor: str) -> int:
        found = await self.user(user)
        count = await self._storage.bots.revoke_tokens(found.id)
        log.info(
            "Tokens of bot {username} revoked by {actor}: {count}", username=found.username, actor=actor, count=count
        )
        return count

    async def list_users(self, search: str | None = None, limit: int = 100, offset: int = 0) -> list[UserInfo]:
        if not 1 <= limit <= MAX_LIST:
            raise UserError(f"limit must be 1-{MAX_LIST}")
        if offset < 0:
            raise UserError("offset must not be negative")
        return await self._admin.list_users(search or None, limit, offset)

    async def set_admin(self, user: int | str, is_admin: bool, actor: str) -> UserInfo:
        found = await self.live_user(user)
        await self._admin.set_admin(found.id, is_admin)
        log.info(
            "Account {username} admin flag set to {is_admin} by {actor}",
            username=found.username,
            is_admin=is_admin,
            actor=actor,
        )
        return await self.user(found.id)

    async def deactivate(self, user: int | str, actor: str) -> tuple[UserInfo, int]:
        """Deactivate the account and end its sessions on every node; ``(account, sessions ended)``."""
        found = await self.user(user)
        _changed, ended = await self._admin.deactivate(found.id, self._clock.seconds())
        self._sessions.end_all(ended, DEACTIVATED)
        log.info(
            "Account {username} deactivated by {actor}; {count} sessions ended",
            username=found.username,
            actor=actor,
            count=len(ended),
        )
        return await self.user(found.id), len(ended)

    async def reactivate(self, user: int | str, actor: str) -> UserInfo:
        found = await self.live_user(user)
        await self._admin.reactivate(found.id)
        log.info("Account {username} reactivated by {actor}", username=found.username, actor=actor)
        return await self.user(found.id)

    async def reset_password(self, user: int | str, password: str, actor: str) -> int:
        """Set a new password and end every session of the account; how many ended."""
        found = await self.live_user(user)
        password_hash = await self._sessions.hash_new_password(password)
        ended = await self._admin.set_password(found.id, password_hash)
        self._sessions.end_all(ended, PASSWORD_RESET)
        log.info(
            "Password of {username} reset by {actor}; {count} sessions ended",
            username=found.username,
            actor=actor,
            count=len(ended),
        )
        return len(ended)

    async def revoke_sessions(self, user: int | str, actor: str) -> int:
        """End every session of the account on every node; how many."""
        found = await self.user(user)
        ended = await self._admin.revoke_sessions(found.id)
        self._sessions.end_all(ended, REVOKED)
        log.info(
            "Sessions of {username} revoked by {actor}: {count}", username=found.username, actor=actor, count=len(ended)
        )
        return len(ended)

    async def registration_mode(self) -> tuple[str, str]:
        """``(mode, source)``: ``"database"`` when set by an administrator, else ``"config"``."""
        return await self._admin.registration_mode(self._sessions.registration_mode)

    async def set_registration_mode(self, mode: str | None, actor: str) -> tuple[str, str]:
        """Set the mode for every node (None: back to each node's ``registration.mode``)."""
        if mode is not None and mode not in REGISTRATION_MODES:
            raise UserError("mode must be one of " + ", ".join(REGISTRATION_MODES))
        await self._admin.set_registration_mode(mode, self._clock.seconds())
        log.info("Registration mode set to {mode} by {actor}", mode=mode or "the configuration's", actor=actor)
        return await self.registration_mode()

    async def create_invite(self, uses: int, created_by: int | None, actor: str) -> str:
        """A new invite code good for ``uses`` registrations; only its digest is stored."""
        if not 1 <= uses <= MAX_INVITE_USES:
            raise UserError(f"uses must be 1-{MAX_INVITE_USES}")
        code = new_token()
        await self._admin.create_invite(token_digest(code), uses, created_by, self._clock.seconds())
        log.info("Invite for {uses} registrations created by {actor}", uses=uses, actor=actor)
        return code
