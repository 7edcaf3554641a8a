"""Small helpers for JSON-over-HTTP resources: bounded bodies, JSON errors, async render."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, Callable, Coroutine

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from umoc.errors import Code, UserError, check_text

__all__ = ["HttpError", "JsonFolder", "JsonResource", "read_json", "string_field", "write_json"]

log = Logger()


class HttpError(Exception):
    """Becomes ``{"error": message, "code": code}`` with ``status``; ``code`` is one of `umoc.errors.CODES`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, *, code: Code) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code: Code = code
        self.headers = headers or {}


def write_json(request: IRequest, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    # The standard reason phrase: twisted.web has none for some codes (429 read "Unknown Status").
    request.setResponseCode(status, _phrase(status))
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    for key, value in (headers or {}).items():
        request.setHeader(key.encode("latin-1"), value.encode("latin-1"))
    request.setHeader(b"Content-Length", str(len(data)).encode("ascii"))
    request.write(data)
    request.finish()


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown Status"


def read_json(request: IRequest, max_body: int) -> dict[str, Any]:
    """The request body as a JSON object; 413 when too large, 400 when not an object."""
    body = request.content
    body.seek(0, 2)
    size = body.tell()
    if size > max_body:
        raise HttpError(413, "Request body too large", code="too_large")
    body.seek(0)
    raw = body.read(max_body + 1)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise HttpError(400, "Request body must be JSON", code="invalid_argument") from exc
    if not isinstance(data, dict):
        raise HttpError(400, "Request body must be a JSON object", code="invalid_argument")
    return data


class JsonResource(resource.Resource):
    """A leaf whose methods are ``async def``; errors become JSON, never HTML tracebacks."""

    isLeaf = True

    def __init__(self, handlers: dict[bytes, Callable[[server.Request], Coroutine[Any, Any, None]]]) -> None:
        super().__init__()
        self._handlers = handlers

    def render(self, request: server.Request) -> Any:
        handler = self._handlers.get(request.method)
        if handler is None:
            allow = {"Allow": ", ".join(m.decode() for m in self._handlers)}
            write_json(request, 405, {"error": "Method not allowed", "code": "invalid_argument"}, allow)
            return server.NOT_DONE_YET
        d = defer.ensureDeferred(handler(request))
        d.addErrback(self._failed, request)
        return server.NOT_DONE_YET

    def _failed(self, failure: Any, request: server.Request) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        if failure.check(HttpError, UserError):
            # A rule's refusal answers 400 unless it names its own status (e.g. an upload's 413).
            err = failure.value
            body = {"error": err.message, "code": err.code}
            write_json(request, getattr(err, "status", 400), body, getattr(err, "headers", None))
        else:
            log.failure("Error in HTTP handler", failure)
            write_json(request, 500, {"error": "Internal server error", "code": "internal"})


def string_field(data: dict[str, Any], key: str, max_length: int = 256) -> str:
    """``data[key]`` if it is a non-empty string of at most ``max_length`` characters, with no NUL; else 400."""
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise HttpError(400, f"'{key}' must be a non-empty string", code="invalid_argument")
    return check_text(key, value)


class _Missing(resource.Resource):
    isLeaf = True

    def render(self, request: IRequest) -> Any:
        write_json(request, 404, {"error": "Not found", "code": "not_found"})
        return server.NOT_DONE_YET


class JsonFolder(resource.Resource):
    """A path segment holding named children; any other name answers JSON 404."""

    def __init__(self, children: dict[bytes, resource.Resource]) -> None:
        super().__init__()
        for name, child in children.items():
            self.putChild(name, child)

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:
        return _Missing()

    def render(self, request: IRequest) -> Any:
        return _Missing().render(request)
