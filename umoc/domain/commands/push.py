"""Push commands: register a device or browser, end a registration, switch pushes off or on.

A registration belongs to the session that made it, and ends with it
(logout, expiry, revocation).  What is pushed when is
`umoc.domain.push.PushNotifier`'s.
"""

from __future__ import annotations

import uuid
from typing import Any

from umoc.domain.push import check_endpoint
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.outbound.webpush import valid_subscription_keys
from umoc.records import Actor
from umoc.records.push import PushRegistration, PushRemoval, PushSwitch
from umoc.storage.push import Registration

__all__ = ["register", "set_enabled", "unregister"]


async def register(services: Services, actor: Actor, record: PushRegistration) -> dict[str, Any]:
    """Store the registration for the actor's session; `UserError` for what the server's policy refuses."""
    if actor.session_id is None:
        raise UserError("Push registrations belong to a session", code="forbidden")
    config = services.config.push
    now = services.clock.seconds()
    registration_id = str(uuid.uuid4())
    if record.kind == "webpush":
        assert record.endpoint is not None and record.p256dh is not None and record.auth is not None
        check_endpoint(record.endpoint, services.push.policy, config.allow_insecure_endpoints)
        if not valid_subscription_keys(record.p256dh, record.auth):
            raise UserError(
                "Invalid 'subscription.keys': expected a P-256 key and a 16-byte secret", code="invalid_argument"
            )
        row = Registration(
            registration_id, actor.uid, "webpush", record.endpoint, record.p256dh, record.auth, None, None, now
        )
    else:
        assert record.pushkey is not None
        if record.gateway not in config.gateways:
            raise UserError(f"Unknown push gateway '{record.gateway[:64]}'", code="invalid_argument")
        row = Registration(
            registration_id, actor.uid, "gateway", record.pushkey, None, None, record.app_id, record.gateway, now
        )
    stored = await services.storage.push.register(row, actor.session_id)
    return {"registration_id": stored.id, "kind": stored.kind}


async def unregister(services: Services, actor: Actor, record: PushRemoval) -> dict[str, Any]:
    if not await services.storage.push.unregister(actor.uid, record.registration_id):
        raise UserError("Unknown push registration", code="not_found")
    return {"registration_id": record.registration_id}


async def set_enabled(services: Services, actor: Actor, record: PushSwitch) -> dict[str, Any]:
    await services.storage.push.set_enabled(actor.uid, record.enabled)
    return {"enabled": record.enabled}
