"""PLACEHOLDER from the ``files`` branch so that ``umoc.events.files`` imports.

The ``chat`` branch owns this module; at the merge take theirs and drop this
file's content entirely.  Until then nobody may write to any chat.
"""

from __future__ import annotations

from umoc.events.errors import UserError
from umoc.events.router import EventContext


async def require_writable_chat(ctx: EventContext, chat_id: int, is_group: bool) -> None:
    """PLACEHOLDER: the chat branch checks friendship, blocks and group membership."""
    raise UserError("Unknown chat")
