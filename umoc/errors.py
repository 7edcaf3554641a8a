"""The one client-facing refusal type, shared by every layer.

A rule that says no raises `UserError` (or its storage flavour
`RefusedError`) with a message fit for the client: the Socket.IO edge turns
it into the spec's ``error`` event, the HTTP edge into a JSON error body.
No layer translates another's errors.
"""

from __future__ import annotations

import unicodedata
from typing import Any

__all__ = ["UNKNOWN_CHAT", "RefusedError", "UserError", "check_text", "check_visible"]


#: A chat the user is not in, or that does not exist: one answer for both, so nothing leaks.
UNKNOWN_CHAT = "Unknown chat"


class UserError(Exception):
    """Becomes the spec's ``error`` event ``{"message": ...}`` (plus ``extra`` fields).

    Anything else raised in a handler is a bug: it is logged with its
    traceback and the client gets a generic ``error``; the connection lives on.
    """

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


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
        raise UserError(f"Invalid '{field}': the NUL character is not allowed")
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
                f"Invalid '{field}': invisible or direction-changing characters are not allowed (U+{ord(char):04X})"
            )
        index += 1
    return value
