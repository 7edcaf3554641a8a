"""Contact commands: request, accept, reject, block, unblock, remove.

Every change is committed before anyone is told, and each notice goes to
all sockets of the users concerned, so a user's other devices stay in step.
A block and an unblock are told to their author alone.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.contacts import ContactChange, ContactRequest
from umoc.storage.relations import FRIEND, NEW

__all__ = ["accept", "block", "reject", "remove", "request", "unblock"]


async def request(services: Services, actor: Actor, record: ContactRequest) -> dict[str, Any]:
    """Ask; the other side gets ``contact_request`` and a push.  The asker's answer is ``contact_added``."""
    target_id, target_name = await services.storage.contacts.request(
        actor.uid, record.username, services.clock.seconds()
    )
    added = {"user_id": target_id, "username": target_name, "status": NEW}
    services.hub.tell([actor.uid], notices.CONTACT_ADDED(added))
    services.hub.tell([target_id], notices.CONTACT_REQUEST({"user_id": actor.uid, "username": actor.name}))
    services.push.wake()  # the request's feed row is pushed to the target if offline
    return added


async def accept(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    """Both become friends; both are told, and the ``contact.accepted`` webhook fires."""
    other_id, other_name = await services.storage.contacts.accept(
        actor.uid, record.contact_id, services.clock.seconds()
    )
    mine = {"user_id": other_id, "username": other_name, "status": FRIEND}
    services.hub.tell([actor.uid], notices.CONTACT_ACCEPTED(mine))
    theirs = {"user_id": actor.uid, "username": actor.name, "status": FRIEND}
    services.hub.tell([other_id], notices.CONTACT_ACCEPTED(theirs))
    services.webhooks.wake()  # ``contact.accepted``, read from the feed
    return mine


async def reject(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    other_id = record.contact_id
    await services.storage.contacts.reject(actor.uid, other_id, services.clock.seconds())
    mine = {"user_id": other_id}
    services.hub.tell([actor.uid], notices.CONTACT_REJECTED(mine))
    services.hub.tell([other_id], notices.CONTACT_REJECTED({"user_id": actor.uid}))
    return mine


async def block(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    """Only the blocker is told: a block is not announced to the blocked user."""
    await services.storage.contacts.block(actor.uid, record.contact_id, services.clock.seconds())
    blocked = {"user_id": record.contact_id}
    services.hub.tell([actor.uid], notices.CONTACT_BLOCKED(blocked))
    return blocked


async def unblock(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    """Only the unblocker is told, as for the block; the two are strangers afterwards."""
    user_id, username = await services.storage.contacts.unblock(actor.uid, record.contact_id, services.clock.seconds())
    unblocked = {"user_id": user_id, "username": username}
    services.hub.tell([actor.uid], notices.CONTACT_UNBLOCKED(unblocked))
    return unblocked


async def remove(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    """Both sides are told, each naming the other; their chat and its history stay."""
    other_id = record.contact_id
    await services.storage.contacts.remove(actor.uid, other_id, services.clock.seconds())
    removed = {"user_id": other_id}
    services.hub.tell([actor.uid], notices.CONTACT_REMOVED(removed))
    services.hub.tell([other_id], notices.CONTACT_REMOVED({"user_id": actor.uid}))
    return removed
