"""``/api/admin/``: the administration API, for accounts with the admin flag.

Authenticated like downloads: the session as ``X-Session-ID`` and
``X-Session-Token`` headers (or ``sessionID``/``token`` query parameters).
No valid session answers 401, a session of an account without the admin
flag 403.  JSON in, JSON out; each change is one command of
`umoc.domain.commands.account` (which ``umoc-admin`` calls too), acting as
the calling admin::

    GET  users?search=&limit=&offset=   -> 200 {"users": [user, ...]}
    POST users {username, password, is_admin?}     -> 201 {"user": user}
    DELETE users/<user_id>?erase=true|false        -> 200 {user_id, username, erased, sessions_ended,
                                                           groups_left, files_removed}
    POST deactivate {user_id | username}           -> 200 {"user": user, "sessions_ended": n}
    POST reactivate {user_id | username}           -> 200 {"user": user}
    POST reset_password {user_id | username, password} -> 200 {"sessions_ended": n}
    POST revoke_sessions {user_id | username}      -> 200 {"sessions_ended": n}
    POST delete_message {message_id}               -> 200 {message_id, sender_id, timestamp}
    GET  registration                              -> 200 {"mode", "source"}
    PUT  registration {mode: open|closed|invite|null}  -> 200 {"mode", "source"}
    POST invites {uses?}                           -> 201 {"invite", "uses"}
    GET  audit?cursor=&limit=&actor=&action=&since=&until= -> 200 {"entries": [entry, ...], "next_cursor"}
    GET  reports?status=open|resolved|all&cursor=&limit=  -> 200 {"reports": [report, ...], "next_cursor"}
    POST reports/<id>/resolve {action, note?}     -> 200 {"report": report}

Every change is recorded in the audit log (`umoc.domain.commands.audit`) with
the calling admin and the client's address (behind ``server.trusted_proxies``,
the one they forwarded).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Coroutine

from twisted.web import resource, server
from twisted.web.iweb import IRequest

from umoc.domain.admin import Administration, NotFoundError, user_json
from umoc.domain.commands import account, audit, messages, reports
from umoc.domain.services import Services
from umoc.domain.sessions import UsernameTakenError
from umoc.errors import RefusedError, UserError, check_text
from umoc.records import Actor
from umoc.records.account import (
    AccountDeletion,
    AccountRef,
    NewAccount,
    NewInvite,
    PasswordReset,
    RegistrationMode,
    UserInfo,
)
from umoc.records.audit import AuditQuery
from umoc.records.messages import Deletion
from umoc.records.reports import ReportQuery, ReportResolution
from umoc.timefmt import parse_iso
from umoc.transport.gate import Gatekeeper
from umoc.web.jsonapi import HttpError, JsonResource, read_json, string_field, write_json

__all__ = ["admin_resource"]

Handler = Callable[[server.Request], Coroutine[Any, Any, None]]


def _query(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


#: The largest number either database stores (a signed 64-bit integer); past it SQLite raises
#: OverflowError and PostgreSQL "out of range", which were 500s.
MAX_INT = 2**63 - 1


def _int_arg(request: IRequest, name: bytes, default: int) -> int:
    raw = _query(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_INT:
        raise HttpError(400, f"'{name.decode()}' must be a whole number from 0 to {MAX_INT}", code="invalid_argument")
    return value


def _search(request: IRequest) -> str | None:
    """``search``: at most 256 characters and no NUL (PostgreSQL refuses NUL: that was a 500)."""
    search = _query(request, b"search")
    if search is not None and len(search) > 256:
        raise HttpError(400, "'search' must be at most 256 characters", code="invalid_argument") from None
    return None if search is None else check_text("search", search)


def _target(data: dict[str, Any]) -> AccountRef:
    """The account a request names: ``user_id`` (an integer) or ``username``."""
    user_id = data.get("user_id")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        if not 1 <= user_id <= MAX_INT:
            raise HttpError(400, f"'user_id' must be a whole number from 1 to {MAX_INT}", code="invalid_argument")
        return AccountRef(user_id)
    if "username" in data:
        return AccountRef(string_field(data, "username", 64))
    raise HttpError(400, "'user_id' (an integer) or 'username' is required", code="invalid_argument") from None


def _time_arg(request: IRequest, name: bytes) -> float | None:
    """An ISO 8601 time (``2026-12-06T10:00:00Z``) or epoch seconds, as epoch seconds."""
    raw = _query(request, name)
    if raw is None:
        return None
    try:
        return float(raw) if raw.replace(".", "", 1).isdigit() else parse_iso(raw)
    except ValueError:
        raise HttpError(
            400, f"'{name.decode()}' must be an ISO 8601 time or epoch seconds", code="invalid_argument"
        ) from None


class AdminApi:
    """Each endpoint: check the caller is an admin, parse, call one command (or `Administration`), write JSON."""

    def __init__(self, admin: Administration, services: Services, gate: Gatekeeper | None = None) -> None:
        self._admin = admin
        self._gate = gate or Gatekeeper()
        self._services = services
        self._sessions = services.sessions
        self._max_body = services.config.server.max_body

    async def _caller(self, request: IRequest) -> UserInfo:
        """The admin making the request; 401 without a valid session, 403 for anyone else."""

        def first(arg: bytes, header: bytes) -> str | None:
            value = (request.args.get(arg) or [request.getHeader(header)])[0]
            if not isinstance(value, bytes) or not 0 < len(value) <= 256:
                return None
            return value.decode("latin-1")

        session_id = first(b"sessionID", b"x-session-id")
        token = first(b"token", b"x-session-token")
        record = await self._sessions.authenticate(session_id, token) if session_id and token else None
        if record is None:
            raise HttpError(401, "Invalid or expired session", code="not_authenticated")
        try:
            caller = await self._admin.user(record.user_id)
        except NotFoundError:
            raise HttpError(401, "Invalid or expired session", code="not_authenticated") from None
        if not caller.is_admin or not caller.active:
            raise HttpError(403, "Administrators only", code="forbidden")
        return caller

    def _guarded(self, handler: Callable[[IRequest, Actor], Awaitable[None]]) -> Handler:
        async def run(request: server.Request) -> None:
            caller = await self._caller(request)
            headers = {
                k.decode("latin-1"): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()
            }
            address = self._gate.client_ip(request.getClientAddress().host, headers)
            # The admin making the request, as the commands take them: who and from where (the audit log).
            actor = Actor.operator(caller.username, "admin_api", caller.id, address)
            try:
                await handler(request, actor)
            except NotFoundError as exc:
                raise HttpError(404, exc.message, code="not_found") from None

        return run

    def _body(self, request: IRequest) -> dict[str, Any]:
        return read_json(request, self._max_body)

    # -- endpoints ----------------------------------------------------------

    async def list_users(self, request: IRequest, caller: Actor) -> None:
        users = await self._admin.list_users(
            _search(request), _int_arg(request, b"limit", 100), _int_arg(request, b"offset", 0)
        )
        write_json(request, 200, {"users": [user_json(u) for u in users]})

    async def create_user(self, request: IRequest, caller: Actor) -> None:
        data = self._body(request)
        is_admin = data.get("is_admin", False)
        if not isinstance(is_admin, bool):
            raise HttpError(400, "'is_admin' must be true or false", code="invalid_argument") from None
        try:
            record = NewAccount(string_field(data, "username", 64), string_field(data, "password", 1024), is_admin)
            user = await account.create_user(self._services, caller, record)
        except UsernameTakenError:
            raise HttpError(409, "Username already taken", code="conflict") from None
        write_json(request, 201, {"user": user_json(user)})

    async def delete_user(self, request: IRequest, caller: Actor) -> None:
        """``DELETE users/<id>``: as the owner's ``delete_account`` (no password); ``?erase=true`` erases content."""
        target = request.postpath[0] if len(request.postpath) == 1 else b""
        if not target.isdigit() or len(target) > 18:
            raise HttpError(404, "No such user", code="not_found")
        erase = _query(request, b"erase") or "false"
        if erase not in ("true", "false"):
            raise HttpError(400, "'erase' must be true or false", code="invalid_argument") from None
        record = AccountDeletion(AccountRef(int(target)), erase == "true")
        write_json(request, 200, await account.delete_user(self._services, caller, record))

    async def deactivate(self, request: IRequest, caller: Actor) -> None:
        user, ended = await account.deactivate(self._services, caller, _target(self._body(request)))
        write_json(request, 200, {"user": user_json(user), "sessions_ended": ended})

    async def reactivate(self, request: IRequest, caller: Actor) -> None:
        user = await account.reactivate(self._services, caller, _target(self._body(request)))
        write_json(request, 200, {"user": user_json(user)})

    async def reset_password(self, request: IRequest, caller: Actor) -> None:
        data = self._body(request)
        record = PasswordReset(_target(data), string_field(data, "password", 1024))
        ended = await account.reset_password(self._services, caller, record)
        write_json(request, 200, {"sessions_ended": ended})

    async def revoke_sessions(self, request: IRequest, caller: Actor) -> None:
        ended = await account.revoke_sessions(self._services, caller, _target(self._body(request)))
        write_json(request, 200, {"sessions_ended": ended})

    async def delete_message(self, request: IRequest, caller: Actor) -> None:
        """As the sender's own ``delete_message`` (`umoc.domain.commands.messages.delete`), for anybody's message."""
        try:
            deletion = Deletion(string_field(self._body(request), "message_id", 64))
            write_json(request, 200, await messages.delete(self._services, caller, deletion))
        except RefusedError as exc:
            raise HttpError(404, exc.message, code="not_found") from None
        except UserError:
            raise HttpError(404, "Message not found", code="not_found") from None

    async def registration(self, request: IRequest, caller: Actor) -> None:
        mode, source = await self._admin.registration_mode()
        write_json(request, 200, {"mode": mode, "source": source})

    async def set_registration(self, request: IRequest, caller: Actor) -> None:
        data = self._body(request)
        if "mode" not in data or not (data["mode"] is None or isinstance(data["mode"], str)):
            raise HttpError(400, "'mode' must be open, closed, invite or null", code="invalid_argument") from None
        mode, source = await account.set_registration_mode(self._services, caller, RegistrationMode(data["mode"]))
        write_json(request, 200, {"mode": mode, "source": source})

    async def create_invite(self, request: IRequest, caller: Actor) -> None:
        body = request.content
        body.seek(0, 2)
        data = self._body(request) if body.tell() else {}
        uses = data.get("uses", 1)
        if not isinstance(uses, int) or isinstance(uses, bool):
            raise HttpError(400, "'uses' must be a whole number", code="invalid_argument") from None
        code = await account.create_invite(self._services, caller, NewInvite(uses))
        write_json(request, 201, {"invite": code, "uses": uses})

    async def list_audit(self, request: IRequest, caller: Actor) -> None:
        """``GET audit``: the audit log, newest first, filtered and paged (`AuditQuery`)."""
        try:
            query = AuditQuery(
                _query(request, b"cursor"),
                _int_arg(request, b"limit", 50),
                _query(request, b"actor"),
                _query(request, b"action"),
                _time_arg(request, b"since"),
                _time_arg(request, b"until"),
            )
        except UserError as exc:
            raise HttpError(400, exc.message, code="invalid_argument") from None
        rows, next_cursor = await audit.list_entries(self._services, caller, query)
        write_json(request, 200, {"entries": [audit.entry_json(r) for r in rows], "next_cursor": next_cursor})

    async def list_reports(self, request: IRequest, caller: Actor) -> None:
        """``GET reports``: newest first, ``status`` open (the default), resolved or all."""
        if request.postpath and request.postpath != [b""]:
            raise HttpError(404, "Not found", code="not_found")
        status = _query(request, b"status") or "open"
        try:
            query = ReportQuery(
                None if status == "all" else status, _query(request, b"cursor"), _int_arg(request, b"limit", 50)
            )
        except UserError as exc:
            raise HttpError(400, exc.message, code="invalid_argument") from None
        rows, next_cursor = await reports.list_reports(self._services, caller, query)
        write_json(request, 200, {"reports": [reports.report_json(r) for r in rows], "next_cursor": next_cursor})

    async def resolve_report(self, request: IRequest, caller: Actor) -> None:
        """``POST reports/<id>/resolve {action, note?}``."""
        path = request.postpath
        if len(path) != 2 or path[1] != b"resolve" or not path[0].isdigit() or len(path[0]) > 18:
            raise HttpError(404, "No such report", code="not_found")
        data = self._body(request)
        note = data.get("note")
        if note is not None and not isinstance(note, str):
            raise HttpError(400, "'note' must be a string", code="invalid_argument")
        try:
            record = ReportResolution(int(path[0]), string_field(data, "action", 32), note or None)
        except UserError as exc:
            raise HttpError(400, exc.message, code="invalid_argument") from None
        try:
            resolved = await reports.resolve(self._services, caller, record)
        except UserError as exc:
            status = {"conflict": 409, "not_found": 404, "forbidden": 403}.get(exc.code, 400)
            raise HttpError(status, exc.message, code=exc.code) from None
        write_json(request, 200, {"report": reports.report_json(resolved)})


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request: IRequest) -> Any:
        write_json(request, 404, {"error": "Not found", "code": "not_found"})
        return server.NOT_DONE_YET


