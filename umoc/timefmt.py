"""Time as UMOC shows it: epoch seconds inside, ISO 8601 UTC on the wire."""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["iso", "iso_or_none", "parse_iso", "utc_day"]


#: The last second `iso` formatted and its text: the messages of one second share it (``strftime``
#: was a tenth of the payload's cost).  One tuple, replaced whole, so any thread may read it.
_last: tuple[int, str] = (0, "1970-01-01T00:00:00Z")


def iso(epoch: float) -> str:
    """``2023-01-01T12:00:00Z``: the spec's shape, second precision, always UTC."""
    global _last
    second = math.floor(epoch)
    last = _last
    if last[0] == second:
        return last[1]
    text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _last = (second, text)
    return text


def iso_or_none(epoch: float | None) -> str | None:
    return None if epoch is None else iso(epoch)


def utc_day(epoch: float) -> int:
    """Days since 1970-01-01 in UTC: the unit streaks count in."""
    return int(epoch // 86400)


def parse_iso(text: str) -> float:
    """``2023-01-01T12:00:00Z`` (or with an offset) -> epoch seconds; ValueError otherwise.

    A time without an offset is read as UTC, the only zone UMOC writes.
    """
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
