"""A password account's TOTP second factor: set up, turn on with a code, turn off with a code.

::

    setup   -> a new secret (pending) and its otpauth:// URI; TOTP is not on yet, a pending
               secret set up before is replaced
    enable  {code}  a code of the pending secret puts it in force (that code is spent)
    disable {code}  a code of the secret in force turns TOTP off

``auth.totp.enabled: false`` refuses setup and enable (users who have TOTP
on keep it, and may turn it off).  Accounts without a password (made from
a token or by the server API) cannot set it up: it guards password logins.
Codes here are limited as guesses at a password are: ``ratelimits.login_name``'s
settings, per user and address (a bucket apart from the logins').
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from umoc.domain.commands.sessions import check_limit
from umoc.domain.services import Services
from umoc.domain.totp import matching_step, new_secret, provisioning_uri
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.sessions import TotpCode
from umoc.storage.identities import NO_PASSWORD

__all__ = ["disable", "enable", "setup"]

log = Logger()


class TotpRefusedError(UserError):
    """TOTP is not offered here, or not for this account: 403."""

    status = 403

    def __init__(self, message: str) -> None:
        super().__init__(message, code="forbidden")


def _offered(services: Services) -> None:
    if not services.config.auth.totp.enabled:
        raise TotpRefusedError("TOTP is not offered on this server")


async def setup(services: Services, actor: Actor) -> dict[str, Any]:
    """A new pending secret for the actor, and the URI their authenticator app reads."""
    _offered(services)
    if await services.storage.users.password_hash(actor.uid) in (None, NO_PASSWORD):
        raise TotpRefusedError("TOTP protects password logins; this account has no password")
    secret = new_secret()
    await services.storage.totp.set_pending(actor.uid, secret)
    return {"secret": secret, "otpauth_uri": provisioning_uri(secret, actor.name)}


async def _checked_code(services: Services, actor: Actor, secret: str | None, code: str, client: str) -> int:
    # The login_name bucket's settings, under a key of its own: managing TOTP spends no login attempts.
    await check_limit(services, "login_name", f"totp:{actor.name.lower()}|{client}", client, actor.name)
    step = matching_step(secret, code, services.clock.seconds()) if secret else None
    if step is None:
        raise UserError("Invalid TOTP code", code="invalid_argument")
    return step


async def enable(services: Services, actor: Actor, record: TotpCode, client: str) -> dict[str, Any]:
    """TOTP on, with a code of the secret `setup` made."""
    _offered(services)
    state = await services.storage.totp.state(actor.uid)
    if state.pending is None:
        raise UserError("Set TOTP up first", code="invalid_argument")
    step = await _checked_code(services, actor, state.pending, record.code, client)
    if not await services.storage.totp.enable(actor.uid, state.pending, step):
        raise UserError("Set TOTP up first", code="conflict")  # set up again meanwhile
    log.info("TOTP turned on for {username}", event="totp_enabled", username=actor.name, user_id=actor.uid)
    return {"enabled": True}


async def disable(services: Services, actor: Actor, record: TotpCode, client: str) -> dict[str, Any]:
    """TOTP off, with a code of the secret in force."""
    state = await services.storage.totp.state(actor.uid)
    if state.secret is None:
        raise UserError("TOTP is not on", code="invalid_argument")
    step = await _checked_code(services, actor, state.secret, record.code, client)
    if not await services.storage.totp.use_step(actor.uid, step):
        raise UserError("Invalid TOTP code", code="invalid_argument")  # a code already used
    await services.storage.totp.disable(actor.uid)
    log.info("TOTP turned off for {username}", event="totp_disabled", username=actor.name, user_id=actor.uid)
    return {"enabled": False}
