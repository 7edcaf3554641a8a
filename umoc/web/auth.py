"""``POST /api/register``, ``/api/login`` and ``/api/logout``.

Password hashing runs in a thread (scrypt is deliberately slow), so the
reactor keeps serving sockets while someone logs in.  A login for an
unknown name hashes against a dummy hash, so response time does not reveal
which names exist.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from twisted.internet import threads
from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.credentials import DUMMY_HASH, hash_password, new_token, token_digest, token_matches, verify_password
from umoc.storage.users import UsernameTakenError
from umoc.web.jsonapi import HttpError, JsonResource, read_json, write_json

if TYPE_CHECKING:
    from umoc.app import Application
    from umoc.web.gate import Gatekeeper

__all__ = ["auth_resources"]

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")


def _string(data: dict[str, Any], key: str, max_length: int = 256) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise HttpError(400, f"'{key}' must be a non-empty string")
    return value


class AuthApi:
    """The three endpoints, sharing the application and the gatekeeper."""

    def __init__(self, app: Application, gate: Gatekeeper) -> None:
        self.app = app
        self.gate = gate

    def _ip(self, request: IRequest) -> str:
        headers = {k.decode("latin-1"): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
        return self.gate.client_ip(request.getClientAddress().host, headers)

    async def _limit(self, kind: str, key: str) -> None:
        allowed, retry_after = await self.app.ratelimiter.can_do_action(kind, key)
        if not allowed:
            seconds = max(1, int(retry_after + 0.999))
            raise HttpError(429, "Too many requests; try again later", {"Retry-After": str(seconds)})

    def _hash(self, password: str) -> Any:
        return threads.deferToThreadPool(self.app.clock, self.app.password_pool, hash_password, password)

    def _verify(self, password: str, stored: str) -> Any:
        return threads.deferToThreadPool(self.app.clock, self.app.password_pool, verify_password, password, stored)

    async def register(self, request: IRequest) -> None:
        await self._limit("register", f"ip:{self._ip(request)}")
        data = read_json(request, self.app.config.server.max_body)
        username = _string(data, "username", 64)
        password = _string(data, "password", 1024)
        if not USERNAME.fullmatch(username):
            raise HttpError(400, "username must be 3-32 characters of letters, digits, '_', '.' or '-'")
        if not 8 <= len(password) <= 256:
            raise HttpError(400, "password must be 8-256 characters")
        password_hash = await self._hash(password)
        try:
            user = await self.app.storage.users.create(username, password_hash, self.app.clock.seconds())
        except UsernameTakenError as exc:
            raise HttpError(409, "Username already taken") from exc
        write_json(request, 201, {"user_id": user.id, "username": user.username})

    async def login(self, request: IRequest) -> None:
        await self._limit("login", f"ip:{self._ip(request)}")
        data = read_json(request, self.app.config.server.max_body)
        username = _string(data, "username", 64)
        password = _string(data, "password", 1024)
        await self._limit("login", f"name:{username.lower()}")
        found = await self.app.storage.users.credentials(username)
        ok = await self._verify(password, found[2] if found else DUMMY_HASH)
        if found is None or not ok:
            raise HttpError(401, "Invalid username or password")
        user_id, canonical_name, _ = found
        session_id, token = str(uuid.uuid4()), new_token()
        now = self.app.clock.seconds()
        expires_at = now + self.app.config.sessions.ttl
        revoked = await self.app.storage.users.create_session(
            user_id, session_id, token_digest(token), now, expires_at, self.app.config.sessions.max_per_user
        )
        for old in revoked:
            self.app.end_session(old, "Your session was ended by a newer login")
        write_json(
            request,
            200,
            {
                "sessionID": session_id,
                "token": token,
                "user_id": user_id,
                "username": canonical_name,
                "expires_at": int(expires_at),
            },
        )

    async def logout(self, request: IRequest) -> None:
        data = read_json(request, self.app.config.server.max_body)
        session_id = _string(data, "sessionID", 64)
        token = _string(data, "token", 256)
        record = await self.app.storage.users.session(session_id)
        if record is None or not token_matches(token, record.token_hash):
            raise HttpError(401, "Invalid session")
        await self.app.storage.users.delete_session(session_id)
        self.app.end_session(session_id, "You have logged out")
        write_json(request, 200, {"ok": True})


def auth_resources(app: Application, gate: Gatekeeper) -> dict[bytes, resource.Resource]:
    api = AuthApi(app, gate)
    return {
        b"register": JsonResource({b"POST": api.register}),
        b"login": JsonResource({b"POST": api.login}),
        b"logout": JsonResource({b"POST": api.logout}),
    }
