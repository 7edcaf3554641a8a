"""Content rules of ``moderation:``: the blocklist, and what new accounts may not do yet.

`check_text` runs on every text a user sends or edits; with an empty
blocklist it is one truth test of two empty tuples, so the plain send path
costs what it did.  The words and regular expressions are compiled once
per configuration (`_compiled`, cached on the frozen `BlocklistConfig`)
into a single pattern, so a message is searched once whatever the list's
length.  The new-account limits read the account's age only when they are
on and the message has a link (or is an upload): one small query then.
"""

from __future__ import annotations

import functools
import re

from umoc.config import BlocklistConfig, NewAccountsConfig
from umoc.domain.services import Services
from umoc.errors import UserError
from umoc.records import Actor

__all__ = ["BLOCKED", "LINKS_REFUSED", "UPLOADS_REFUSED", "check_new_account", "check_text", "has_link"]

BLOCKED = "Message rejected: it contains a blocked word"
LINKS_REFUSED = "New accounts cannot send links yet"
UPLOADS_REFUSED = "New accounts cannot upload files yet"

#: A link as people write one: a scheme, ``www.``, or a host name ending in a common top-level domain.
_LINK = re.compile(
    r"(?i)\b(?:[a-z][a-z0-9+.-]*://|www\.|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|ru|cn|xyz|info|biz|co|me|ly|gg|tk)\b)"
)


@functools.lru_cache(maxsize=4)
def _compiled(blocklist: BlocklistConfig) -> re.Pattern[str]:
    parts = [rf"\b{re.escape(word.strip())}\b" for word in blocklist.words]
    parts += [f"(?:{pattern})" for pattern in blocklist.regexes]
    return re.compile("|".join(parts), re.IGNORECASE)


def check_text(blocklist: BlocklistConfig, text: str) -> str:
    """``text`` as it may be stored: unchanged, masked (``action: mask``), or `UserError` (``reject``)."""
    if not (blocklist.words or blocklist.regexes):
        return text
    pattern = _compiled(blocklist)
    if blocklist.action == "mask":
        return pattern.sub(lambda m: "*" * len(m.group(0)), text)
    if pattern.search(text):
        raise UserError(BLOCKED, code="forbidden")
    return text


def has_link(text: str) -> bool:
    return _LINK.search(text) is not None


async def _is_new(services: Services, actor: Actor, limits: NewAccountsConfig) -> bool:
    created_at = await services.storage.users.created_at(actor.uid)
    return created_at is not None and services.clock.seconds() - created_at < limits.age


async def check_new_account(services: Services, actor: Actor, text: str | None, upload: bool = False) -> None:
    """Refuse a link (``no_links``) or an upload (``no_uploads``) from an account younger than ``age``."""
    limits = services.config.moderation.new_accounts
    if limits.age <= 0 or actor.user_id is None:
        return
    if upload and limits.no_uploads and await _is_new(services, actor, limits):
        raise UserError(UPLOADS_REFUSED, code="forbidden")
    if text is not None and limits.no_links and has_link(text) and await _is_new(services, actor, limits):
        raise UserError(LINKS_REFUSED, code="forbidden")
