"""Sans-IO codec for the Engine.IO v4 wire format.

Engine.IO is the transport layer under Socket.IO.  A packet is one type digit
followed by optional data::

    0{"sid":...}   open        1  close       2  ping     3  pong
    4hello         message     5  upgrade     6  noop

Over WebSocket every packet is its own frame and binary MESSAGE data travels
as a raw binary frame with no prefix.  Over HTTP long-polling several packets
are joined with the record separator ``"\\x1e"`` and binary data is written as
``"b"`` + base64 (v4 always uses base64 in payloads, so both directions treat
bodies as text).

Nothing here touches sockets or Twisted: callers hand in frames or bodies and
get packets back, which keeps the codec testable and reusable by every
transport.  Anything a peer could send that we cannot decode raises
`ProtocolError`, the only exception decoders let escape, so transports need a
single ``except`` to drop a misbehaving session.
"""

from __future__ import annotations

import binascii
import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass

try:  # the handshake on every connect: orjson writes the same compact JSON, several times faster
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library gives the same text
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "RECORD_SEPARATOR",
    "EnginePacket",
    "EnginePacketType",
    "ProtocolError",
    "decode_packet",
    "decode_payload",
    "encode_packet",
    "encode_payload",
    "open_packet",
]

#: Separates packets in a long-polling payload.
RECORD_SEPARATOR = "\x1e"


class ProtocolError(ValueError):
    """Raised for any undecodable input.

    Subclassing ValueError lets generic "bad value" handlers catch it, while
    transports can catch exactly this to close only the offending session.
    """


class EnginePacketType(enum.IntEnum):
    """Engine.IO packet types; the value is the digit written on the wire."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


@dataclass(frozen=True, slots=True)
class EnginePacket:
    """One Engine.IO packet.

    ``data`` is ``None`` when the packet carries nothing (``"2"``), a str for
    text data (``"4hello"`` -> ``"hello"``), or bytes for a binary MESSAGE.
    Frozen so that one encoded packet can be shared between many sessions.
    """

    type: EnginePacketType
    data: str | bytes | None = None


_TYPE_CHARS = "0123456"
_TYPE_BY_CHAR: dict[str, EnginePacketType] = {str(int(t)): t for t in EnginePacketType}
# Packets without data are immutable and very common (ping, pong, noop):
# decoding them hands out shared instances instead of allocating.
_BARE_BY_CHAR: dict[str, EnginePacket] = {c: EnginePacket(t) for c, t in _TYPE_BY_CHAR.items()}
_BYTES_TYPES = (bytes, bytearray, memoryview)


def encode_packet(packet: EnginePacket) -> str | bytes:
    """Encode one packet as a WebSocket frame.

    Text packets become ``"<digit><data>"``; a MESSAGE with bytes data becomes
    the raw bytes (sent as a binary frame, which is how v4 marks binary data
    on WebSocket).
    """
    data = packet.data
    if data is None:
        return _TYPE_CHARS[packet.type]
    if isinstance(data, str):
        return _TYPE_CHARS[packet.type] + data
    if isinstance(data, _BYTES_TYPES):
        if packet.type != EnginePacketType.MESSAGE:
            raise ValueError("only MESSAGE packets can carry binary data")
        return bytes(data)
    raise TypeError(f"packet data must be str, bytes or None, not {type(data).__name__}")


def decode_packet(frame: str | bytes) -> EnginePacket:
    """Decode one WebSocket frame.

    A text frame starts with the type digit; a binary frame is always a
    MESSAGE whose data is the frame itself.
    """
    if isinstance(frame, str):
        if not frame:
            raise ProtocolError("empty packet")
        if len(frame) == 1:
            packet = _BARE_BY_CHAR.get(frame)
            if packet is None:
                raise ProtocolError(f"unknown packet type {frame!r}")
            return packet
        ptype = _TYPE_BY_CHAR.get(frame[0])
        if ptype is None:
            raise ProtocolError(f"unknown packet type {frame[0]!r}")
        return EnginePacket(ptype, frame[1:])
    if isinstance(frame, _BYTES_TYPES):
        return EnginePacket(EnginePacketType.MESSAGE, bytes(frame))
    raise ProtocolError(f"cannot decode a frame of type {type(frame).__name__}")


def encode_payload(packets: Iterable[EnginePacket]) -> str:
    """Encode packets as one HTTP long-polling body.

    Binary MESSAGE data is written as ``"b"`` + base64.  Text data containing
    the record separator would split into bogus packets on the other side,
    so it is refused rather than silently corrupted.
    """
    parts: list[str] = []
    for packet in packets:
        data = packet.data
        if isinstance(data, _BYTES_TYPES):
            if packet.type != EnginePacketType.MESSAGE:
                raise ValueError("only MESSAGE packets can carry binary data")
            parts.append("b" + binascii.b2a_base64(data, newline=False).decode("ascii"))
            continue
        encoded = encode_packet(packet)
        assert isinstance(encoded, str)
        if RECORD_SEPARATOR in encoded:
            raise ValueError("packet data contains the record separator \\x1e")
        parts.append(encoded)
    return RECORD_SEPARATOR.join(parts)


def decode_payload(body: str | bytes, max_packets: int | None = None) -> list[EnginePacket]:
    """Decode an HTTP long-polling body into its packets.

    ``max_packets`` bounds how many packets one body may hold, so a client
    cannot make us allocate millions of packet objects from one POST.
    """
    if isinstance(body, _BYTES_TYPES):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError("payload is not valid UTF-8") from e
    elif not isinstance(body, str):
        raise ProtocolError(f"cannot decode a payload of type {type(body).__name__}")
    if max_packets is None:
        parts = body.split(RECORD_SEPARATOR)
    else:
        # Splitting at most max_packets times keeps the work bounded even
        # for a body made only of separators.
        parts = body.split(RECORD_SEPARATOR, max_packets)
        if len(parts) > max_packets:
            raise ProtocolError(f"payload holds more than {max_packets} packets")
    packets: list[EnginePacket] = []
    append = packets.append
    for part in parts:
        if part[:1] == "b":
            try:
                raw = binascii.a2b_base64(part[1:], strict_mode=True)
            except ValueError as e:  # binascii.Error, or non-ASCII text
                raise ProtocolError("invalid base64 in binary packet") from e
            append(EnginePacket(EnginePacketType.MESSAGE, raw))
        else:
            append(decode_packet(part))
    return packets


def open_packet(
    sid: str,
    upgrades: list[str],
    ping_interval_ms: int,
    ping_timeout_ms: int,
    max_payload: int,
) -> EnginePacket:
    """Build the OPEN packet that completes the handshake.

    Keys are written in the order the protocol document lists them, with
    compact separators, so the handshake matches the reference server byte
    for byte.
    """
    handshake = {
        "sid": sid,
        "upgrades": list(upgrades),
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    }
    if _orjson is not None:
        text = _orjson.dumps(handshake).decode("utf-8")
    else:
        text = json.dumps(handshake, separators=(",", ":"), ensure_ascii=False)
    return EnginePacket(EnginePacketType.OPEN, text)
