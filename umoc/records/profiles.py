"""Profile and settings changes: what a user shows others, and what they chose for themselves."""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from typing import Final

from umoc.config import MessagesConfig
from umoc.errors import UserError, check_visible
from umoc.records.messages import extra as check_extra
from umoc.records.messages import extra_text

__all__ = ["MAX_DISPLAY_NAME", "MAX_STATUS_TEXT", "UNSET", "ProfileChange", "SettingsChange", "Unset"]

MAX_DISPLAY_NAME = 64
MAX_STATUS_TEXT = 200


class Unset:
    """The type of `UNSET`: a field a change leaves alone."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


#: A profile field the change leaves alone (None clears it).
UNSET: Final = Unset()


def _line(field: str, value: object, maximum: int, visible: bool = False) -> str | None:
    """One line of text, outer spaces stripped; ``""`` (or only spaces) clears the field (None).

    ``visible`` (a name others see) also refuses invisible and direction-changing
    characters (`check_visible`): a name that looks like another's, or blank.
    """
    if not isinstance(value, str) or len(value) > maximum:
        raise UserError(
            f"Invalid '{field}': expected a string of at most {maximum} characters", code="invalid_argument"
        )
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value):
        raise UserError(f"Invalid '{field}': no control characters or line breaks allowed", code="invalid_argument")
    if visible:
        check_visible(field, value)
    return value.strip() or None


def _file_id(field: str, value: object) -> str | None:
    """A file id in its canonical form, or ``""`` to clear (None)."""
    if value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise UserError(f"Invalid '{field}': expected a UUID string", code="invalid_argument")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise UserError(f"Invalid '{field}': expected a UUID string", code="invalid_argument") from None


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """New values for some of the profile's fields: `UNSET` leaves one alone, ``""`` (then None) clears it.

    An avatar is a file id; whether it is the user's own whole image is
    checked in the store's transaction, against ``uploads.allowed_types``.
    """

    display_name: str | None | Unset = UNSET
    status_text: str | None | Unset = UNSET
    avatar_file_id: str | None | Unset = UNSET
    #: The app's custom data (a JSON object; ``{}`` clears it), bounded by `checked`.
    extra: dict[str, object] | None | Unset = UNSET

    def __post_init__(self) -> None:
        if self.display_name is not UNSET and self.display_name is not None:
            object.__setattr__(
                self, "display_name", _line("display_name", self.display_name, MAX_DISPLAY_NAME, visible=True)
            )
        if self.status_text is not UNSET and self.status_text is not None:
            object.__setattr__(self, "status_text", _line("status_text", self.status_text, MAX_STATUS_TEXT))
        if self.avatar_file_id is not UNSET and self.avatar_file_id is not None:
            object.__setattr__(self, "avatar_file_id", _file_id("avatar_file_id", self.avatar_file_id))
        if self.extra is not UNSET and not isinstance(self.extra, dict):
            raise UserError("Invalid 'extra': expected a JSON object", code="invalid_argument")
        if all(value is UNSET for value in (self.display_name, self.status_text, self.avatar_file_id, self.extra)):
            raise UserError(
                "Nothing to update: give 'display_name', 'status_text', 'avatar_file_id' or 'extra'",
                code="invalid_argument",
            )

    def checked(self, limits: MessagesConfig) -> ProfileChange:
        """This change if its ``extra`` is within ``limits`` (`check_extra`), else `UserError`."""
        if not isinstance(self.extra, Unset):
            check_extra(self.extra, limits.max_extra_bytes)
        return self

    def fields(self) -> dict[str, str | None]:
        """The fields this change sets (None: cleared), by column name; ``extra`` as compact JSON."""
        extra: str | None | Unset = self.extra if isinstance(self.extra, Unset) else extra_text(self.extra)
        return {
            name: value
            for name, value in (
                ("display_name", self.display_name),
                ("status_text", self.status_text),
                ("avatar_file_id", self.avatar_file_id),
                ("extra", extra),
            )
            if not isinstance(value, Unset)
        }


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """The settings to change (None leaves one alone; none given: the settings are only read back)."""

    send_delivery_receipts: bool | None = None

    def __post_init__(self) -> None:
        if self.send_delivery_receipts is not None and not isinstance(self.send_delivery_receipts, bool):
            raise UserError("Invalid 'send_delivery_receipts': expected true or false", code="invalid_argument")
