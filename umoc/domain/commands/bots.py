"""Bot commands: make a bot account, give it a token, revoke its tokens (administrators only).

A bot has no password anyone knows: it acts only through ``/api/bot/``
with its token, of which only a digest is kept.
"""

from __future__ import annotations

from twisted.logger import Logger

from umoc.credentials import new_token, token_digest
from umoc.domain.commands.account import find, require_admin
from umoc.domain.commands.audit import record as audit
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.account import AccountRef
from umoc.records.audit import AuditEntry
from umoc.records.bots import NewBot
from umoc.storage.admin import UserInfo

__all__ = ["create", "new_token_for", "revoke_tokens"]

log = Logger()


async def create(services: Services, actor: Actor, record: NewBot) -> tuple[UserInfo, str]:
    """A bot account and its API token (shown once)."""
    require_admin(actor)
    created = await services.sessions.create_account(record.username, new_token() + new_token())
    token = new_token()
    await services.storage.bots.make_bot(created.id, token_digest(token), services.clock.seconds())
    await audit(
        services, AuditEntry(actor, "bot.create", "user", str(created.id), details={"username": created.username})
    )
    log.info("Bot {username} created by {actor}", username=created.username, actor=actor.name)
    return await find(services, AccountRef(created.id)), token


async def new_token_for(services: Services, actor: Actor, record: AccountRef, force: bool = False) -> str:
    """Another token for an existing bot; older tokens stay valid until revoked.

    Any other account becomes a bot only with ``force`` (issue 22, G15): a
    token lets whoever holds it act as the account without its password,
    which nobody should get by naming the wrong account, an admin's least.
    """
    require_admin(actor)
    found = await find(services, record, live=True)
    if not force and found.is_admin:
        raise UserError(
            f"{found.username} is an administrator: a bot token would let anyone holding it send messages"
            f" and accept contacts as {found.username}; refused without --force",
            code="forbidden",
        )
    if not force and not await services.storage.bots.is_bot(found.id):
        raise UserError(
            f"{found.username} is not a bot: a token turns the account into one, and anyone holding it sends"
            f" messages and accepts contacts as {found.username} without its password (its password and"
            " sessions keep working); refused without --force",
            code="forbidden",
        )
    token = new_token()
    await services.storage.bots.make_bot(found.id, token_digest(token), services.clock.seconds())
    await audit(services, AuditEntry(actor, "bot.new_token", "user", str(found.id), details={"force": force}))
    log.info("New token for bot {username} by {actor}", username=found.username, actor=actor.name)
    return token


async def revoke_tokens(services: Services, actor: Actor, record: AccountRef) -> int:
    require_admin(actor)
    found = await find(services, record)
    count = await services.storage.bots.revoke_tokens(found.id)
    await audit(services, AuditEntry(actor, "bot.revoke_tokens", "user", str(found.id), details={"revoked": count}))
    log.info(
        "Tokens of bot {username} revoked by {actor}: {count}", username=found.username, actor=actor.name, count=count
    )
    return count
