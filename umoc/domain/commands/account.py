"""Account commands: registration, an administrator's account changes, account deletion.

The user's own ``delete_account`` (socket), ``POST /api/register``, the
admin API (``/api/admin/``) and ``umoc-admin`` all call these, so each
change sends the same events, ends the same sessions and fires the same
webhooks (``user.registered``) whichever edge asked.  An administrator's
command refuses an actor without ``is_admin``; ``actor.name`` is what the
log says did it.  Ended sessions are told through the hub, which reaches
every node when Redis is configured (`SessionManager.end_all`).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from umoc.credentials import new_token, token_digest
from umoc.domain.accounts import AccountNotFoundError
from umoc.domain.admin import NotFoundError
from umoc.domain.commands.audit import record as audit
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.account import (
    AccountDeletion,
    AccountRef,
    AdminFlag,
    NewAccount,
    NewInvite,
    OwnDeletion,
    PasswordReset,
    RegistrationMode,
)
from umoc.records.audit import AuditEntry
from umoc.storage.admin import UserInfo
from umoc.storage.users import User

__all__ = [
    "create_invite",
    "create_user",
    "deactivate",
    "delete_own",
    "delete_user",
    "find",
    "reactivate",
    "register",
    "reset_password",
    "revoke_sessions",
    "set_admin",
    "set_registration_mode",
]

log = Logger()

DEACTIVATED = "Your account has been deactivated"
PASSWORD_RESET = "Your password was reset by an administrator"
REVOKED = "Your session was ended by an administrator"


def require_admin(actor: Actor) -> None:
    """Refuse anyone but an administrator (an admin user, ``umoc-admin``)."""
    if not actor.is_admin:
        raise UserError("Administrators only", code="forbidden")


async def find(services: Services, ref: AccountRef, live: bool = False) -> UserInfo:
    """The account ``ref`` names; `NotFoundError` if none, and with ``live`` a refusal for a deleted one."""
    found = await services.storage.admin.find(ref.user)
    if found is None:
        raise NotFoundError("No such user")
    if live and found.deleted_at is not None:
        raise UserError("This account has been deleted", code="not_found")
    return found


async def _info(services: Services, user_id: int) -> UserInfo:
    return await find(services, AccountRef(user_id))


def _registered(services: Services, user: User | UserInfo) -> None:
    """The account's feed row was written with it: the ``user.registered`` webhook is read from there."""
    services.webhooks.wake()


# -- registration ------------------------------------------------------------------


class PasswordsDisabledError(UserError):
    """``auth.password.enabled: false``: users come from the identity provider only (403)."""

    status = 403

    def __init__(self) -> None:
        super().__init__("Password accounts are disabled on this server", code="forbidden")


async def register(services: Services, actor: Actor, record: NewAccount) -> User:
    """An owner registers, if the registration mode lets them in (`RegistrationRefusedError` if not)."""
    if record.is_admin:
        raise UserError("Only an administrator may create an administrator", code="forbidden")
    if not services.config.auth.password.enabled:
        raise PasswordsDisabledError()
    user = await services.sessions.register(record.username, record.password, record.invite)
    _registered(services, user)
    return user


async def create_user(services: Services, actor: Actor, record: NewAccount) -> UserInfo:
    """An administrator creates an account whatever the registration mode; `UsernameTakenError` if taken."""
    require_admin(actor)
    created = await services.sessions.create_account(record.username, record.password, record.is_admin)
    await audit(
        services,
        AuditEntry(
            actor,
            "user.create",
            "user",
            str(created.id),
            details={"username": created.username, "is_admin": record.is_admin},
        ),
    )
    log.info(
        "Account {username} created by {actor} (admin: {is_admin})",
        username=created.username,
        actor=actor.name,
        is_admin=record.is_admin,
    )
    _registered(services, created)
    return await _info(services, created.id)


# -- an administrator's changes ------------------------------------------------------


async def set_admin(services: Services, actor: Actor, record: AdminFlag) -> UserInfo:
    require_admin(actor)
    found = await find(services, record.account, live=True)
    entry = AuditEntry(actor, "user.set_admin", "user", str(found.id), details={"is_admin": record.is_admin})
    await services.storage.admin.set_admin(found.id, record.is_admin, entry, services.clock.seconds())
    log.info(
        "Account {username} admin flag set to {is_admin} by {actor}",
        username=found.username,
        is_admin=record.is_admin,
        actor=actor.name,
    )
    return await _info(services, found.id)


