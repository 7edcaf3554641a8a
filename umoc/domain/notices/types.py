"""The JSON type of every field the server sends, for the generated contract (``python -m umoc.contract``).

One table by field name: across the events a name means one thing (a
``chat_id`` is always an integer, an ``edited_at`` always a time or null),
so each is typed once here.  The few names whose type differs by event
(``timestamp``: an ISO time in ``new_message``, epoch milliseconds in
``pong``) are typed again where their event is declared (``declare(...,
types=...)``).  Fragments are JSON Schema, as AsyncAPI 3 takes them.
Nested records (a message of ``chat_history``, a member of ``chat_info``)
are plain objects here; their fields are described in ``docs/api.md``.
"""

from __future__ import annotations

from typing import Any

from umoc.errors import CODES
from umoc.records.groups import ROLES
from umoc.records.messages import MESSAGE_TYPE_SCHEMA

__all__ = ["FIELD_TYPES", "INTEGER", "NUMBER", "STRING", "TIME", "JsonSchema", "nullable"]

JsonSchema = dict[str, Any]

STRING: JsonSchema = {"type": "string"}
INTEGER: JsonSchema = {"type": "integer"}
NUMBER: JsonSchema = {"type": "number"}
BOOLEAN: JsonSchema = {"type": "boolean"}
#: ISO 8601 UTC with second precision, ``"2023-01-01T12:00:00Z"``.
TIME: JsonSchema = {"type": "string", "format": "date-time"}
OBJECT: JsonSchema = {"type": "object"}
OBJECTS: JsonSchema = {"type": "array", "items": OBJECT}


def nullable(schema: JsonSchema) -> JsonSchema:
    """``schema`` or null."""
    return {**schema, "type": [schema["type"], "null"]}


def _list(items: JsonSchema) -> JsonSchema:
    return {"type": "array", "items": items}


FIELD_TYPES: dict[str, JsonSchema] = {
    "action": {"type": "string", "enum": ["added", "removed"]},
    "avatar_file_id": nullable(STRING),
    "also_in_chat": BOOLEAN,
    "avatar_url": nullable(STRING),
    "bans": OBJECTS,
    "by": nullable(INTEGER),
    "changes": OBJECTS,
    "chat_id": INTEGER,
    "closed": BOOLEAN,
    "code": {"type": "string", "enum": list(CODES)},
    "contacts": OBJECTS,
    "content": STRING,
    "continue_streak": BOOLEAN,
    "created_at": TIME,
    "cursor": nullable(STRING),
    "delivered_at": TIME,
    "delivered_to": OBJECTS,
    "deleted_by": nullable(INTEGER),
    "description": nullable(STRING),
    "display_name": nullable(STRING),
    "edited_at": nullable(TIME),
    "extra": OBJECT,
    "emoji": STRING,
    "enabled": BOOLEAN,
    "encrypted_content": STRING,
    "expires_at": INTEGER,
    "expires_in": INTEGER,
    "file_id": STRING,
    "follow": BOOLEAN,
    "following": BOOLEAN,
    "groups": OBJECTS,
    "has_more": BOOLEAN,
    "id": INTEGER,
    "is_admin": BOOLEAN,
    "is_group": BOOLEAN,
    "is_online": BOOLEAN,
    "is_typing": BOOLEAN,
    "join_rule": {"type": "string", "enum": ["invite", "open", "request"]},
    "kind": {"type": "string", "enum": ["webpush", "gateway"]},
    "last_read_message_id": nullable(STRING),
    "last_reply_at": nullable(TIME),
    "last_seen": nullable(TIME),
    "latency": NUMBER,
    "links": OBJECTS,
    "list": OBJECTS,
    "max_uses": nullable(INTEGER),
    "member_count": INTEGER,
    "members": OBJECTS,
    "mention_count": INTEGER,
    "mentions": _list(INTEGER),
    "preview": {
        "type": "object",
        "properties": {
            "url": STRING,
            "title": nullable(STRING),
            "description": nullable(STRING),
            "image_url": nullable(STRING),
            "site_name": nullable(STRING),
        },
        "required": ["url", "title", "description", "image_url", "site_name"],
    },
    "message": STRING,
    "message_id": STRING,
    "message_ids": _list(STRING),
    "messages": OBJECTS,
    "muted": BOOLEAN,
    "name": STRING,
    "next_cursor": nullable(STRING),
    "options": OBJECTS,
    "page": INTEGER,
    "participant_ids": _list(INTEGER),
    "pinned": BOOLEAN,
    "poll": OBJECT,
    "query": STRING,
    "reactions": OBJECTS,
    "read_only": BOOLEAN,
    "read_by": OBJECTS,
    "reader_id": INTEGER,
    "reader_username": STRING,
    "reason": STRING,
    "report_id": STRING,
    "category": STRING,
    "recipient_id": INTEGER,
    "registration_id": STRING,
    "registrations": OBJECTS,
    "reply_count": INTEGER,
    "reply_to": nullable(OBJECT),
    "results": OBJECTS,
    "root": OBJECT,
    "retention": INTEGER,
    "retry_after": NUMBER,
    "role": {"type": "string", "enum": list(ROLES)},
    "send_delivery_receipts": BOOLEAN,
    "sender_id": INTEGER,
    "sender_username": STRING,
    "server_time": TIME,
    "session_expires": INTEGER,
    "since": TIME,
    "slow_mode": INTEGER,
    "status": nullable(STRING),
    "status_text": nullable(STRING),
    "streak": INTEGER,
    "thread": {
        "type": "object",
        "properties": {
            "reply_count": INTEGER,
            "last_reply_at": nullable(TIME),
            "participant_ids": _list(INTEGER),
        },
        "required": ["reply_count", "last_reply_at", "participant_ids"],
    },
    "thread_id": STRING,
    "threads": OBJECTS,
    "timestamp": TIME,
    "topic": STRING,
    "total_messages": INTEGER,
    "total_pages": INTEGER,
    "type": MESSAGE_TYPE_SCHEMA,
    "unread_count": INTEGER,
    "until": nullable(TIME),
    "upload_token": STRING,
    "upload_url": STRING,
    "user_id": INTEGER,
    "uses": INTEGER,
    "username": STRING,
    "valid": BOOLEAN,
    "visibility": {"type": "string", "enum": ["private", "public"]},
    "voters": INTEGER,
}
