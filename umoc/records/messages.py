"""Messages and what is done to them, as records that check themselves once.

Every edge that sends, edits, deletes, reacts to or reads messages (socket
handlers, ``/api/bot/``, ``/api/admin/``, ``umoc-admin``) builds one of
these and hands it to a command in ``umoc.domain.commands``; the command
calls ``checked(limits)`` (the configured bounds) before anything else, so
the rules on what a message may hold are these and nowhere else.  The
schema bounds of each edge (``umoc.records.schema``, the bot's JSON parsing)
only say what type a field has.

Storage takes the same records: `NewMessage` goes from the edge to
``MessageStore.post`` as one object.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from umoc.config import MessagesConfig
from umoc.errors import UserError, check_text, check_visible

__all__ = [
    "FILE_TYPES",
    "Deletion",
    "Delivered",
    "Edit",
    "MAX_EMOJI",
    "MarkUnread",
    "MAX_MENTIONS",
    "MESSAGE_TYPES",
    "MESSAGE_TYPE_SCHEMA",
    "Mute",
    "NewMessage",
    "NewPoll",
    "PollClose",
    "PollVote",
    "ThreadFollow",
    "ThreadQuery",
    "ThreadsQuery",
    "Pin",
    "PinnedQuery",
    "Reaction",
    "ReadReceipt",
    "ReceiptsQuery",
    "Typing",
    "CUSTOM_TYPE",
    "MAX_EXTRA_DEPTH",
    "client_msg_id",
    "extra",
    "extra_text",
    "message_id",
    "message_type",
]

#: The spec's message types.
MESSAGE_TYPES = ("text", "image", "video", "audio", "file", "poll")
#: An app's own message type (``custom:location``): any content, with ``extra``; the server reads neither.
CUSTOM_TYPE = re.compile(r"custom:[a-z0-9_.-]{1,40}")
#: The JSON Schema of a message type, for the generated contract.
MESSAGE_TYPE_SCHEMA: dict[str, object] = {
    "anyOf": [
        {"type": "string", "enum": list(MESSAGE_TYPES)},
        {"type": "string", "pattern": "^custom:[a-z0-9_.-]{1,40}$"},
    ]
}
#: The types whose content is a file's metadata (a JSON object).
_FILE_TYPES = frozenset(MESSAGE_TYPES) - {"text", "poll"}
#: The types whose ``content`` is an upload's metadata (JSON), not words.
FILE_TYPES = _FILE_TYPES
#: Nesting of an ``extra`` object (the object itself is level 1).
MAX_EXTRA_DEPTH = 8
#: Users one message may mention.
MAX_MENTIONS = 50
MAX_EMOJI = 32
_BAD_EMOJI = f"Invalid 'emoji': expected 1 to {MAX_EMOJI} characters with no whitespace"


#: A UUID in its one spelling, as `str(uuid.UUID(...))` writes it.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def message_id(value: str, field: str = "message_id") -> str:
    """A message id in its one spelling (lower-case UUID), or `UserError`."""
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value  # already so (ids the server gave out): no parse
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise UserError(f"Invalid '{field}': expected a UUID", code="invalid_argument") from None


#: What a client's own message key may be (``client_msg_id``).
_CLIENT_MSG_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def client_msg_id(value: object) -> str | None:
    """A client's key for a message it sends (None: no key), or `UserError`.

    1 to 64 characters of ``A-Z a-z 0-9 _ -``: a UUID, a counter, a ULID all fit.
    """
    if value is None:
        return None
    if not isinstance(value, str) or _CLIENT_MSG_ID.fullmatch(value) is None:
        raise UserError(
            "Invalid 'client_msg_id': expected 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
            code="invalid_argument",
        )
    return value


def message_type(value: str) -> str:
    """A message type: one of `MESSAGE_TYPES` or ``custom:<name>`` (1-40 of ``a-z 0-9 _ . -``); or `UserError`."""
    if value in MESSAGE_TYPES or (isinstance(value, str) and CUSTOM_TYPE.fullmatch(value)):
        return value
    raise UserError(
        f"Invalid 'type': expected one of {', '.join(MESSAGE_TYPES)}"
        " or custom:<name> (1 to 40 of a-z, 0-9, '_', '.', '-')",
        code="invalid_argument",
    )


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def extra(value: object, max_bytes: int) -> dict[str, object] | None:
    """An app's custom data (None: none), or `UserError`.

    A JSON object of at most ``max_bytes`` bytes as UTF-8 compact JSON and
    `MAX_EXTRA_DEPTH` levels of nesting; no NaN or infinities (not JSON).
    The server stores and relays it; it never reads inside.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError("Invalid 'extra': expected a JSON object", code="invalid_argument")
    if _depth(value) > MAX_EXTRA_DEPTH:
        raise UserError(f"Invalid 'extra': at most {MAX_EXTRA_DEPTH} levels of nesting", code="invalid_argument")
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError):
        raise UserError("Invalid 'extra': expected a JSON object", code="invalid_argument") from None
    if size > max_bytes:
        raise UserError(f"Invalid 'extra': at most {max_bytes} bytes as JSON", code="invalid_argument")
    return value