class _AdminRoot(resource.Resource):
    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:
        return _NotFound()

    def render(self, request: IRequest) -> Any:
        return _NotFound().render(request)  # ``/api/admin`` itself, any method (HEAD was a 500)


def admin_resource(admin: Administration, services: Services, gate: Gatekeeper | None = None) -> resource.Resource:
    """The ``/api/admin/`` tree; ``gate`` finds the client's address behind trusted proxies."""
    api = AdminApi(admin, services, gate)
    g = api._guarded
    root = _AdminRoot()
    endpoints: dict[bytes, dict[bytes, Handler]] = {
        b"users": {b"GET": g(api.list_users), b"POST": g(api.create_user), b"DELETE": g(api.delete_user)},
        b"deactivate": {b"POST": g(api.deactivate)},
        b"reactivate": {b"POST": g(api.reactivate)},
        b"reset_password": {b"POST": g(api.reset_password)},
        b"revoke_sessions": {b"POST": g(api.revoke_sessions)},
        b"delete_message": {b"POST": g(api.delete_message)},
        b"registration": {
            b"GET": g(api.registration),
            b"PUT": g(api.set_registration),
            b"POST": g(api.set_registration),
        },
        b"invites": {b"POST": g(api.create_invite)},
        b"audit": {b"GET": g(api.list_audit)},
        b"reports": {b"GET": g(api.list_reports), b"POST": g(api.resolve_report)},
    }
    for name, handlers in endpoints.items():
        root.putChild(name, JsonResource(handlers))
    return root
