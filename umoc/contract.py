"""The client contract, generated from what the server declares: an AsyncAPI 3.0 document and TypeScript types.

Sources, and nothing else: the route table (`umoc.events.routes.ROUTE_GROUPS`:
each client event's payload schema, response event, rate class), the
server-event registry (`umoc.domain.notices.REGISTRY`: each event's fields,
typed in `umoc.domain.notices.types`) and the error codes
(`umoc.errors.CODES`).  Sans-IO: each function returns text; ``main`` prints
it::

    python -m umoc.contract asyncapi   > docs/asyncapi.yaml
    python -m umoc.contract typescript > docs/umoc.d.ts

``tests/test_contract.py`` regenerates both and fails when the checked-in
files differ, so the documents cannot drift from the code.  Prose (what an
event means, its errors, its order guarantees) stays in ``docs/api.md``.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

import yaml

import umoc
from umoc.domain.notices import REGISTRY, ServerEvent
from umoc.errors import CODES
from umoc.events.router import Route
from umoc.events.routes import ROUTE_GROUPS
from umoc.records.schema import JsonSchema

__all__ = ["asyncapi", "main", "routes", "typescript"]

_CHANNEL = "socket"
_ERROR_CODE: JsonSchema = {"$ref": "#/components/schemas/ErrorCode"}
#: The ack of a refused event (the ``error`` event has ``message`` for ``error``).
_ACK_ERROR: JsonSchema = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {"error": {"type": "string"}, "code": _ERROR_CODE, "retry_after": {"type": "number"}},
}


class _Dumper(yaml.SafeDumper):
    """Writes a schema shared by several fields out each time, not as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def routes() -> list[Route]:
    """Every client event the server routes, in the table's order."""
    return [route for group in ROUTE_GROUPS for route in group]


def _request_schema(route: Route) -> JsonSchema:
    properties: dict[str, JsonSchema] = {}
    required = []
    for field in route.schema.fields:
        if field.schema is None:
            raise ValueError(f"{route.event}.{field.name}: a Field without a JSON schema (give it schema=...)")
        properties[field.name] = field.schema if field.default is None else {**field.schema, "default": field.default}
        if field.required:
            required.append(field.name)
    schema: JsonSchema = {"type": "object"}
    if required:
        schema["required"] = required
    schema["properties"] = properties
    return schema


def _event_schema(event: ServerEvent) -> JsonSchema:
    properties = {name: event.field_type(name) for name in (*event.fields, *event.optional)}
    if event.name == "error":
        properties["code"] = _ERROR_CODE
    schema: JsonSchema = {"type": "object"}
    if event.fields:
        schema["required"] = list(event.fields)
    schema["properties"] = properties
    return schema


def _message(name: str, summary: str, payload: JsonSchema | None, extra: dict[str, Any] | None = None) -> JsonSchema:
    message: JsonSchema = {"name": name}
    if summary:
        message["summary"] = summary
    message["payload"] = payload if payload is not None else {"type": "null"}
    message.update(extra or {})
    return message


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(parts)}


def asyncapi() -> str:
    """The AsyncAPI 3.0 document, as YAML."""
    table = routes()
    clash = {r.event for r in table} & set(REGISTRY)
    if clash:
        raise ValueError(f"events both routed and sent: {sorted(clash)}")
    messages: dict[str, JsonSchema] = {}
    operations: dict[str, JsonSchema] = {}
    for route in table:
        summary = (route.handler.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        extensions = {"x-rate-class": route.rate_class, "x-writes": route.writes}
        messages[route.event] = _message(route.event, summary, _request_schema(route), extensions)
        answer: JsonSchema = (
            {"$ref": f"#/components/messages/{route.response.name}/payload"}
            if route.response is not None
            else {"type": "object"}
        )
        operations[route.event] = {
            "action": "receive",
            "channel": _ref("channels", _CHANNEL),
            "messages": [_ref("channels", _CHANNEL, "messages", route.event)],
            "x-ack": {"oneOf": [answer, {"$ref": "#/components/schemas/AckError"}]},
        }
        if route.response is not None:
            operations[route.event]["x-response"] = route.response.name
    for name, event in REGISTRY.items():
        payload = _event_schema(event) if event.fields or event.optional else None
        messages[name] = _message(name, event.summary, payload)
        operations[name] = {
            "action": "send",
            "channel": _ref("channels", _CHANNEL),
            "messages": [_ref("channels", _CHANNEL, "messages", name)],
        }
    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "UMOC",
            "version": umoc.__version__,
            "description": "Generated by `python -m umoc.contract asyncapi` from the server's route table and"
            " event registry; do not edit. Each message is a Socket.IO event (its name, one JSON argument);"
            " `receive` operations are client events (with an ack, `x-ack`), `send` operations server events."
            " The prose reference, errors and policies are in docs/api.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "umoc": {
                "host": "localhost:8080",
                "protocol": "ws",
                "pathname": "/socket.io/",
                "description": "Socket.IO v5 over Engine.IO v4 (WebSocket or long-polling), default namespace.",
            }
        },
        "channels": {
            _CHANNEL: {
                "address": "/socket.io/",
                "messages": {name: _ref("components", "messages", name) for name in messages},
            }
        },
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {
                "ErrorCode": {"type": "string", "enum": list(CODES), "x-descriptions": dict(CODES)},
                "AckError": _ACK_ERROR,
            },
        },
    }
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