async def deactivate(services: Services, actor: Actor, record: AccountRef) -> tuple[UserInfo, int]:
    """Deactivate the account and end its sessions on every node; ``(account, sessions ended)``."""
    require_admin(actor)
    found = await find(services, record)
    if found.id == actor.user_id:
        raise UserError("You cannot deactivate your own account", code="invalid_argument")
    entry = AuditEntry(actor, "user.deactivate", "user", str(found.id))
    _changed, ended = await services.storage.admin.deactivate(found.id, services.clock.seconds(), entry)
    services.sessions.end_all(ended, DEACTIVATED)
    log.info(
        "Account {username} deactivated by {actor}; {count} sessions ended",
        username=found.username,
        actor=actor.name,
        count=len(ended),
    )
    return await _info(services, found.id), len(ended)


async def reactivate(services: Services, actor: Actor, record: AccountRef) -> UserInfo:
    require_admin(actor)
    found = await find(services, record, live=True)
    entry = AuditEntry(actor, "user.reactivate", "user", str(found.id))
    await services.storage.admin.reactivate(found.id, entry, services.clock.seconds())
    log.info("Account {username} reactivated by {actor}", username=found.username, actor=actor.name)
    return await _info(services, found.id)


async def reset_password(services: Services, actor: Actor, record: PasswordReset) -> int:
    """Set a new password and end every session of the account; how many ended."""
    require_admin(actor)
    found = await find(services, record.account, live=True)
    password_hash = await services.sessions.hash_new_password(record.password)
    entry = AuditEntry(actor, "user.reset_password", "user", str(found.id))
    ended = await services.storage.admin.set_password(found.id, password_hash, entry, services.clock.seconds())
    services.sessions.end_all(ended, PASSWORD_RESET)
    log.info(
        "Password of {username} reset by {actor}; {count} sessions ended",
        username=found.username,
        actor=actor.name,
        count=len(ended),
    )
    return len(ended)


async def revoke_sessions(services: Services, actor: Actor, record: AccountRef) -> int:
    """End every session of the account on every node; how many."""
    require_admin(actor)
    found = await find(services, record)
    entry = AuditEntry(actor, "user.revoke_sessions", "user", str(found.id))
    ended = await services.storage.admin.revoke_sessions(found.id, entry, services.clock.seconds())
    services.sessions.end_all(ended, REVOKED)
    log.info(
        "Sessions of {username} revoked by {actor}: {count}",
        username=found.username,
        actor=actor.name,
        count=len(ended),
    )
    return len(ended)


async def set_registration_mode(services: Services, actor: Actor, record: RegistrationMode) -> tuple[str, str]:
    """Set the mode for every node (None: back to each node's ``registration.mode``); ``(mode, source)``."""
    require_admin(actor)
    admin = services.storage.admin
    entry = AuditEntry(actor, "registration_mode.set", details={"mode": record.mode})
    await admin.set_registration_mode(record.mode, services.clock.seconds(), entry)
    log.info("Registration mode set to {mode} by {actor}", mode=record.mode or "the configuration's", actor=actor.name)
    return await admin.registration_mode(services.sessions.registration_mode)


async def create_invite(services: Services, actor: Actor, record: NewInvite) -> str:
    """A new invite code good for ``uses`` registrations; only its digest is stored."""
    require_admin(actor)
    code = new_token()
    entry = AuditEntry(actor, "invite.create", details={"uses": record.uses})
    await services.storage.admin.create_invite(
        token_digest(code), record.uses, actor.user_id, services.clock.seconds(), entry
    )
    log.info("Invite for {uses} registrations created by {actor}", uses=record.uses, actor=actor.name)
    return code


# -- deletion ---------------------------------------------------------------------------


async def delete_own(services: Services, actor: Actor, record: OwnDeletion) -> dict[str, Any]:
    """The user deletes their own account (password checked as at login, attempts limited by the edge).

    Everyone concerned is told at once (`Accounts.delete`); the sessions end
    one reactor turn later, after the asking edge has answered.
    """
    accounts = services.accounts
    deleted = await accounts.delete_own(actor.uid, record.password, record.erase)
    accounts.finish_later(deleted)
    return {}


async def delete_user(services: Services, actor: Actor, record: AccountDeletion) -> dict[str, Any]:
    """An administrator deletes an account as its owner's ``delete_account`` does; what was removed."""
    require_admin(actor)
    found = await find(services, record.account, live=True)
    if found.id == actor.user_id:
        raise UserError("Delete your own account with delete_account", code="invalid_argument")
    try:
        deleted = await services.accounts.delete(found.id, record.erase, actor.name)
    except AccountNotFoundError:
        raise NotFoundError("No such user") from None
    details = {"username": found.username, "erase": record.erase}
    await audit(services, AuditEntry(actor, "user.delete", "user", str(found.id), details=details))
    return {
        "user_id": found.id,
        "username": found.username,
        "erased": record.erase,
        "sessions_ended": len(deleted.sessions),
        "groups_left": len(deleted.groups),
        "files_removed": len(deleted.files),
    }