def extra_text(value: dict[str, object] | None) -> str | None:
    """How ``extra`` is stored: compact JSON, None for none (an empty object clears a profile's or a group's)."""
    if not value:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _content(content: str, limits: MessagesConfig) -> None:
    if not 1 <= len(content) <= limits.max_content_length:
        raise UserError(
            f"Invalid 'content': expected 1 to {limits.max_content_length} characters", code="invalid_argument"
        )
    check_text("content", content)


#: Options of a poll, and the characters of one.
MIN_POLL_OPTIONS, MAX_POLL_OPTIONS, MAX_POLL_OPTION = 2, 10, 200


def _poll_time(value: object) -> float | None:
    """``closes_at``: ISO 8601 with a zone, or epoch seconds; None for none."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e11:
        return float(value)
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    raise UserError(
        "Invalid 'poll.closes_at': expected an ISO 8601 time with a zone or epoch seconds", code="invalid_argument"
    )


@dataclass(frozen=True, slots=True)
class NewPoll:
    """A poll's options (ids 0, 1, ... in this order), whether a voter may pick several, and when it closes."""

    options: tuple[str, ...]
    multiple: bool = False
    closes_at: float | None = None

    @classmethod
    def parse(cls, value: object) -> NewPoll | None:
        """``send_message``'s ``poll`` object (None: none), or `UserError`."""
        if value is None:
            return None
        if not isinstance(value, dict) or set(value) - {"options", "multiple", "closes_at"}:
            raise UserError(
                "Invalid 'poll': expected {options: [2 to 10 strings], multiple?, closes_at?}", code="invalid_argument"
            )
        options = value.get("options")
        if not isinstance(options, list) or not MIN_POLL_OPTIONS <= len(options) <= MAX_POLL_OPTIONS:
            raise UserError(
                f"Invalid 'poll.options': expected {MIN_POLL_OPTIONS} to {MAX_POLL_OPTIONS} strings",
                code="invalid_argument",
            )
        for option in options:
            if not isinstance(option, str) or not 1 <= len(option.strip()) <= MAX_POLL_OPTION:
                raise UserError(
                    f"Invalid 'poll.options': each 1 to {MAX_POLL_OPTION} characters", code="invalid_argument"
                )
            check_text("poll.options", option)
        multiple = value.get("multiple", False)
        if not isinstance(multiple, bool):
            raise UserError("Invalid 'poll.multiple': expected true or false", code="invalid_argument")
        return cls(tuple(option.strip() for option in options), multiple, _poll_time(value.get("closes_at")))


@dataclass(frozen=True, slots=True)
class PollVote:
    """The voter's whole choice on a poll (it replaces their earlier one; empty: the vote is taken back)."""

    message_id: str
    option_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_id", message_id(self.message_id))
        ids = self.option_ids
        if len(ids) > MAX_POLL_OPTIONS or any(
            isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < MAX_POLL_OPTIONS for i in ids
        ):
            raise UserError(
                f"Invalid 'option_ids': expected a list of option ids (0 to {MAX_POLL_OPTIONS - 1})",
                code="invalid_argument",
            )
        object.__setattr__(self, "option_ids", tuple(sorted(set(ids))))


