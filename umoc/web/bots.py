"""``/api/bot/``: bot accounts act with their API token, ``Authorization: Bearer <token>``.

::

    POST messages {recipient_id, content, is_group?, type?, client_msg_id?,
                   reply_to?, mentions?, extra?, thread_id?, also_in_chat?}
                                                              -> 201 new_message payload (200 with
                                                                 "duplicate": true for a retry)
    POST accept_contact {contact_id}                          -> 200 {user_id, username, status}

A bot is a user: it sends to friends and to groups it is a member of, as a
user's ``send_message`` does, under the same ``ratelimits.messages`` bucket;
it becomes a friend by accepting a contact request.  Each field is checked
with the socket's messages (``Invalid 'mentions': ...``), then by the
record's own checks (`NewMessage.checked`), as a socket's send is.  No token, or one not
of an active bot, answers 401.  While the node is overloaded
(``server.overload_wait``) both answer 503 with ``Retry-After`` at once,
before the token is looked up: nothing was done.
"""

from __future__ import annotations

from typing import Any

from twisted.web import resource
from twisted.web.iweb import IRequest

from umoc.credentials import token_digest
from umoc.domain.commands import contacts, messages
from umoc.domain.services import Services
from umoc.records import Actor
from umoc.records.contacts import ContactChange
from umoc.records.messages import MAX_MENTIONS, NewMessage
from umoc.records.schema import Bool, IntList, Obj, Schema, Uuid
from umoc.web.jsonapi import HttpError, JsonFolder, JsonResource, read_json, write_json

__all__ = ["bot_resource"]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise HttpError(400, f"'{key}' must be a positive integer", code="invalid_argument")
    return value


#: What a bot's message may carry besides its text, checked as ``send_message``'s schema checks it.
_THREADING = Schema(
    Uuid("reply_to", required=False),
    IntList("mentions", MAX_MENTIONS, required=False),
    Obj("extra", required=False),  # its size and depth: the record's check
    Uuid("thread_id", required=False),
    Bool("also_in_chat", required=False, default=False),
)


class BotApi:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def _bot(self, request: IRequest) -> tuple[int, str]:
        self._services.admission.check("bot")  # before any database work, the token's lookup included
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not 0 < len(token) <= 256:
            raise HttpError(
                401, "A bot token is required (Authorization: Bearer <token>)", _CHALLENGE, code="not_authenticated"
            )
        bot = await self._services.storage.bots.by_token(token_digest(token))
        if bot is None:
            raise HttpError(401, "Invalid bot token", _CHALLENGE, code="not_authenticated")
        allowed, retry_after = await self._services.ratelimiter.can_do_action("messages", f"user:{bot[0]}")
        if not allowed:
            seconds = str(max(1, int(retry_after + 0.999)))
            raise HttpError(429, "Too many requests; try again later", {"Retry-After": seconds}, code="rate_limited")
        return bot

    async def messages(self, request: IRequest) -> None:
        bot_id, bot_name = await self._bot(request)
        data = read_json(request, self._services.config.server.max_body)
        is_group = data.get("is_group", False)
        if not isinstance(is_group, bool):
            raise HttpError(400, "'is_group' must be true or false", code="invalid_argument")
        msg_type, content = data.get("type", "text"), data.get("content")
        if not isinstance(msg_type, str):
            raise HttpError(400, "'type' must be a string", code="invalid_argument")
        if not isinstance(content, str):
            raise HttpError(400, "'content' must be a string", code="invalid_argument")
        key = data.get("client_msg_id")
        if key is not None and not isinstance(key, str):
            raise HttpError(400, "'client_msg_id' must be a string", code="invalid_argument")
        recipient_id = _int(data, "recipient_id")
        more = _THREADING.validate(data)
        new = NewMessage(
            recipient_id,
            is_group,
            content,
            msg_type,
            reply_to=more["reply_to"],
            mentions=tuple(more["mentions"] or ()),
            client_msg_id=key,
            extra=more["extra"],
            thread_id=more["thread_id"],
            also_in_chat=more["also_in_chat"],
        )
        payload = await messages.send(self._services, Actor.user(bot_id, bot_name, "bot"), new)
        write_json(request, 200 if payload.get("duplicate") else 201, payload)

    async def accept_contact(self, request: IRequest) -> None:
        bot_id, bot_name = await self._bot(request)
        data = read_json(request, self._services.config.server.max_body)
        actor = Actor.user(bot_id, bot_name, "bot")
        mine = await contacts.accept(self._services, actor, ContactChange(_int(data, "contact_id")))
        write_json(request, 200, mine)


def bot_resource(services: Services) -> resource.Resource:
    api = BotApi(services)
    return JsonFolder(
        {
            b"messages": JsonResource({b"POST": api.messages}),
            b"accept_contact": JsonResource({b"POST": api.accept_contact}),
        }
    )
