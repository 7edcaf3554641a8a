"""The common WebSocket frames, sans-IO (RFC 6455 section 5), for the transport's fast path.

Nearly every frame a Socket.IO client sends is small, masked, unfragmented
text; nearly every frame the server sends is one unfragmented, unmasked
text or binary frame.  These two cases are pure functions here, tested with
the RFC's own wire examples; everything else (control frames, fragments,
extensions, errors) is left to Autobahn, which reports each protocol error
its own way.  wsproto's ``frame_protocol.py`` is the model::

    client -> server   0x81 0x85 <mask:4> <masked "Hello">       parse_client_frame -> ("Hello", 11, 5)
    server -> client   0x81 0x05 "Hello"                          encode_frame("Hello")
"""

from __future__ import annotations

import struct

try:  # Cython XOR masking: a third to a quarter of the instructions of the big-int XOR below
    from wsaccel.xormask import XorMaskerSimple as _XorMasker
except ImportError:  # pragma: no cover - a dependency; the pure path gives the same bytes
    _XorMasker = None

__all__ = ["encode_frame", "parse_client_frame", "unmask"]

_TEXT, _BINARY = 0x81, 0x82  # FIN set, no RSV bits


def unmask_pure(payload: bytes, mask: bytes) -> bytes:
    """XOR a client frame's payload with its 4-byte mask (RFC 6455 5.3), as one big-int operation."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def unmask_wsaccel(payload: bytes, mask: bytes) -> bytes:
    """The same XOR by wsaccel's C masker (``bench/README.md``: 6.6k instructions for 150 bytes, 11.5k pure)."""
    assert _XorMasker is not None
    return _XorMasker(mask).process(payload)  # type: ignore[no-any-return, unused-ignore]


#: XOR a client frame's payload with its mask: wsaccel's when it is installed, else the pure path.
unmask = unmask_pure if _XorMasker is None else unmask_wsaccel


def encode_frame(frame: str | bytes) -> bytes:
    """One unfragmented, unmasked server frame: text for str, binary for bytes."""
    if isinstance(frame, str):
        payload, first = frame.encode("utf-8"), _TEXT
    else:
        payload, first = bytes(frame), _BINARY
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def parse_client_frame(data: bytes, max_payload: int) -> tuple[str | bytes, int, int] | None:
    """The first frame in ``data`` if it is the common case: ``(frame, bytes consumed, payload length)``.

    The common case is a complete, masked, unfragmented text or binary frame
    with at most ``max_payload`` (and under 64 KiB) of payload, text being
    valid UTF-8.  Anything else, including a frame not wholly buffered yet,
    is None: the caller's general parser decides what it is.
    """
    buffered = len(data)
    if buffered < 6:
        return None
    b0 = data[0]
    if b0 != _TEXT and b0 != _BINARY:
        return None
    b1 = data[1]
    if not b1 & 0x80:  # unmasked: a protocol violation the general parser reports
        return None
    length = b1 & 0x7F
    if length < 126:
        start = 6
    elif length == 126 and buffered >= 8:
        length = (data[2] << 8) | data[3]
        if length < 126:  # not minimally encoded: the general parser reports it
            return None
        start = 8
    else:
        return None
    end = start + length
    if buffered < end or length > max_payload:
        return None
    payload = unmask(data[start:end], data[start - 4 : start])
    if b0 == _BINARY:
        return payload, end, length
    try:
        return payload.decode("utf-8"), end, length
    except UnicodeDecodeError:
        return None  # invalid UTF-8: the general parser fails the connection with 1007
