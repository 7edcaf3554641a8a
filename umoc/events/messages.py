"""PLACEHOLDER from the ``files`` branch so that ``umoc.events.files`` imports.

The ``chat`` branch owns this module; at the merge take theirs and drop this
file's content entirely.
"""

from __future__ import annotations

from typing import Any

from umoc.events.router import EventContext


async def post_message(
    ctx: EventContext,
    recipient_id: int,
    is_group: bool,
    msg_type: str,
    content: str,
    encrypted_content: str | None = None,
) -> dict[str, Any]:
    """PLACEHOLDER: the chat branch stores the message and broadcasts ``new_message``."""
    raise NotImplementedError("post_message comes from the chat branch")
