"""``POST /api/register``, ``/api/login``, ``/api/logout`` and ``/api/token/session``: parse, call, write JSON.

Registration is `umoc.domain.commands.account.register` (which fires
``user.registered``); logging in and out, with the login limits and why
they are keyed as they are, is `umoc.domain.commands.sessions`.  This
module reads the client's address through the gate, turns the commands'
refusals into statuses (401 for a wrong name, password or session, 403 for
a deactivated account or a refused registration, 409 for a taken name, 429
and 503 with ``Retry-After``) and writes JSON.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.domain.commands import account, sessions, totp
from umoc.domain.services import Services
from umoc.domain.sessions import (
    AccountDisabledError,
    InvalidCredentialsError,
    InvalidSessionError,
    RegistrationRefusedError,
    UsernameTakenError,
)
from umoc.domain.tokens import MAX_TOKEN_LENGTH, TokenError
from umoc.records import Actor
from umoc.records.account import NewAccount
from umoc.records.sessions import LoginAttempt, SessionCredentials, TokenCredentials, TotpCode
from umoc.transport.gate import Gatekeeper
from umoc.web.jsonapi import HttpError, JsonFolder, JsonResource, read_json, string_field, write_json
from umoc.web.oidc import oidc_resource
from umoc.web.sessionauth import request_session

__all__ = ["auth_resources"]

log = Logger()


class AuthApi:
    """The three endpoints: parse the body, call the command, write JSON."""

    def __init__(self, services: Services, gate: Gatekeeper) -> None:
        self._services = services
        self._sessions = services.sessions
        self._max_body = services.config.server.max_body
        self.gate = gate

    def _ip(self, request: IRequest) -> str:
        headers = {k.decode("latin-1"): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
        return self.gate.client_ip(request.getClientAddress().host, headers)

    async def register(self, request: IRequest) -> None:
        ip = self._ip(request)
        await sessions.check_address_limit(self._services, "register", ip)
        data = read_json(request, self._max_body)
        username = string_field(data, "username", 64)
        password = string_field(data, "password", 1024)
        invite = string_field(data, "invite", 256) if data.get("invite") is not None else None
        actor = Actor(None, f"client {ip}", "server_api")
        try:
            user = await account.register(self._services, actor, NewAccount(username, password, invite=invite))
        except UsernameTakenError as exc:
            raise HttpError(409, "Username already taken", code="conflict") from exc
        except RegistrationRefusedError as exc:
            log.info(
                "Registration refused from {client}: {reason}", event="register_refused", reason=exc.message, client=ip
            )
            raise HttpError(403, exc.message, code=exc.code) from None
        log.info(
            "Registered {username} from {client}", event="register", username=user.username, user_id=user.id, client=ip
        )
        write_json(request, 201, {"user_id": user.id, "username": user.username})

    async def login(self, request: IRequest) -> None:
        ip = self._ip(request)
        data = read_json(request, self._max_body)
        totp = data.get("totp")
        if totp is not None and (not isinstance(totp, str) or len(totp) > 16):
            raise HttpError(400, "'totp' must be a string", code="invalid_argument")
        attempt = LoginAttempt(
            string_field(data, "username", 64), string_field(data, "password", 1024), _device_token(data), totp
        )
        try:
            answer = await sessions.login(self._services, sessions.client_actor(ip), attempt)
        except sessions.TotpError as exc:
            body = {"error": exc.message, "code": exc.code, "totp_required": True}
            write_json(request, 401, body)
            return
        except InvalidCredentialsError as exc:
            raise HttpError(401, exc.message, code="not_authenticated") from None
        except AccountDisabledError as exc:
            raise HttpError(403, exc.message, code="account_disabled") from None
        write_json(request, 200, answer)

    async def token_session(self, request: IRequest) -> None:
        data = read_json(request, self._max_body)
        credentials = TokenCredentials(string_field(data, "token", MAX_TOKEN_LENGTH))
        try:
            answer = await sessions.token_session(self._services, sessions.client_actor(self._ip(request)), credentials)
        except TokenError as exc:
            raise HttpError(401, exc.message, code="not_authenticated") from None
        except AccountDisabledError as exc:
            raise HttpError(403, exc.message, code="account_disabled") from None
        write_json(request, 200, answer)

    async def _session_actor(self, request: IRequest) -> Actor:
        record = await request_session(self._sessions, request)
        if record is None:
            raise HttpError(401, "Invalid or expired session", code="not_authenticated")
        return Actor.user(record.user_id, record.username, "server_api", record.id)

    async def totp_setup(self, request: IRequest) -> None:
        actor = await self._session_actor(request)
        write_json(request, 200, await totp.setup(self._services, actor))

    async def totp_enable(self, request: IRequest) -> None:
        actor = await self._session_actor(request)
        code = TotpCode(string_field(read_json(request, self._max_body), "code", 16))
        write_json(request, 200, await totp.enable(self._services, actor, code, self._ip(request)))

    async def totp_disable(self, request: IRequest) -> None:
        actor = await self._session_actor(request)
        code = TotpCode(string_field(read_json(request, self._max_body), "code", 16))
        write_json(request, 200, await totp.disable(self._services, actor, code, self._ip(request)))

    async def logout(self, request: IRequest) -> None:
        data = read_json(request, self._max_body)
        credentials = SessionCredentials(string_field(data, "sessionID", 64), string_field(data, "token", 256))
        try:
            await sessions.logout(self._services, sessions.client_actor(self._ip(request)), credentials)
        except InvalidSessionError as exc:
            raise HttpError(401, exc.message, code="not_authenticated") from None
        write_json(request, 200, {"ok": True})


def _device_token(data: dict[str, Any]) -> str | None:
    """The ``device_token`` a client sent; 400 if it is there but not a string of at most 256 characters."""
    value = data.get("device_token")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise HttpError(400, "'device_token' must be a string", code="invalid_argument")
    return value


def auth_resources(services: Services, gate: Gatekeeper) -> dict[bytes, resource.Resource]:
    api = AuthApi(services, gate)
    return {
        b"oidc": oidc_resource(services, gate),
        b"register": JsonResource({b"POST": api.register}),
        b"login": JsonResource({b"POST": api.login}),
        b"logout": JsonResource({b"POST": api.logout}),
        b"token": JsonFolder({b"session": JsonResource({b"POST": api.token_session})}),
        b"account": JsonFolder(
            {
                b"totp": JsonFolder(
                    {
                        b"setup": JsonResource({b"POST": api.totp_setup}),
                        b"enable": JsonResource({b"POST": api.totp_enable}),
                        b"disable": JsonResource({b"POST": api.totp_disable}),
                    }
                )
            }
        ),
    }
