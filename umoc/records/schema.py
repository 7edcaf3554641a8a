"""Payload schemas: the shape and types of every event, checked before any rule.

Here among the records, below both edges, so the Socket.IO events and the
HTTP edges (the bot API) check a field one way.  A schema returns a clean
dict with exactly its fields (defaults filled in), so handlers never see a
wrong type, a bool posing as an int, or an unbounded string.  Unknown keys are ignored: clients add their own fields.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from umoc.errors import UserError, check_text

__all__ = [
    "Bool",
    "CLIENT_MSG_ID",
    "Enum",
    "Field",
    "Int",
    "IntList",
    "JsonSchema",
    "Number",
    "SESSION_ID",
    "Schema",
    "Str",
    "Uuid",
    "UuidList",
]

_MISSING = object()
MAX_ID = 2**63 - 1


#: A JSON Schema fragment: what the generated contract (``python -m umoc.contract``) says a field holds.
JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class Field:
    """One payload key: its check, whether it is required, its default, and its JSON type for the contract.

    ``schema`` describes what ``check`` accepts (the fields built below fill
    it in); a hand-made ``Field`` gives it, or the contract test fails.
    """

    name: str
    check: Callable[[str, Any], Any]
    required: bool = True
    default: Any = None
    schema: JsonSchema | None = dataclasses.field(default=None, compare=False, hash=False)


def _int(minimum: int, maximum: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"Invalid '{name}': expected an integer", code="invalid_argument")
        if not minimum <= value <= maximum:
            raise UserError(
                f"Invalid '{name}': expected an integer from {minimum} to {maximum}", code="invalid_argument"
            )
        return value

    return check


def Int(name: str, required: bool = True, minimum: int = 1, maximum: int = MAX_ID, default: Any = None) -> Field:
    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return Field(name, _int(minimum, maximum), required, default, schema)


#: Numbers beyond JavaScript's safe integers are no one's timestamps or counts.
MAX_NUMBER = 2**53


def Number(name: str, required: bool = True, default: Any = None) -> Field:
    def check(field: str, value: Any) -> float:
        # The comparison also refuses NaN and infinities (JSON's 1e400), and
        # integers too large for a float (10**400), before anything does arithmetic.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -MAX_NUMBER <= value <= MAX_NUMBER:
            raise UserError(
                f"Invalid '{field}': expected a number from -{MAX_NUMBER} to {MAX_NUMBER}", code="invalid_argument"
            )
        return value

    return Field(name, check, required, default, {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER})


def Str(name: str, required: bool = True, max_length: int = 1000, min_length: int = 1, default: Any = None) -> Field:
    def check(field: str, value: Any) -> str:
        if not isinstance(value, str):
            raise UserError(f"Invalid '{field}': expected a string", code="invalid_argument")
        if not min_length <= len(value) <= max_length:
            raise UserError(
                f"Invalid '{field}': expected {min_length} to {max_length} characters", code="invalid_argument"
            )
        return check_text(field, value)

    return Field(name, check, required, default, {"type": "string", "minLength": min_length, "maxLength": max_length})


def Bool(name: str, required: bool = True, default: Any = None) -> Field:
    def check(field: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise UserError(f"Invalid '{field}': expected true or false", code="invalid_argument")
        return value

    return Field(name, check, required, default, {"type": "boolean"})


def Enum(name: str, choices: tuple[str, ...], required: bool = True, default: Any = None) -> Field:
    def check(field: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise UserError(f"Invalid '{field}': expected one of {', '.join(choices)}", code="invalid_argument")
        return value

    return Field(name, check, required, default, {"type": "string", "enum": list(choices)})


#: A UUID already in its one spelling (what `str(uuid.UUID(...))` gives): taken as is, not parsed again.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(field: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise UserError(f"Invalid '{field}': expected a UUID string", code="invalid_argument")
    if CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise UserError(f"Invalid '{field}': expected a UUID string", code="invalid_argument") from exc


#: What `_uuid` accepts.
UUID_SCHEMA: JsonSchema = {"type": "string", "format": "uuid"}


def _object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"Invalid '{name}': expected a JSON object", code="invalid_argument")
    return value


def Obj(name: str, required: bool = True) -> Field:
    """A JSON object; what it may hold is its record's to check (size, depth)."""
    return Field(name, _object, required, None, {"type": "object"})


def Uuid(name: str, required: bool = True) -> Field:
    return Field(name, _uuid, required, schema=UUID_SCHEMA)


def UuidList(name: str, max_items: int, required: bool = True) -> Field:
    def check(field: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not 1 <= len(value) <= max_items:
            raise UserError(
                f"Invalid '{field}': expected a list of 1 to {max_items} UUID strings", code="invalid_argument"
            )
        seen: dict[str, None] = {}
        for item in value:
            seen[_uuid(field, item)] = None
        return list(seen)

    return Field(
        name, check, required, schema={"type": "array", "items": UUID_SCHEMA, "minItems": 1, "maxItems": max_items}
    )


def IntList(name: str, max_items: int, required: bool = True, default: Any = None) -> Field:
    """A list of up to ``max_items`` ids (positive integers); duplicates dropped, order kept."""

    def check(field: str, value: Any) -> list[int]:
        if not isinstance(value, list) or len(value) > max_items:
            raise UserError(f"Invalid '{field}': expected a list of at most {max_items} ids", code="invalid_argument")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_ID:
                raise UserError(
                    f"Invalid '{field}': expected a list of at most {max_items} ids", code="invalid_argument"
                )
        return list(dict.fromkeys(value))

    items = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    return Field(name, check, required, default, {"type": "array", "items": items, "maxItems": max_items})


class Schema:
    """An event's payload: a JSON object with these fields."""

    def __init__(self, *fields: Field) -> None:
        self.fields = fields
        #: The fields as plain tuples: ``validate`` runs for every event, and reads no attribute.
        self._plan = tuple((f.name, f.check, f.required, f.default) for f in fields)

    def validate(self, payload: Any) -> dict[str, Any]:
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise UserError("Invalid payload: expected a JSON object", code="invalid_argument")
        clean: dict[str, Any] = {}
        get = payload.get
        for name, check, required, default in self._plan:
            value = get(name, _MISSING)
            if value is _MISSING or (value is None and not required):
                if required:
                    raise UserError(f"Missing '{name}'", code="invalid_argument")
                clean[name] = default
            else:
                clean[name] = check(name, value)
        return clean


#: The optional ``sessionID`` every event may carry (the router checks it is the socket's own).
SESSION_ID = Str("sessionID", required=False, max_length=64)
#: The sender's optional key for a message (``send_message``, ``upload_file_complete``); its
#: characters are `umoc.records.messages.client_msg_id`'s to check.
CLIENT_MSG_ID = Str("client_msg_id", required=False, max_length=64)