# -- TypeScript ---------------------------------------------------------------


def _pascal(name: str, suffix: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + suffix


def _ts_type(schema: JsonSchema) -> str:
    """A TypeScript type for a JSON Schema fragment (the subset the declarations use)."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema:
        return " | ".join(f'"{value}"' for value in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_ts_type(each) for each in schema["anyOf"])
    if "pattern" in schema and schema["pattern"].startswith("^custom:"):
        return "`custom:${string}`"
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    names = []
    for kind in kinds:
        if kind == "array":
            item = _ts_type(schema["items"])
            names.append(f"({item})[]" if " " in item else f"{item}[]")
        else:
            names.append(
                {
                    "string": "string",
                    "integer": "number",
                    "number": "number",
                    "boolean": "boolean",
                    "null": "null",
                    "object": "Record<string, unknown>",
                }[kind]
            )
    return " | ".join(names)


def _interface(name: str, doc: str, schema: JsonSchema) -> Iterable[str]:
    if doc:
        yield f"/** {doc} */"
    yield f"export interface {name} {{"
    required = set(schema.get("required", ()))
    for field, value in schema["properties"].items():
        yield f"  {field}{'' if field in required else '?'}: {_ts_type(value)};"
    yield "}"
    yield ""


def typescript() -> str:
    """TypeScript declarations for socket.io-client (``Socket<ServerToClientEvents, ClientToServerEvents>``)."""
    lines = [
        "// Generated by `python -m umoc.contract typescript` from the server's route table and event registry.",
        "// Do not edit; docs/api.md is the reference. Use with socket.io-client:",
        '//   import type { Socket } from "socket.io-client";',
        "//   const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io(url, {auth});",
        "",
        f'export const UMOC_VERSION = "{umoc.__version__}";',
        "",
        "/** Stable error codes: branch on these, never on messages (docs/api.md, Error codes). */",
        f"export type ErrorCode = {_ts_type({'enum': list(CODES)})};",
        "",
        *_interface("AckError", "The ack of a refused event.", _ACK_ERROR),
    ]
    server: list[str] = []
    for name, event in REGISTRY.items():
        if event.fields or event.optional:
            lines += _interface(_pascal(name, "Event"), event.summary, _event_schema(event))
            server.append(f"  {name}: (payload: {_pascal(name, 'Event')}) => void;")
        else:
            server.append(f"  {name}: () => void;")
    client: list[str] = []
    for route in routes():
        request = _pascal(route.event, "Request")
        lines += _interface(request, "", _request_schema(route))
        answer = _pascal(route.response.name, "Event") if route.response is not None else "Record<string, unknown>"
        client.append(f"  {route.event}: (payload: {request}, ack?: (answer: {answer} | AckError) => void) => void;")
    lines += ["export interface ServerToClientEvents {", *server, "}", ""]
    lines += ["export interface ClientToServerEvents {", *client, "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    makers = {"asyncapi": asyncapi, "typescript": typescript}
    if len(args) != 1 or args[0] not in makers:
        sys.stderr.write("usage: python -m umoc.contract asyncapi|typescript\n")
        return 2
    sys.stdout.write(makers[args[0]]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
