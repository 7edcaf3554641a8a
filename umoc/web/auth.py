"""``POST /api/register``, ``/api/login`` and ``/api/logout``.

The rules (name and password checks, hashing off the reactor, the dummy
hash that keeps an unknown name as slow as a wrong password, the session
limit) are the `SessionManager`'s; this module parses, rate-limits and
writes JSON.

Login limits, and why they are keyed as they are: attempts are counted per
client address (``ratelimits.login``: one address cannot try many
accounts fast) and per (username, address) (``ratelimits.login_name``: one
address cannot guess one account fast).  There is deliberately no limit per
username alone: with one, anybody could lock any owner out by failing on
purpose (OWASP's "account lockout" denial of service; Synapse keys its
failed-login limit by address and account too).  Guessing spread over many
addresses is bounded by the per-address buckets and by the hashing pool,
which caps how many Argon2id verifications run at once.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.domain.services import Services
from umoc.domain.sessions import (
    AccountDisabledError,
    InvalidCredentialsError,
    RegistrationRefusedError,
    UsernameTakenError,
)
from umoc.transport.gate import Gatekeeper
from umoc.web.jsonapi import HttpError, JsonResource, read_json, string_field, write_json

__all__ = ["auth_resources"]

log = Logger()


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

    async def _limit(self, kind: str, key: str, ip: str, username: str | None = None) -> None:
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
            raise HttpError(429, "Too many requests; try again later", {"Retry-After": str(seconds)})

    async def register(self, request: IRequest) -> None:
        ip = self._ip(request)
        await self._limit("register", f"ip:{ip}", ip)
        data = read_json(request, self._max_body)
        username = string_field(data, "username", 64)
        password = string_field(data, "password", 1024)
        invite = string_field(data, "invite", 256) if data.get("invite") is not None else None
        try:
            user = await self._sessions.register(username, password, invite)
        except UsernameTakenError as exc:
            raise HttpError(409, "Username already taken") from exc
        except RegistrationRefusedError as exc:
            log.info(
                "Registration refused from {client}: {reason}", event="register_refused", reason=exc.message, client=ip
            )
            raise HttpError(403, exc.message) from None
        self._services.webhooks.emit("user.registered", {"user_id": user.id, "username": user.username})
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
        await self._limit("login_name", f"{username.lower()}|{ip}", ip, username)
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


def auth_resources(services: Services, gate: Gatekeeper) -> dict[bytes, resource.Resource]:
    api = AuthApi(services, gate)
    return {
        b"register": JsonResource({b"POST": api.register}),
        b"login": JsonResource({b"POST": api.login}),
        b"logout": JsonResource({b"POST": api.logout}),
    }