@dataclass(frozen=True, slots=True)
class PollClose:
    """A poll its sender (or a group admin) closes: no more votes."""

    message_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_id", message_id(self.message_id))


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to send: to a user (``is_group`` false) or a group, as the sender's client gives it.

    ``content`` of a non-text message is the file's metadata as a JSON
    object (the spec's Type Definitions); ``mentions`` are user ids, sorted
    and without repeats once checked.  ``client_msg_id`` is the sender's own
    key for it: a retry with the same key is answered with the message
    stored the first time (``umoc.domain.commands.messages.send``).
    """

    recipient_id: int
    is_group: bool
    content: str
    type: str = "text"
    encrypted_content: str | None = None
    reply_to: str | None = None
    mentions: tuple[int, ...] = ()
    client_msg_id: str | None = None
    #: The app's custom data (`extra`), relayed as given.
    extra: dict[str, object] | None = None
    #: ``type`` "poll": its options (``content`` is the question).
    poll: NewPoll | None = None
    #: A reply in the thread of this message (a reply to a reply goes to its root), and whether the
    #: reply shows in the chat's main timeline too.
    thread_id: str | None = None
    also_in_chat: bool = False

    def checked(self, limits: MessagesConfig) -> NewMessage:
        """This message if it is within ``limits`` and well formed (mentions normalised), else `UserError`."""
        client_msg_id(self.client_msg_id)
        message_type(self.type)
        extra(self.extra, limits.max_extra_bytes)
        _content(self.content, limits)
        encrypted = self.encrypted_content
        if encrypted is not None:
            if len(encrypted) > limits.max_encrypted_length:
                raise UserError(
                    f"Invalid 'encrypted_content': at most {limits.max_encrypted_length} characters",
                    code="invalid_argument",
                )
            check_text("encrypted_content", encrypted)
        if self.type in _FILE_TYPES:
            try:
                metadata = json.loads(self.content)
            except ValueError:
                metadata = None
            if not isinstance(metadata, dict):
                raise UserError("Invalid 'content': a non-text message carries a JSON object", code="invalid_argument")
        if (self.type == "poll") != (self.poll is not None):
            raise UserError(
                "Invalid 'poll': a message of type poll, and only one, carries 'poll'", code="invalid_argument"
            )
        if self.poll is not None and self.encrypted_content is not None:
            raise UserError("Invalid 'encrypted_content': a poll is not encrypted", code="invalid_argument")
        if self.thread_id is not None:
            thread = message_id(self.thread_id, "thread_id")
            if thread != self.thread_id:
                return replace(self, thread_id=thread).checked(limits)
        elif self.also_in_chat:
            raise UserError("Invalid 'also_in_chat': only a thread reply ('thread_id') has it", code="invalid_argument")
        mentions = self.mentions
        if mentions:
            if len(mentions) > MAX_MENTIONS:
                raise UserError(f"Invalid 'mentions': at most {MAX_MENTIONS} users", code="invalid_argument")
            normal = tuple(sorted(set(mentions)))
            if normal != mentions:
                return replace(self, mentions=normal)
        return self


@dataclass(frozen=True, slots=True)
class Edit:
    """New content for the sender's own text message."""

    message_id: str
    content: str

    def checked(self, limits: MessagesConfig) -> Edit:
        _content(self.content, limits)
        return self


@dataclass(frozen=True, slots=True)
class Deletion:
    """A message to delete: the sender's own, or (by an operator) anybody's."""

    message_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_id", message_id(self.message_id))


@dataclass(frozen=True, slots=True)
class Reaction:
    """An emoji (or a short code) put on or taken off a message.

    Anything of 1-32 characters with no whitespace or control characters
    (an emoji is often several code points joined by U+200D, with variation
    selectors): clients decide what they show.
    """

    message_id: str
    emoji: str

    def __post_init__(self) -> None:
        emoji = self.emoji
        if not isinstance(emoji, str) or not 1 <= len(emoji) <= MAX_EMOJI:
            raise UserError(_BAD_EMOJI, code="invalid_argument")
        if any(char.isspace() or ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in emoji):
            raise UserError(_BAD_EMOJI, code="invalid_argument")

    @classmethod
    def put_on(cls, message_id: str, emoji: str) -> Reaction:
        """A reaction to add: also nothing invisible outside an emoji sequence (issue 22, G12).

        Taking one off accepts what the constructor accepts, so a reaction put
        on before that rule can still be taken off.
        """
        reaction = cls(message_id, emoji)
        check_visible("emoji", reaction.emoji)
        return reaction


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """Messages from ``sender_id`` the reader has read."""

    sender_id: int
    message_ids: tuple[str, ...]

    def checked(self, limits: MessagesConfig) -> ReadReceipt:
        if len(self.message_ids) > limits.max_ids_per_receipt:
            raise UserError(f"Invalid 'message_ids': at most {limits.max_ids_per_receipt} ids", code="invalid_argument")
        return self


@dataclass(frozen=True, slots=True)
class MarkUnread:
    """The reader's own view: ``from_message_id`` and every later message of the chat are unread again."""

    chat_id: int
    is_group: bool
    from_message_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_message_id", message_id(self.from_message_id, "from_message_id"))


@dataclass(frozen=True, slots=True)
class Pin:
    """A message to pin (``pinned``) or unpin in its chat."""

    message_id: str
    pinned: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_id", message_id(self.message_id))


@dataclass(frozen=True, slots=True)
class PinnedQuery:
    """The pinned messages of one chat, as the asker calls it (a friend's user id, or a group id)."""

    chat_id: int
    is_group: bool


@dataclass(frozen=True, slots=True)
class ReceiptsQuery:
    """Who got and who read one of the asker's own messages."""

    message_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_id", message_id(self.message_id))


@dataclass(frozen=True, slots=True)
class Delivered:
    """Messages that reached the user's client."""

    message_ids: tuple[str, ...]

    def checked(self, limits: MessagesConfig) -> Delivered:
        if len(self.message_ids) > limits.max_ids_per_receipt:
            raise UserError(f"Invalid 'message_ids': at most {limits.max_ids_per_receipt} ids", code="invalid_argument")
        return self


@dataclass(frozen=True, slots=True)
class Typing:
    """The user started or stopped typing in a chat."""

    recipient_id: int
    is_group: bool
    is_typing: bool


@dataclass(frozen=True, slots=True)
class Mute:
    """Pushes for one chat off (until ``until``, epoch seconds; None: until unmuted), or back on."""

    chat_id: int
    is_group: bool
    muted: bool = True
    until: float | None = None


#: Replies one ``get_thread`` page and threads one ``get_threads`` page may hold.
MAX_THREAD_PAGE, DEFAULT_THREAD_PAGE = 100, 50


def _page_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_THREAD_PAGE:
        raise UserError(f"Invalid 'limit': expected 1 to {MAX_THREAD_PAGE}", code="invalid_argument")
    return limit


@dataclass(frozen=True, slots=True)
class ThreadQuery:
    """A page of a thread's replies, oldest first, before the reply ``before`` (None: the newest page).

    The newest page also reads the thread for a follower (their unread replies of it are read).
    """

    thread_id: str
    before: str | None = None
    limit: int = DEFAULT_THREAD_PAGE

    def __post_init__(self) -> None:
        object.__setattr__(self, "thread_id", message_id(self.thread_id, "thread_id"))
        if self.before is not None:
            object.__setattr__(self, "before", message_id(self.before, "before"))
        _page_limit(self.limit)


@dataclass(frozen=True, slots=True)
class ThreadsQuery:
    """The threads of one chat (``chat_id``) or, without one, those the asker follows; latest reply first.

    ``cursor`` is the previous page's ``next_cursor``.
    """

    chat_id: int | None = None
    is_group: bool = False
    cursor: str | None = None
    limit: int = DEFAULT_THREAD_PAGE

    def __post_init__(self) -> None:
        _page_limit(self.limit)
        if self.cursor is not None and (not self.cursor.isdigit() or len(self.cursor) > 20):
            raise UserError("Invalid 'cursor': expected a next_cursor of get_threads", code="invalid_argument")

    @property
    def before_seq(self) -> int | None:
        return None if self.cursor is None else int(self.cursor)


@dataclass(frozen=True, slots=True)
class ThreadFollow:
    """Follow (``follow``) or stop following a thread: its replies count as unread, and push, to followers."""

    thread_id: str
    follow: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "thread_id", message_id(self.thread_id, "thread_id"))
