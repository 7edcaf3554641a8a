"""The one client-facing refusal type, shared by every layer, and the codes it carries.

A rule that says no raises `UserError` (or its storage flavour
`RefusedError`) with a message fit for the client and a stable ``code``
from `CODES`: the Socket.IO edge turns it into the ``error`` event
``{"message", "code", ...}`` and the ack ``{"error", "code", ...}``, the
HTTP edge into a JSON error body ``{"error", "code"}``.  No layer
translates another's errors.

Clients branch on ``code``, never on ``message``: messages are for people
and may be reworded in any release; codes are part of the contract
(``docs/api.md``, "Error codes").  A code is added only when a client has
to act differently on it; removing or renaming one is a breaking change.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

__all__ = [
    "CODES",
    "UNKNOWN_CHAT",
    "Code",
    "RefusedError",
    "UserError",
    "check_text",
    "check_visible",
]

#: Every code a refusal may carry.  `CODES` holds the same names with what they mean.
Code = Literal[
    "invalid_argument",
    "unknown_event",
    "not_authenticated",
    "account_disabled",
    "forbidden",
    "invite_required",
    "not_found",
    "conflict",
    "cursor_expired",
    "too_large",
    "rate_limited",
    "too_many_pending",
    "overloaded",
    "unavailable",
    "timeout",
    "internal",
]

#: code -> what it means and what a client does about it.
#: ``docs/api.md`` has one row per code ("Error codes"); ``tests/test_contract.py`` checks both.
CODES: dict[str, str] = {
    "invalid_argument": "The request is malformed: a field missing, of the wrong type or out of bounds."
    " Sending it again unchanged fails the same way.",
    "unknown_event": "No event of this name is routed (a newer client on an older server, or a typo).",
    "not_authenticated": "No valid session, token or password: log in (again).",
    "account_disabled": "The account was deactivated by an administrator.",
    "forbidden": "Not allowed for you: not friends, not a group admin, administrators only, a rule of the server.",
    "invite_required": "Registration needs a valid invite code (missing, unknown or used up).",
    "not_found": "No such chat, message, file, user or registration, or one you may not see: the same answer.",
    "conflict": "The current state forbids it: a username taken, a file already shared, a `client_msg_id` reused.",
    "cursor_expired": "A `sync` cursor from before the changes the server still keeps: reload, then sync from"
    " `connection_successful`'s cursor.",
    "too_large": "A body or file over its size limit.",
    "rate_limited": "A rate limit is spent: wait `retry_after` seconds (the `Retry-After` header on HTTP).",
    "too_many_pending": "Too many events wait on this socket: wait for answers before sending more.",
    "overloaded": "The server is behind on its writes; nothing was done: send it again after `retry_after` seconds.",
    "unavailable": "The database is away, the password checks are queued full, or the node is stopping: try again"
    " shortly (after `retry_after` where given; after reconnecting when the node stops).",
    "timeout": "Not answered within the event's deadline; the message says whether it may still take effect.",
    "internal": "A server fault (logged with its traceback); the connection stays open.",
}


#: A chat the user is not in, or that does not exist: one answer for both, so nothing leaks.
UNKNOWN_CHAT = "Unknown chat"


class UserError(Exception):
    """Becomes the ``error`` event ``{"message", "code"}`` (plus ``extra`` fields such as ``retry_after``).

    ``code`` is required and must be one of `CODES`: a client acts on it.
    Anything else raised in a handler is a bug: it is logged with its
    traceback and the client gets ``code: "internal"``; the connection lives on.
    """

    def __init__(self, message: str, *, code: Code, **extra: Any) -> None:
        if code not in CODES:
            raise ValueError(f"unregistered error code {code!r}")
        super().__init__(message)
        self.message = message
        self.code: Code = code
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        """The ``error`` event's payload."""
        return {"message": self.message, "code": self.code, **self.extra}

    def ack(self) -> dict[str, Any]:
        """The ack's payload: ``error`` for ``message``, as the spec has it."""
        return {"error": self.message, "code": self.code, **self.extra}


class RefusedError(UserError):
    """A rule checked inside a transaction said no; nothing was changed.

    Checking inside the transaction (not before it) is what keeps the check
    and the write atomic.  Being a `UserError`, it reaches the client as is.
    """


def check_text(field: str, value: str) -> str:
    """Refuse NUL (U+0000) in any text a client sends, on either edge, whatever the database.

    PostgreSQL cannot store it (SQLite can), so without this one rule the
    same input would be stored on one database and fail on the other.
    """
    if "\x00" in value:
        raise UserError(f"Invalid '{field}': the NUL character is not allowed", code="invalid_argument")
    return value


#: Hangul fillers: letters that draw nothing, the usual way to a blank-looking name.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
_BLACK_FLAG, _CANCEL_TAG = "\U0001f3f4", "\U000e007f"


def _emoji_part(char: str) -> bool:
    """What may stand either side of U+200D in an emoji ZWJ sequence: a symbol, VS16 or a skin tone."""
    return unicodedata.category(char) == "So" or char == "\ufe0f" or "\U0001f3fb" <= char <= "\U0001f3ff"


def _tag_sequence_end(value: str, start: int) -> int:
    """Where the emoji tag sequence (a flag like England's) after the black flag at ``start`` ends, or -1.

    U+1F3F4, then tag characters U+E0020..U+E007E, then CANCEL TAG U+E007F.
    """
    end = start + 1
    while end < len(value) and "\U000e0020" <= value[end] <= "\U000e007e":
        end += 1
    return end + 1 if end > start + 1 and end < len(value) and value[end] == _CANCEL_TAG else -1


def check_visible(field: str, value: str) -> str:
    """Refuse characters that draw nothing or reorder what is drawn, in names and reactions others see.

    Every format character (Unicode category Cf: U+200B..U+200F, the bidi
    embeddings and overrides U+202A..U+202E and isolates U+2066..U+2069,
    U+2060..U+2064, U+FEFF, the tags U+E0000 block, soft hyphen...), lone
    surrogates and the Hangul fillers: they make one user's name look like
    another's, a name look empty, or text after it run backwards.  Allowed
    where writing needs them: U+200D inside an emoji ZWJ sequence (between
    two symbols, as in a family or a rainbow flag), U+200C between two
    letters (Persian, Indic scripts), and tags in an emoji tag sequence.
    """
    index = 0
    while index < len(value):
        char = value[index]
        if char == _BLACK_FLAG and (end := _tag_sequence_end(value, index)) > 0:
            index = end
            continue
        before, after = value[index - 1 : index], value[index + 1 : index + 2]
        joins = (char == "\u200d" and before and after and _emoji_part(before) and _emoji_part(after)) or (
            char == "\u200c" and before.isalpha() and after.isalpha()
        )
        if not joins and (unicodedata.category(char) in ("Cf", "Cs") or char in _BLANK_LETTERS):
            raise UserError(
                f"Invalid '{field}': invisible or direction-changing characters are not allowed (U+{ord(char):04X})",
                code="invalid_argument",
            )
        index += 1
    return value
