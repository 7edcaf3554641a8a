"""Group changes: a new group, a rename or new description, a member added or removed."""

from __future__ import annotations

from dataclasses import dataclass

from umoc.config import MessagesConfig
from umoc.errors import UserError, check_text
from umoc.records.contacts import user_id
from umoc.records.messages import extra as check_extra

__all__ = ["MAX_DESCRIPTION", "MAX_NAME", "GroupChange", "GroupMember", "NewGroup"]

MAX_NAME = 100
MAX_DESCRIPTION = 1000
#: Most ids one ``member_ids`` list may hold (the group's size is bounded by ``messages.max_group_members``).
MAX_ID_LIST = 10_000


def _name(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME:
        raise UserError(f"Invalid 'name': expected 1 to {MAX_NAME} characters", code="invalid_argument")
    name = check_text("name", value).strip()
    if not name:
        raise UserError("Invalid 'name': expected a non-blank name", code="invalid_argument")
    return name


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise UserError(f"Invalid 'description': expected 0 to {MAX_DESCRIPTION} characters", code="invalid_argument")
    return check_text("description", value)


def _ids(field: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_ID_LIST:
        raise UserError(f"Invalid '{field}': expected a list of user ids", code="invalid_argument")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 2**63 - 1:
            raise UserError(f"Invalid '{field}': expected a list of user ids", code="invalid_argument")
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True, slots=True)
class NewGroup:
    """A group to create: its name (outer spaces stripped), description and first members (besides the creator)."""

    name: str
    description: str | None = None
    member_ids: tuple[int, ...] = ()
    #: The app's custom data (a JSON object), bounded by `checked`.
    extra: dict[str, object] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _name(self.name))
        object.__setattr__(self, "description", _description(self.description))
        object.__setattr__(self, "member_ids", _ids("member_ids", self.member_ids))

    def checked(self, limits: MessagesConfig) -> NewGroup:
        """This group if its ``extra`` is within ``limits``, else `UserError`."""
        check_extra(self.extra, limits.max_extra_bytes)
        return self


@dataclass(frozen=True, slots=True)
class GroupChange:
    """A new name, description and/or ``extra`` for the group ``chat_id``.

    None leaves a field as it is; an ``extra`` of ``{}`` clears it.
    """

    chat_id: int
    name: str | None = None
    description: str | None = None
    extra: dict[str, object] | None = None

    def __post_init__(self) -> None:
        user_id("chat_id", self.chat_id)
        if self.name is None and self.description is None and self.extra is None:
            raise UserError("Nothing to update: give 'name', 'description' or 'extra'", code="invalid_argument")
        if self.name is not None:
            object.__setattr__(self, "name", _name(self.name))
        object.__setattr__(self, "description", _description(self.description))

    def checked(self, limits: MessagesConfig) -> GroupChange:
        """This change if its ``extra`` is within ``limits``, else `UserError`."""
        check_extra(self.extra, limits.max_extra_bytes)
        return self


@dataclass(frozen=True, slots=True)
class GroupMember:
    """``user_id`` joining or leaving the group ``chat_id`` (leaving: the actor's own id)."""

    chat_id: int
    user_id: int

    def __post_init__(self) -> None:
        user_id("chat_id", self.chat_id)
        user_id("user_id", self.user_id)
