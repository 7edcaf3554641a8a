"""``/api/server/``: the operator's backend, with a server key (``Authorization: Bearer umoc_sk...``).

::

    PUT  users/<external_id> {username?, display_name?, extra?}   -> 200 {user_id}
    POST users/<external_id>/revoke                              -> 200 {user_id, sessions_ended}
    POST tokens {external_id, ttl}                               -> 200 {token}

This module parses and calls `umoc.domain.commands.serverapi`, whose
docstring has the rules; a missing or unknown key answers 401 with
``WWW-Authenticate: Bearer``.  ``external_id`` in a path is one segment,
percent-decoded (``%2F`` for a ``/`` inside it).
"""

from __future__ import annotations

import json
from typing import Any, Coroutine

from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.domain.commands import serverapi
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.identity import ExternalRef, ServerUser, TokenRequest
from umoc.web.jsonapi import HttpError, JsonFolder, JsonResource, read_json, string_field, write_json

__all__ = ["server_api_resource"]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _optional_string(data: dict[str, Any], key: str, max_length: int) -> str | None:
    if data.get(key) is None:
        return None
    return string_field(data, key, max_length)


async def _statuses(work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """A command's answer; its ``not_found`` refusal as 404 and ``conflict`` as 409 (others: 400)."""
    try:
        return await work
    except UserError as exc:
        status = {"not_found": 404, "conflict": 409}.get(exc.code)
        if status is None:
            raise
        raise HttpError(status, exc.message, code=exc.code) from None


class ServerApi:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._max_body = services.config.server.max_body

    async def _caller(self, request: IRequest) -> Actor:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not 0 < len(key) <= 256:
            raise HttpError(
                401, "A server key is required (Authorization: Bearer <key>)", _CHALLENGE, code="not_authenticated"
            )
        try:
            return await serverapi.authenticate(self._services, key)
        except serverapi.ServerKeyError as exc:
            raise HttpError(401, exc.message, _CHALLENGE, code="not_authenticated") from None

    async def upsert(self, request: IRequest, external_id: str) -> None:
        actor = await self._caller(request)
        data = read_json(request, self._max_body)
        extra = data.get("extra")
        if extra is not None and not isinstance(extra, dict):
            raise HttpError(400, "'extra' must be a JSON object", code="invalid_argument")
        record = ServerUser(
            external_id,
            _optional_string(data, "username", 64),
            _optional_string(data, "display_name", 256),
            json.dumps(extra, separators=(",", ":")) if extra is not None else None,
        )
        write_json(request, 200, await _statuses(serverapi.upsert(self._services, actor, record)))

    async def revoke(self, request: IRequest, external_id: str) -> None:
        actor = await self._caller(request)
        answer = await _statuses(serverapi.revoke_user(self._services, actor, ExternalRef(external_id)))
        write_json(request, 200, answer)

    async def tokens(self, request: IRequest) -> None:
        actor = await self._caller(request)
        data = read_json(request, self._max_body)
        ttl = data.get("ttl")
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise HttpError(400, "'ttl' must be a whole number of seconds", code="invalid_argument")
        record = TokenRequest(string_field(data, "external_id", 255), ttl)
        write_json(request, 200, await _statuses(serverapi.mint(self._services, actor, record)))


class _Users(resource.Resource):
    """``users/<external_id>`` (PUT) and ``users/<external_id>/revoke`` (POST)."""

    def __init__(self, api: ServerApi) -> None:
        super().__init__()
        self._api = api

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:  # noqa: N802 - twisted.web's name
        try:
            external_id = path.decode("utf-8")
        except UnicodeDecodeError:
            external_id = ""
        api = self._api
        rest = list(request.postpath)
        if rest == [b"revoke"]:
            return JsonResource({b"POST": lambda r: api.revoke(r, external_id)})
        if rest and rest != [b""]:
            return JsonFolder({})
        return JsonResource({b"PUT": lambda r: api.upsert(r, external_id)})

    def render(self, request: IRequest) -> Any:
        return JsonFolder({}).render(request)


def server_api_resource(services: Services) -> resource.Resource:
    api = ServerApi(services)
    return JsonFolder({b"users": _Users(api), b"tokens": JsonResource({b"POST": api.tokens})})
