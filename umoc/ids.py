"""Message ids: UUID version 4 strings made without a system call per message.

``str(uuid.uuid4())`` reads 16 bytes from ``os.urandom`` and builds a `UUID`
object for every message, on the reactor thread.  Here each process draws
one random 64-bit prefix at start and counts: the result has the version-4
and RFC 4122 variant bits clients check, is unique across processes (the
prefixes collide with probability 2**-64 per pair), and costs one addition
and one formatting.  The ids are not secrets: every event checks that the
asker may touch the message, whatever its id (sessions and upload tokens
keep using the system's random source).
"""

from __future__ import annotations

import itertools
import secrets

__all__ = ["MessageIds"]

_VERSION_MASK = ~(0xF << 76)
_VERSION_4 = 0x4 << 76
_VARIANT_MASK = ~(0x3 << 62)
_VARIANT_RFC4122 = 0x2 << 62
_LOW = (1 << 62) - 1


class MessageIds:
    """A source of unique UUID v4 strings for one process."""

    def __init__(self) -> None:
        self._high = ((secrets.randbits(64) << 64) & _VERSION_MASK) | _VERSION_4 | _VARIANT_RFC4122
        self._counter = itertools.count(secrets.randbits(48))

    def new(self) -> str:
        value = self._high | (next(self._counter) & _LOW)
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
