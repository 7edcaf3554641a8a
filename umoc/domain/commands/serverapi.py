"""The server API: the operator's backend manages users, mints tokens and revokes them.

Callers prove themselves with a server key (``Authorization: Bearer
umoc_sk.<id>.<secret>``, made by ``umoc-admin create-server-key NAME``):
only its digest is stored, found by its id and compared in constant time
(`authenticate`).  Users are named by ``external_id``, the backend's own id
for them, which is the subject of (``auth.jwt.issuer`` or ``umoc``, the
id): the same user a provider's token for that subject signs in as.

    PUT  /api/server/users/<external_id>         upsert          -> {"user_id"}
    POST /api/server/tokens {external_id, ttl}    mint            -> {"token"}   (UMOC-signed; CONNECT and
                                                                                    /api/token/session take it)
    POST /api/server/users/<external_id>/revoke   revoke_user     -> every session ends on every node (the
                                                                     hub's bus), earlier tokens are refused
"""

from __future__ import annotations

import secrets
from typing import Any

from twisted.logger import Logger

from umoc.credentials import token_digest, token_matches
from umoc.domain.commands import profiles
from umoc.domain.commands.audit import record as audit
from umoc.domain.identity import username_candidates
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.audit import AuditEntry
from umoc.records.identity import ExternalRef, ExternalUser, NewServerKey, ServerUser, TokenRequest
from umoc.records.profiles import ProfileChange
from umoc.storage.identities import ServerKeyNameTakenError
from umoc.storage.users import UsernameTakenError

__all__ = ["authenticate", "create_server_key", "delete_server_key", "mint", "revoke_user", "upsert"]

log = Logger()

KEY_PREFIX = "umoc_sk"
REVOKED = "Your session was revoked"


class ServerKeyError(UserError):
    """No server key, or not a valid one: 401."""

    status = 401

    def __init__(self) -> None:
        super().__init__("Invalid server key", code="not_authenticated")


async def authenticate(services: Services, key: str | None) -> Actor:
    """The server API's caller for a presented key; `ServerKeyError` unless it is a stored key."""
    parts = key.split(".") if key else []
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not 0 < len(parts[1]) <= 64 or not parts[2]:
        raise ServerKeyError()
    found = await services.storage.identities.server_key(parts[1])
    if found is None or not token_matches(key or "", found[1]):
        log.info("Server API refused: invalid server key", event="server_key_refused")
        raise ServerKeyError()
    return Actor.operator(f"server-key:{found[0]}", "server_api")


def _require_operator(actor: Actor) -> None:
    if not actor.is_admin:
        raise UserError("Only the operator may do this", code="forbidden")


async def create_server_key(services: Services, actor: Actor, record: NewServerKey) -> str:
    """A new server key named ``record.name``; the key is returned once, only its digest is kept."""
    _require_operator(actor)
    key_id = secrets.token_hex(8)
    key = f"{KEY_PREFIX}.{key_id}.{secrets.token_urlsafe(32)}"
    try:
        await services.storage.identities.create_server_key(
            key_id, record.name, token_digest(key), services.clock.seconds()
        )
    except ServerKeyNameTakenError:
        raise UserError(f"A server key named {record.name!r} exists already", code="conflict") from None
    await audit(services, AuditEntry(actor, "server_key.create", "server_key", record.name))
    log.info("Server key {name} created by {actor}", event="server_key_created", name=record.name, actor=actor.name)
    return key


async def delete_server_key(services: Services, actor: Actor, record: NewServerKey) -> None:
    """Delete a server key by name: requests with it are refused from now on."""
    _require_operator(actor)
    if not await services.storage.identities.delete_server_key(record.name):
        raise UserError(f"No server key named {record.name!r}", code="not_found")
    await audit(services, AuditEntry(actor, "server_key.delete", "server_key", record.name))
    log.info("Server key {name} deleted by {actor}", event="server_key_deleted", name=record.name, actor=actor.name)


async def upsert(services: Services, actor: Actor, record: ServerUser) -> dict[str, Any]:
    """Make the user of ``external_id`` if new (named ``username``, else after the id); set the display name.

    An existing user keeps their username (``username`` names new users
    only); a new ``display_name`` reaches them and their contacts as
    ``profile_updated``, as if they had changed it.  ``extra`` replaces
    what was kept.  `UserError` ``conflict`` when the username is taken.
    """
    _require_operator(actor)
    issuer = services.identities.server_issuer
    candidates = username_candidates(issuer, record.external_id, record.username)
    if record.username is not None and candidates[0] != record.username:
        raise UserError("username must be 3-32 characters of letters, digits, '_', '.' or '-'", code="invalid_argument")
    wanted = ExternalUser(
        issuer,
        record.external_id,
        candidates[:1] if record.username is not None else candidates,
        record.display_name,
        services.clock.seconds(),
        extra=record.extra,
    )
    try:
        user = await services.storage.identities.find_or_create(wanted)
    except UsernameTakenError:
        raise UserError("Username already taken", code="conflict") from None
    if user.created:
        log.info(
            "User {username} created through the server API by {actor}",
            event="register",
            username=user.username,
            user_id=user.user_id,
            actor=actor.name,
            via="server_api",
        )
    elif record.display_name is not None:
        change = ProfileChange(display_name=record.display_name)
        await profiles.update(services, Actor.user(user.user_id, user.username, "server_api"), change)
    return {"user_id": user.user_id}


async def _existing(services: Services, external_id: str) -> tuple[int, str]:
    found = await services.storage.identities.find(services.identities.server_issuer, external_id)
    if found is None:
        raise UserError("No user with this external_id", code="not_found")
    return found.user_id, found.username


async def mint(services: Services, actor: Actor, record: TokenRequest) -> dict[str, Any]:
    """A token UMOC signs for an existing user, good for ``ttl`` seconds at CONNECT and ``/api/token/session``."""
    _require_operator(actor)
    await _existing(services, record.external_id)
    token = await services.identities.mint(record.external_id, record.ttl)
    return {"token": token}


async def revoke_user(services: Services, actor: Actor, record: ExternalRef) -> dict[str, Any]:
    """End every session of the user (their sockets, on every node, are told and closed) and refuse every
    token issued before now, the provider's and UMOC's alike."""
    _require_operator(actor)
    user_id, username = await _existing(services, record.external_id)
    ended = await services.storage.identities.revoke(user_id, services.clock.seconds())
    services.sessions.end_all(ended, REVOKED)
    log.info(
        "Sessions and tokens of {username} revoked by {actor}; {count} sessions ended",
        event="session_revoked",
        reason="server_api",
        username=username,
        user_id=user_id,
        actor=actor.name,
        count=len(ended),
    )
    return {"user_id": user_id, "sessions_ended": len(ended)}
