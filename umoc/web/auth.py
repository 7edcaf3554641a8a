"""``POST /api/register``, ``/api/login`` and ``/api/logout``.

The rules (name and password checks, hashing off the reactor, the dummy
hash that keeps an unknown name as slow as a wrong password, the session
limit) are the `SessionManager`'s; a registration is the command
`umoc.domain.commands.account.register` (which fires ``user.registered``).
This module parses, rate-limits and writes JSON.

Login limits, and why they are keyed as they are: attempts are counted per
client address (``ratelimits.login``: one address cannot try many
accounts fast) and per (username, address) (``ratelimits.login_name``: one
address cannot guess one account fast).  Guessing one account from many
addresses is bounded per account (``ratelimits.login_account``), but only
for clients the account does not know.  A plain per-account limit would let
anybody lock any owner out by failing on purpose (OWASP's "account lockout"
denial of service); a proof of work or a captcha would need every client to
change, and a delay alone bounds nothing (the guesses just wait in
parallel).  So this follows OWASP's "device cookies" instead::

    POST /api/login {"username", "password", "device_token"?}
      known client?  the address, or the device token, logged into this account within
                     sessions.trusted_client_ttl (marks in Redis when configured: every node sees them)
        yes -> no per-account bucket: the owner at home or on their own phone is never held back
        no  -> ratelimits.login_account, keyed by the account: 429 + Retry-After when empty
      success -> the address and the device token are marked known for the account;
                 the answer carries "device_token" (a new one unless a well-formed one was sent)

An attacker spread over many addresses shares one small bucket per account;
the owner keeps logging in from any client that has logged in before (a
client that keeps its ``device_token`` is known wherever it connects from).
The owner on a new device during an attack waits ``Retry-After``, like any
stranger: the price of not knowing them.  The device token is a random
secret kept only as a digest; it is no credential (the password is still
needed), it only spares its holder the per-account bucket.  Every hash
waits in a bounded queue (``sessions.password_queue``): past it, 503.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.logger import Logger
from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.credentials import new_token, token_digest
from umoc.domain.commands import account
from umoc.domain.services import Services
from umoc.domain.sessions import (
    AccountDisabledError,
    InvalidCredentialsError,
    RegistrationRefusedError,
    UsernameTakenError,
)
from umoc.records import Actor
from umoc.records.account import NewAccount
from umoc.transport.gate import Gatekeeper
from umoc.web.jsonapi import HttpError, JsonResource, read_json, string_field, write_json

__all__ = ["auth_resources"]

log = Logger()

#: What `new_token` makes: a ``device_token`` of any other form was not issued here and is ignored.
DEVICE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
#: The `umoc.ratelimit` kind under which clients known to an account are remembered.
KNOWN_CLIENTS = "login_known"


class AuthApi:
    """The three endpoints: parse the body, call the `SessionManager`, write JSON."""

    def __init__(self, services: Services, gate: Gatekeeper) -> None:
        self._services = services
        self._sessions = services.sessions
        self._max_body = services.config.server.max_body
        self.gate = gate

    def _ip(self, request: IRequest) -> str:
        headers = {k.decode("latin-1"): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
        return self.gate.client_ip(request.getClientAddress().host, headers)

    async def _limit(
        self,
        kind: str,
        key: str,
        ip: str,
        username: str | None = None,
        message: str = "Too many requests; try again later",
    ) -> None:
        allowed, retry_after = await self._services.ratelimiter.can_do_action(kind, key)
        if not allowed:
            self._services.metrics.refused(kind)
            log.warn(
                "Refused {kind} from {client}: rate limited",
                event="rate_limited",
                kind=kind,
                client=ip,
                username=username,
            )
            seconds = max(1, int(retry_after + 0.999))
            raise HttpError(429, message, {"Retry-After": str(seconds)})

    async def register(self, request: IRequest) -> None:
        ip = self._ip(request)
        await self._limit("register", f"ip:{ip}", ip)
        data = read_json(request, self._max_body)
        username = string_field(data, "username", 64)
        password = string_field(data, "password", 1024)
        invite = string_field(data, "invite", 256) if data.get("invite") is not None else None
        actor = Actor(None, f"client {ip}", "server_api")
        try:
            user = await account.register(self._services, actor, NewAccount(username, password, invite=invite))
        except UsernameTakenError as exc:
            raise HttpError(409, "Username already taken") from exc
        except RegistrationRefusedError as exc:
            log.info(
                "Registration refused from {client}: {reason}", event="register_refused", reason=exc.message, client=ip
            )
            raise HttpError(403, exc.message) from None
        log.info(
            "Registered {username} from {client}", event="register", username=user.username, user_id=user.id, client=ip
        )
        write_json(request, 201, {"user_id": user.id, "username": user.username})

    async def login(self, request: IRequest) -> None:
        ip = self._ip(request)
        await self._limit("login", f"ip:{ip}", ip)
        data = read_json(request, self._max_body)
        username = string_field(data, "username", 64)
        password = string_field(data, "password", 1024)
        account = username.lower()
        await self._limit("login_name", f"{account}|{ip}", ip, username)
        device_token = _device_token(data)
        known = _known_keys(account, ip, device_token)
        if not await self._services.ratelimiter.remembered(KNOWN_CLIENTS, known):
            await self._limit(
                "login_account",
                account,
                ip,
                username,
                "Too many login attempts on this account; try again later, or from a device that logged in before",
            )
        try:
            login = await self._sessions.login(username, password)
        except InvalidCredentialsError as exc:
            self._services.metrics.login(False)
            log.warn("Login failed for {username} from {client}", event="login_failed", username=username, client=ip)
            raise HttpError(401, exc.message) from None
        except AccountDisabledError as exc:
            self._services.metrics.login(False)
            log.warn(
                "Login refused for {username} from {client}: account deactivated",
                event="login_refused",
                reason="deactivated",
                username=username,
                client=ip,
            )
            raise HttpError(403, exc.message) from None
        self._services.metrics.login(True)
        device_token = device_token or new_token()
        ttl = self._services.config.sessions.trusted_client_ttl
        for key in _known_keys(login.username.lower(), ip, device_token):
            await self._services.ratelimiter.remember(KNOWN_CLIENTS, key, ttl)
        log.info(
            "Login succeeded for {username} from {client}",
            event="login",
            username=login.username,
            user_id=login.user_id,
            client=ip,
        )
        write_json(
            request,
            200,
            {
                "sessionID": login.session_id,
                "token": login.token,
                "user_id": login.user_id,
                "username": login.username,
                "expires_at": int(login.expires_at),
                "device_token": device_token,
            },
        )

    async def logout(self, request: IRequest) -> None:
        data = read_json(request, self._max_body)
        session_id = string_field(data, "sessionID", 64)
        token = string_field(data, "token", 256)
        record = await self._sessions.logout(session_id, token)
        if record is None:
            raise HttpError(401, "Invalid session")
        log.info(
            "Logout of {username} from {client}",
            event="logout",
            username=record.username,
            user_id=record.user_id,
            client=self._ip(request),
        )
        write_json(request, 200, {"ok": True})


def _device_token(data: dict[str, Any]) -> str | None:
    """The ``device_token`` a client sent, if it has the form of one this server issues; 400 if not a string."""
    value = data.get("device_token")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise HttpError(400, "'device_token' must be a string")
    return value if DEVICE_TOKEN.fullmatch(value) else None


def _known_keys(account: str, ip: str, device_token: str | None) -> list[str]:
    """The marks that make a client known to an account: its address, and its device token's digest."""
    keys = [f"{account}|ip:{ip}"]
    if device_token is not None:
        keys.append(f"{account}|dev:{token_digest(device_token)}")
    return keys


def auth_resources(services: Services, gate: Gatekeeper) -> dict[bytes, resource.Resource]:
    api = AuthApi(services, gate)
    return {
        b"register": JsonResource({b"POST": api.register}),
        b"login": JsonResource({b"POST": api.login}),
        b"logout": JsonResource({b"POST": api.logout}),
    }
