"""The common WebSocket frames, tested with RFC 6455's own wire examples (section 5.7)."""

from __future__ import annotations

from twisted.trial import unittest

from umoc.protocol import websocket
from umoc.protocol.websocket import encode_frame, parse_client_frame, unmask, unmask_pure, unmask_wsaccel

#: RFC 6455 5.7: "A single-frame masked text message" containing "Hello".
MASKED_HELLO = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
#: RFC 6455 5.7: "A single-frame unmasked text message" containing "Hello".
UNMASKED_HELLO = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])


def masked(first: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    size = len(payload)
    header = bytes([first, 0x80 | size]) if size < 126 else bytes([first, 0x80 | 126, size >> 8, size & 0xFF])
    return header + mask + unmask(payload, mask)


def rfc_xor(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class UnmaskTests(unittest.TestCase):
    """Both implementations give the RFC's XOR; wsaccel's is the one used when it is installed."""

    SIZES = (0, 1, 3, 4, 5, 125, 126, 127, 1000, 4099, 65535)

    def implementations(self) -> list:
        found = [unmask_pure]
        if websocket._XorMasker is not None:
            found.append(unmask_wsaccel)
        return found

    def test_the_rfc_hello(self) -> None:
        for impl in self.implementations():
            self.assertEqual(impl(MASKED_HELLO[6:], MASKED_HELLO[2:6]), b"Hello", impl)

    def test_every_size_and_offset_of_the_mask(self) -> None:
        payload = bytes(range(256)) * 257
        mask = b"\x37\xfa\x21\x3d"
        for impl in self.implementations():
            for size in self.SIZES:
                self.assertEqual(impl(payload[:size], mask), rfc_xor(payload[:size], mask), (impl, size))

    def test_wsaccel_is_used_when_installed(self) -> None:
        try:
            import wsaccel.xormask  # noqa: F401
        except ImportError:
            self.assertIs(unmask, unmask_pure)
        else:
            self.assertIs(unmask, unmask_wsaccel)


class ParseClientFrameTests(unittest.TestCase):
    def test_the_rfc_masked_hello(self) -> None:
        self.assertEqual(parse_client_frame(MASKED_HELLO, 65535), ("Hello", 11, 5))

    def test_trailing_bytes_are_left_for_the_next_frame(self) -> None:
        frame, consumed, _ = parse_client_frame(MASKED_HELLO + MASKED_HELLO[:3], 65535)
        self.assertEqual((frame, consumed), ("Hello", 11))

    def test_a_partial_frame_waits_for_more_bytes(self) -> None:
        for cut in range(len(MASKED_HELLO)):
            self.assertIsNone(parse_client_frame(MASKED_HELLO[:cut], 65535), cut)

    def test_binary_and_16_bit_lengths(self) -> None:
        payload = bytes(range(256)) * 2
        data = masked(0x82, payload)
        self.assertEqual(data[1:4], b"\xfe\x02\x00")
        self.assertEqual(parse_client_frame(data, 65535), (payload, len(data), 512))

    def test_everything_uncommon_is_left_to_the_general_parser(self) -> None:
        cases = {
            "unmasked (a protocol violation)": UNMASKED_HELLO + b"\x00" * 4,
            "a fragment (FIN clear)": bytes([0x01]) + MASKED_HELLO[1:],
            "a control frame (ping)": bytes([0x89]) + MASKED_HELLO[1:],
            "a reserved bit": bytes([0xC1]) + MASKED_HELLO[1:],
            "a 64-bit length": bytes([0x81, 0xFF]) + b"\x00" * 12,
            "a non-minimal 16-bit length": bytes([0x81, 0xFE, 0x00, 0x05]) + MASKED_HELLO[2:],
            "invalid UTF-8": masked(0x81, b"\xff\xfe"),
            "over the payload limit": masked(0x81, b"x" * 100),
        }
        for name, data in cases.items():
            self.assertIsNone(parse_client_frame(data, 99), name)


class EncodeFrameTests(unittest.TestCase):
    def test_the_rfc_unmasked_hello(self) -> None:
        self.assertEqual(encode_frame("Hello"), UNMASKED_HELLO)

    def test_binary_and_lengths_at_the_boundaries(self) -> None:
        self.assertEqual(encode_frame(b"\x00\x01"), b"\x82\x02\x00\x01")
        self.assertEqual(encode_frame("a" * 125)[:2], b"\x81\x7d")
        self.assertEqual(encode_frame("a" * 126)[:4], b"\x81\x7e\x00\x7e")
        self.assertEqual(encode_frame(b"b" * 65536)[:10], b"\x82\x7f" + (65536).to_bytes(8, "big"))
