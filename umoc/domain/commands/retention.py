"""Legal holds (issue 31): an administrator exempts a user's messages and files from the purge.

Set and lifted with ``umoc-admin legal-hold USER on|off``; each change is
one transaction with its audit entry (``user.legal_hold``), recorded even
when the hold was already as asked, so the log shows every request.
Lifting a hold lets the purge look again at what it kept
(`umoc.storage.retention`).
"""

from __future__ import annotations

from twisted.logger import Logger

from umoc.domain.commands.account import find, require_admin
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.account import LegalHold
from umoc.records.audit import AuditEntry
from umoc.storage.retention import Hold

__all__ = ["legal_holds", "set_legal_hold"]

log = Logger()


async def set_legal_hold(services: Services, actor: Actor, record: LegalHold) -> tuple[str, bool]:
    """Set or lift the hold; ``(username, whether it changed)``."""
    require_admin(actor)
    found = await find(services, record.account)
    details = {"on": record.on, "reason": record.reason} if record.reason else {"on": record.on}
    entry = AuditEntry(actor, "user.legal_hold", "user", str(found.id), details=details)
    changed = await services.storage.retention.set_hold(
        found.id, record.on, record.reason, services.clock.seconds(), entry
    )
    log.info(
        "Legal hold of {username} {state} by {actor}{unchanged}",
        username=found.username,
        state="set" if record.on else "lifted",
        actor=actor.name,
        unchanged="" if changed else " (it was already)",
    )
    return found.username, changed


async def legal_holds(services: Services, actor: Actor) -> list[Hold]:
    """Every hold in force, by user id."""
    require_admin(actor)
    return await services.storage.retention.holds()
