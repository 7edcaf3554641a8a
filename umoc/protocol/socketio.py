"""Sans-IO codec for the Socket.IO v5 packet format (the default parser).

A Socket.IO packet travels as the data of an Engine.IO MESSAGE and is written::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]

followed, for BINARY_EVENT / BINARY_ACK, by one binary frame per attachment.
Inside the JSON each binary value is replaced by a placeholder
``{"_placeholder":true,"num":<index>}``.  Examples from the protocol document::

    0                                    CONNECT to "/"
    0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}
    2["foo"]                             EVENT
    212["foo"]                           EVENT asking for ack 12
    3/admin,13["bar"]                    ACK 13 on "/admin"
    51-["baz",{"_placeholder":true,"num":0}]   + <Buffer 01 02 03 04>

Encoding is built for broadcast: `encode_event` serialises the payload once
and callers reuse the frames for every recipient.  Decoding is hostile-input
proof: every malformed packet raises `ProtocolError` (never RecursionError,
KeyError, ...), and depth, attachment count and ack id size are bounded.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from umoc.protocol.engineio import ProtocolError

try:  # a C JSON codec, 3-5x faster than the standard library's on chat-sized payloads
    import orjson as _orjson
except ImportError:  # pragma: no cover - a dependency; the standard library gives the same results
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "MAX_ACK_ID",
    "Decoder",
    "PacketType",
    "ProtocolError",
    "SocketPacket",
    "decode_plain_event",
    "encode",
    "encode_event",
    "plain_ack_text",
]

#: Largest ack id accepted: JavaScript's Number.MAX_SAFE_INTEGER, the
#: largest id a JS peer can represent exactly.
MAX_ACK_ID = 2**53 - 1
_MAX_ACK_ID_DIGITS = len(str(MAX_ACK_ID))


class PacketType(enum.IntEnum):
    """Socket.IO packet types; the value is the digit written on the wire."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@dataclass(slots=True)
class SocketPacket:
    """One Socket.IO packet.

    ``data`` is JSON-compatible and may hold bytes anywhere (binary
    attachments); ``None`` means the packet has no payload.  ``id`` is the
    acknowledgement id, ``None`` when no ack is requested.
    """

    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None


_TYPE_CHARS = "0123456"
_TYPE_BY_CHAR: dict[str, PacketType] = {str(int(t)): t for t in PacketType}
_BINARY_TYPES = frozenset((PacketType.BINARY_EVENT, PacketType.BINARY_ACK))
_TO_BINARY = {PacketType.EVENT: PacketType.BINARY_EVENT, PacketType.ACK: PacketType.BINARY_ACK}
_BYTES_TYPES = (bytes, bytearray, memoryview)


# -- encoding -----------------------------------------------------------------

# One shared encoder for the common, binary-free case: building a JSONEncoder
# per call would cost more than encoding a short chat message.  allow_nan is
# off because NaN/Infinity are not JSON and JavaScript peers would reject them;
# `_standard_dumps` sends them as null instead, as orjson does.
_PLAIN_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# orjson where it gives exactly the standard encoder's output: anything it does not
# take (bytes, integers past 64 bits, non-str keys, dataclasses, datetimes,
# subclasses) raises TypeError and the standard encoder decides.
#
# NaN and the infinities are not JSON.  They are sent as null, as JavaScript's
# JSON.stringify (and so the reference socket.io server) sends them, on every
# path: orjson writes null by itself; the standard encoder refuses them, and the
# rare payloads that take its path are then encoded again with each one nulled
# (`_nulled`).  Clients cannot send them (the decoder refuses NaN, Infinity and
# numbers past a double), so only a server bug could emit one.  Refusing them
# instead cost every output a walk of its payload: ten times orjson's own time
# for a new_message (bench/README.md, bench_wire).
_ORJSON_OPTIONS = (
    (_orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_SUBCLASS)
    if _orjson is not None
    else 0
)


def _nulled(data: Any) -> Any:
    """``data`` with every NaN or infinity, at any depth, replaced by None (tuples become lists, as in JSON)."""
    kind = type(data)
    if kind is dict:
        return {key: _nulled(value) for key, value in data.items()}
    if kind is list or kind is tuple:
        return [_nulled(value) for value in data]
    if isinstance(data, float) and data - data != 0.0:  # NaN and both infinities give NaN
        return None
    return data


def _standard_dumps(encoder: json.JSONEncoder, data: Any) -> str:
    """``encoder``'s JSON for ``data``, non-finite floats written as null."""
    try:
        return encoder.encode(data)
    except ValueError:
        return encoder.encode(_nulled(data))


