"""Contact commands: request, accept, reject, block, unblock, remove.

Every change is committed before anyone is told, and each notice goes to
all sockets of the users concerned, so a user's other devices stay in step.
A block and an unblock are told to their author alone.  Each notice carries
the delivery key of the feed row its receiver reads (``replay.contact``),
so the catch-up after a bus gap tells it once.
"""

from __future__ import annotations

from typing import Any

from umoc.domain import notices
from umoc.domain.notices import replay
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.contacts import ContactChange, ContactRequest
from umoc.storage.relations import FRIEND, NEW

__all__ = ["accept", "block", "reject", "remove", "request", "unblock"]


async def request(services: Services, actor: Actor, record: ContactRequest) -> dict[str, Any]:
    """Ask; the other side gets ``contact_request`` and a push.  The asker's answer is ``contact_added``."""
    now = services.clock.seconds()
    target_id, target_name = await services.storage.contacts.request(actor.uid, record.username, now)
    added = {"user_id": target_id, "username": target_name, "status": NEW}
    services.hub.tell([actor.uid], notices.CONTACT_ADDED(added), key=replay.contact(target_id, "contact_added", now))
    services.hub.tell(
        [target_id],
        notices.CONTACT_REQUEST({"user_id": actor.uid, "username": actor.name}),
        key=replay.contact(actor.uid, "contact_request", now),
    )
    services.push.wake()  # the request's feed row is pushed to the target if offline
    return added


async def accept(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    """Both become friends; both are told, and the ``contact.accepted`` webhook fires."""
    now = services.clock.seconds()
    other_id, other_name = await services.storage.contacts.accept(actor.uid, record.contact_id, now)
    mine = {"user_id": other_id, "username": other_name, "status": FRIEND}
    services.hub.tell(
        [actor.uid], notices.CONTACT_ACCEPTED(mine), key=replay.contact(other_id, "contact_accepted", now)
    )
    theirs = {"user_id": actor.uid, "username": actor.name, "status": FRIEND}
    services.hub.tell(
        [other_id], notices.CONTACT_ACCEPTED(theirs), key=replay.contact(actor.uid, "contact_accepted", now)
    )
    services.webhooks.wake()  # ``contact.accepted``, read from the feed
    return mine


async def reject(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    other_id, now = record.contact_id, services.clock.seconds()
    await services.storage.contacts.reject(actor.uid, other_id, now)
    return _tell_both(services, actor.uid, other_id, notices.CONTACT_REJECTED, now)


async def block(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    """Only the blocker is told: a block is not announced to the blocked user."""
    now = services.clock.seconds()
    await services.storage.contacts.block(actor.uid, record.contact_id, now)
    blocked = {"user_id": record.contact_id}
    key = replay.contact(record.contact_id, "contact_blocked", now)
    services.hub.tell([actor.uid], notices.CONTACT_BLOCKED(blocked), key=key)
    return blocked


async def unblock(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    """Only the unblocker is told, as for the block; the two are strangers afterwards."""
    now = services.clock.seconds()
    user_id, username = await services.storage.contacts.unblock(actor.uid, record.contact_id, now)
    unblocked = {"user_id": user_id, "username": username}
    services.hub.tell(
        [actor.uid], notices.CONTACT_UNBLOCKED(unblocked), key=replay.contact(user_id, "contact_unblocked", now)
    )
    return unblocked


async def remove(services: Services, actor: Actor, record: ContactChange) -> dict[str, Any]:
    """Both sides are told, each naming the other; their chat and its history stay."""
    other_id, now = record.contact_id, services.clock.seconds()
    await services.storage.contacts.remove(actor.uid, other_id, now)
    return _tell_both(services, actor.uid, other_id, notices.CONTACT_REMOVED, now)


def _tell_both(
    services: Services, actor_id: int, other_id: int, event: notices.ServerEvent, now: float
) -> dict[str, Any]:
    """``event`` to both users' sockets, each naming the other, keyed for the catch-up; the actor's payload."""
    mine = {"user_id": other_id}
    services.hub.tell([actor_id], event(mine), key=replay.contact(other_id, event.name, now))
    services.hub.tell([other_id], event({"user_id": actor_id}), key=replay.contact(actor_id, event.name, now))
    return mine