def _plain_dumps(data: Any) -> str:
    """JSON for a binary-free payload; TypeError when it holds something else (bytes, say)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(data, option=_ORJSON_OPTIONS).decode("utf-8")
        except TypeError:
            pass  # the standard encoder decides (bytes are swapped for placeholders there)
    return _standard_dumps(_PLAIN_ENCODER, data)


def _dumps_with_attachments(data: Any) -> tuple[str, list[bytes]]:
    """Serialise ``data``, swapping every bytes-like value for a placeholder.

    json calls ``default`` for each value it cannot encode, in document
    order, so the placeholders are numbered exactly as the reference parser
    numbers them, in a single pass.
    """
    attachments: list[bytes] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, _BYTES_TYPES):
            attachments.append(bytes(obj))
            return {"_placeholder": True, "num": len(attachments) - 1}
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=default)
    try:
        return encoder.encode(data), attachments
    except ValueError:
        attachments.clear()
        return encoder.encode(_nulled(data)), attachments


def _frames(ptype: PacketType, namespace: str, ack_id: int | None, data: Any) -> list[str | bytes]:
    attachments: list[bytes] = []
    if data is None:
        body = ""
    elif ptype in _BINARY_TYPES:
        body, attachments = _dumps_with_attachments(data)
    elif ptype is PacketType.EVENT or ptype is PacketType.ACK:
        try:
            body = _plain_dumps(data)
        except TypeError:
            # Probably bytes somewhere: redo with placeholders.  Binary
            # payloads are rare, so the plain path stays the fast one.
            body, attachments = _dumps_with_attachments(data)
            if attachments:
                ptype = _TO_BINARY[ptype]
    else:
        # CONNECT's answer and CONNECT_ERROR: orjson where it writes the standard encoder's text.
        body = _plain_dumps(data)

    head = _TYPE_CHARS[ptype]
    if ptype in _BINARY_TYPES:
        head += f"{len(attachments)}-"
    if namespace != "/":
        if "," in namespace:
            raise ValueError(f"namespace {namespace!r} contains a comma")
        head += namespace + ","
    if ack_id is not None:
        head += str(ack_id)
    frames: list[str | bytes] = [head + body]
    frames.extend(attachments)
    return frames


def encode(packet: SocketPacket) -> list[str | bytes]:
    """Encode a packet as Socket.IO frames: the text packet, then attachments.

    EVENT/ACK data containing bytes is sent as BINARY_EVENT/BINARY_ACK.  The
    caller wraps each frame in an Engine.IO MESSAGE (``"4" + text``).
    """
    return _frames(PacketType(packet.type), packet.namespace, packet.id, packet.data)


def plain_ack_text(ack_id: int, args: tuple[Any, ...] | list[Any], namespace: str = "/") -> str | None:
    """The ACK packet ``3<ack id>[*args]`` as one text frame, or None when the general encoder must decide.

    The reply to nearly every client event: on the default namespace with
    orjson-encodable arguments it is the text ``encode`` would give, without
    the packet object and the general encoder's branches.  None for another
    namespace, bytes (a binary ACK) or anything orjson leaves to the
    standard encoder.
    """
    if _orjson is None or namespace != "/":
        return None
    try:
        return "3" + str(ack_id) + _orjson.dumps(args, option=_ORJSON_OPTIONS).decode("utf-8")
    except TypeError:
        return None


def encode_event(event: str, *args: Any, namespace: str = "/", ack_id: int | None = None) -> list[str | bytes]:
    """Encode an EVENT ``[event, *args]``; the broadcast fast path.

    JSON is produced once; reuse the returned frames for every recipient.
    """
    data = [event, *args]
    if _orjson is not None and namespace == "/" and ack_id is None:
        try:  # the common case (every server event), without the general encoder's branches
            return ["2" + _orjson.dumps(data, option=_ORJSON_OPTIONS).decode("utf-8")]
        except TypeError:
            pass  # bytes (a binary event) or something orjson leaves to the standard encoder
    return _frames(PacketType.EVENT, namespace, ack_id, data)


# -- decoding -----------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")
# A namespace runs from "/" to the first "," (or the end of the packet, as in
# the conformance suite's "40/random").  Control characters could corrupt
# polling payloads when echoed back, and JSON punctuation means the comma
# before the payload is missing (e.g. '2/admin["bar"]').
_BAD_NAMESPACE_CHAR = re.compile(r'[\x00-\x1f\x7f"\[\]{}\ud800-\udfff]')
# Cheap pre-check for text that might decode to a lone surrogate, which
# could not be re-encoded as UTF-8 when the value is broadcast later.
_SURROGATE_HINT = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")
_MISSING: Any = object()


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ProtocolError(f"number {text[:20]!r} out of range")
    return value


_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)
# orjson reads integers past 64 bits as floats; numbers that long (19 digits or more, a
# run of digits anywhere) go to the standard decoder.  The run is found by turning every
# digit of the UTF-8 bytes into "0" and looking for 19 of them: a tenth of what the regex
# ``[0-9]{19}`` costs, which tries each position in turn (bench_wire ``ingest1``).  UTF-8
# never puts an ASCII digit byte inside a multi-byte character, so the runs are the same.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def _loads(text: str) -> Any:
    # ``find``, not ``not in``: CPython's ``bytes.__contains__`` first tries its argument as an
    # integer (``0 in b"..."``) and formats a TypeError it then drops, on every call (1,800 instructions).
    if _orjson is not None and text.encode("utf-8", "surrogatepass").translate(_DIGITS_TO_ZERO).find(_LONG_NUMBER) < 0:
        try:
            # Refuses what the standard decoder refuses below (NaN, infinite numbers, lone
            # surrogates, trailing data), which then says why in its own words.
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            pass
    try:
        value = _JSON_DECODER.decode(text)
    except RecursionError as e:
        raise ProtocolError("JSON nested too deeply") from e
    except ValueError as e:  # JSONDecodeError, ProtocolError, int digit limit
        raise ProtocolError(f"invalid JSON payload: {e}") from e
    if _SURROGATE_HINT.search(text) is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            raise ProtocolError("payload contains a lone surrogate") from e
    return value


def _scan(value: Any, max_depth: int, attachments: int | None) -> list[tuple[Any, Any, int]]:
    """Check nesting depth and, for binary packets, find the placeholders.

    Iterative so that depth is bounded by ``max_depth`` and not by Python's
    recursion limit.  Returns ``(container, key, num)`` for every placeholder
    so the attachments can be slotted in once they have all arrived.
    """
    slots: list[tuple[Any, Any, int]] = []
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise ProtocolError(f"JSON nested deeper than {max_depth}")
        items = node.items() if type(node) is dict else enumerate(node)
        for key, child in items:
            kind = type(child)
            if kind is dict:
                if attachments is not None and child.get("_placeholder") is True:
                    num = child.get("num")
                    if type(num) is not int or not 0 <= num < attachments:
                        raise ProtocolError(f"placeholder num {num!r} out of range")
                    slots.append((node, key, num))
                else:
                    stack.append((child, depth + 1))
            elif kind is list:
                stack.append((child, depth + 1))
    return slots


def _check_payload(ptype: PacketType, data: Any) -> None:
    """Enforce the payload shape each packet type requires (protocol v5)."""
    if ptype is PacketType.EVENT or ptype is PacketType.BINARY_EVENT:
        if type(data) is not list or not data or type(data[0]) is not str:
            raise ProtocolError("EVENT payload must be a non-empty array starting with a string")
    elif ptype is PacketType.ACK or ptype is PacketType.BINARY_ACK:
        if type(data) is not list:
            raise ProtocolError("ACK payload must be an array")
    elif ptype is PacketType.CONNECT:
        if data is not _MISSING and type(data) is not dict:
            raise ProtocolError("CONNECT payload must be an object")
    elif ptype is PacketType.CONNECT_ERROR:
        if type(data) is not dict and type(data) is not str:
            raise ProtocolError("CONNECT_ERROR payload must be an object or a string")
    elif data is not _MISSING:  # DISCONNECT
        raise ProtocolError("DISCONNECT must not carry a payload")


def decode_plain_event(text: str, max_depth: int) -> tuple[int | None, list[Any]] | None:
    """An EVENT on the default namespace, ``2[...]`` or ``2<ack id>[...]``: ``(ack id, payload)``.

    Nearly every packet a client sends has this shape, and `Decoder` takes
    a dozen steps for it (type lookup, binary and namespace branches, a
    regex for the ack id, a packet object).  Anything else (another packet
    type or namespace, a binary event, no array) is None and goes to the
    general `Decoder`, which gives the same packet or the same error.  A
    malformed payload raises the `ProtocolError` the general path raises.
    """
    if text[:1] != "2":
        return None
    bracket = text.find("[", 1)
    if bracket < 1:
        return None
    ack_id = None
    if bracket > 1:
        digits = text[1:bracket]
        if not (digits.isascii() and digits.isdigit()):
            return None  # a namespace, a binary count, or garbage: the general path says which
        if len(digits) > _MAX_ACK_ID_DIGITS or int(digits) > MAX_ACK_ID:
            raise ProtocolError("ack id out of range")
        ack_id = int(digits)
    payload = text[bracket:]
    data = _loads(payload)
    if type(data) is not list or not data or type(data[0]) is not str:
        raise ProtocolError("EVENT payload must be a non-empty array starting with a string")
    if payload.count("[") + payload.count("{") > max_depth:
        _scan(data, max_depth, None)
    return ack_id, data


class Decoder:
    """Reassembles packets; one per connection.

    Feed it every Socket.IO frame in order.  A BINARY_EVENT / BINARY_ACK is
    held back until all of its attachments have been fed, then returned with
    the placeholders replaced by the bytes.
    """

    __slots__ = ("max_attachments", "max_depth", "_pending", "_slots", "_buffers", "_expected")

    def __init__(self, max_attachments: int = 10, max_depth: int = 32) -> None:
        self.max_attachments = max_attachments
        self.max_depth = max_depth
        self._reset()

    def _reset(self) -> None:
        self._pending: SocketPacket | None = None
        self._slots: list[tuple[Any, Any, int]] = []
        self._buffers: list[bytes] = []
        self._expected = 0

    @property
    def waiting(self) -> bool:
        """True while a binary packet is waiting for attachments."""
        return self._pending is not None

    def feed(self, frame: str | bytes) -> SocketPacket | None:
        """Add one frame; return a complete packet or None while one is pending.

        After a ProtocolError the decoder is reset, so a caller that chooses
        to keep the connection starts again from a clean state.
        """
        try:
            if isinstance(frame, str):
                if self._pending is not None:
                    raise ProtocolError("text packet received while waiting for attachments")
                return self._feed_text(frame)
            if isinstance(frame, _BYTES_TYPES):
                return self._feed_attachment(bytes(frame))
            raise ProtocolError(f"cannot decode a frame of type {type(frame).__name__}")
        except ProtocolError:
            self._reset()
            raise

    def _feed_attachment(self, buffer: bytes) -> SocketPacket | None:
        packet = self._pending
        if packet is None:
            raise ProtocolError("binary frame received with no binary packet pending")
        self._buffers.append(buffer)
        if len(self._buffers) < self._expected:
            return None
        buffers = self._buffers
        for container, key, num in self._slots:
            container[key] = buffers[num]
        self._reset()
        return packet

    def _feed_text(self, text: str) -> SocketPacket | None:
        if not text:
            raise ProtocolError("empty packet")
        ptype = _TYPE_BY_CHAR.get(text[0])
        if ptype is None:
            raise ProtocolError(f"unknown packet type {text[0]!r}")
        pos = 1
        end = len(text)
        attachments = 0
        binary = ptype in _BINARY_TYPES

        if binary:
            match = _DIGITS.match(text, pos)
            if match is None or text[match.end() : match.end() + 1] != "-":
                raise ProtocolError("binary packet without an attachment count")
            digits = match.group().lstrip("0") or "0"
            # Compare lengths first: int() of a huge digit string is slow.
            if len(digits) > len(str(self.max_attachments)) or int(digits) > self.max_attachments:
                raise ProtocolError(f"more than {self.max_attachments} attachments")
            attachments = int(digits)
            pos = match.end() + 1

        namespace = "/"
        if text.startswith("/", pos):
            comma = text.find(",", pos)
            if comma == -1:
                comma = end
            namespace = text[pos:comma]
            if _BAD_NAMESPACE_CHAR.search(namespace) is not None:
                raise ProtocolError(f"malformed namespace {namespace[:64]!r}")
            pos = comma + 1

        ack_id = None
        match = _DIGITS.match(text, pos)
        if match is not None:
            digits = match.group()
            if len(digits) > _MAX_ACK_ID_DIGITS or int(digits) > MAX_ACK_ID:
                raise ProtocolError("ack id out of range")
            ack_id = int(digits)
            pos = match.end()

        data = _loads(text[pos:]) if pos < end else _MISSING
        _check_payload(ptype, data)

        slots: list[tuple[Any, Any, int]] = []
        if binary:
            slots = _scan(data, self.max_depth, attachments)
        elif type(data) is list or type(data) is dict:
            payload = text[pos:]
            # Only walk the value when it could possibly be too deep.
            if payload.count("[") + payload.count("{") > self.max_depth:
                _scan(data, self.max_depth, None)

        packet = SocketPacket(ptype, namespace, None if data is _MISSING else data, ack_id)
        if attachments == 0:
            return packet
        self._pending = packet
        self._slots = slots
        self._expected = attachments
        return None
