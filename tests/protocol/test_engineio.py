"""Tests for the sans-IO Engine.IO v4 codec.

Wire strings come from the Engine.IO v4 protocol document and its
conformance suite (socketio/socket.io, docs/engine.io-protocol/).
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from umoc.protocol.engineio import (
    EnginePacket,
    EnginePacketType,
    ProtocolError,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    open_packet,
)

T = EnginePacketType


class PacketTypeTests(SynchronousTestCase):
    def test_type_digits_match_the_protocol_table(self) -> None:
        self.assertEqual(
            [(t.name, int(t)) for t in EnginePacketType],
            [
                ("OPEN", 0),
                ("CLOSE", 1),
                ("PING", 2),
                ("PONG", 3),
                ("MESSAGE", 4),
                ("UPGRADE", 5),
                ("NOOP", 6),
            ],
        )

    def test_packets_are_immutable_and_comparable(self) -> None:
        packet = EnginePacket(T.MESSAGE, "hello")
        self.assertEqual(packet, EnginePacket(T.MESSAGE, "hello"))
        self.assertIsNone(EnginePacket(T.PING).data)
        with self.assertRaises(AttributeError):
            packet.data = "other"  # type: ignore[misc]


class HandshakeTests(SynchronousTestCase):
    def test_open_packet_matches_the_documented_handshake(self) -> None:
        packet = open_packet("lv_VI97HAXpY6yYWAAAC", ["websocket"], 25000, 20000, 1000000)
        self.assertEqual(packet.type, T.OPEN)
        self.assertEqual(
            encode_packet(packet),
            '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
            '"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}',
        )

    def test_open_packet_matches_the_sample_session_response_body(self) -> None:
        packet = open_packet("lv_VI97HAXpY6yYWAAAC", ["websocket"], 25000, 5000, 1000000)
        self.assertEqual(
            encode_payload([packet]),
            '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
            '"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}',
        )

    def test_open_packet_has_exactly_the_keys_the_conformance_suite_checks(self) -> None:
        # The suite's server runs with pingInterval 300, pingTimeout 200,
        # maxPayload 1e6, and a WebSocket-only session offers no upgrades.
        frame = encode_packet(open_packet("abc", [], 300, 200, 1000000))
        self.assertTrue(frame.startswith("0"))
        value = json.loads(frame[1:])
        self.assertEqual(list(value), ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"])
        self.assertEqual(
            value,
            {
                "sid": "abc",
                "upgrades": [],
                "pingInterval": 300,
                "pingTimeout": 200,
                "maxPayload": 1000000,
            },
        )

    def test_open_packet_decodes_back_to_an_open_packet(self) -> None:
        packet = open_packet("s1", ["websocket"], 1, 2, 3)
        self.assertEqual(decode_packet(encode_packet(packet)), packet)


class WebSocketFrameTests(SynchronousTestCase):
    """One packet per WebSocket frame."""

    examples: list[tuple[str, EnginePacket]] = [
        ("0", EnginePacket(T.OPEN)),
        ("1", EnginePacket(T.CLOSE)),
        ("2", EnginePacket(T.PING)),
        ("3", EnginePacket(T.PONG)),
        ("4hello", EnginePacket(T.MESSAGE, "hello")),
        ("5", EnginePacket(T.UPGRADE)),
        ("6", EnginePacket(T.NOOP)),
        ("2probe", EnginePacket(T.PING, "probe")),
        ("3probe", EnginePacket(T.PONG, "probe")),
        ('42["hello"]', EnginePacket(T.MESSAGE, '42["hello"]'[1:])),
        ("40/admin,", EnginePacket(T.MESSAGE, "0/admin,")),
        ("4€", EnginePacket(T.MESSAGE, "€")),
    ]

    def test_documented_frames_decode_to_packets(self) -> None:
        for frame, packet in self.examples:
            self.assertEqual(decode_packet(frame), packet, frame)

    def test_packets_encode_to_documented_frames(self) -> None:
        for frame, packet in self.examples:
            self.assertEqual(encode_packet(packet), frame, frame)

    def test_decoded_type_is_the_enum_member(self) -> None:
        self.assertIs(decode_packet("2").type, T.PING)
        self.assertIs(decode_packet("4x").type, T.MESSAGE)

    def test_upgrade_sequence_from_the_protocol_document(self) -> None:
        # client: 2probe, server: 3probe, client: 5
        self.assertEqual(decode_packet("2probe"), EnginePacket(T.PING, "probe"))
        self.assertEqual(encode_packet(EnginePacket(T.PONG, "probe")), "3probe")
        self.assertEqual(decode_packet("5"), EnginePacket(T.UPGRADE))
        # A pending GET is closed with a noop.
        self.assertEqual(encode_payload([EnginePacket(T.NOOP)]), "6")

    def test_binary_frame_is_a_message_with_raw_bytes(self) -> None:
        self.assertEqual(decode_packet(b"\x01\x02\x03\x04"), EnginePacket(T.MESSAGE, b"\x01\x02\x03\x04"))
        self.assertEqual(decode_packet(bytearray(b"\x01")), EnginePacket(T.MESSAGE, b"\x01"))
        self.assertEqual(decode_packet(b""), EnginePacket(T.MESSAGE, b""))

    def test_binary_message_encodes_as_raw_bytes_without_prefix(self) -> None:
        frame = encode_packet(EnginePacket(T.MESSAGE, b"\x01\x02\x03\x04"))
        self.assertEqual(frame, b"\x01\x02\x03\x04")
        self.assertIsInstance(frame, bytes)

    def test_empty_message_round_trips_as_a_bare_type_digit(self) -> None:
        self.assertEqual(encode_packet(EnginePacket(T.MESSAGE, "")), "4")
        self.assertEqual(decode_packet("4"), EnginePacket(T.MESSAGE))

    def test_binary_data_on_a_non_message_packet_is_refused(self) -> None:
        self.assertRaises(ValueError, encode_packet, EnginePacket(T.PING, b"x"))

    def test_invalid_packet_format_abc_is_a_protocol_error(self) -> None:
        # The conformance suite sends "abc" and expects the session closed.
        self.assertRaises(ProtocolError, decode_packet, "abc")

    def test_empty_text_frame_is_a_protocol_error(self) -> None:
        self.assertRaises(ProtocolError, decode_packet, "")

    def test_unknown_type_digits_are_protocol_errors(self) -> None:
        for frame in ["7", "8hello", "9", "b", "bAQIDBA==", " 4", "-1", "٤hello"]:
            self.assertRaises(ProtocolError, decode_packet, frame)

    def test_non_frame_input_is_a_protocol_error(self) -> None:
        self.assertRaises(ProtocolError, decode_packet, 4)  # type: ignore[arg-type]
        self.assertRaises(ProtocolError, decode_packet, None)  # type: ignore[arg-type]

    def test_protocol_error_is_a_value_error(self) -> None:
        self.assertTrue(issubclass(ProtocolError, ValueError))


class PollingPayloadTests(SynchronousTestCase):
    """Packets joined with \\x1e, binary as b + base64."""

    def test_documented_payload_with_ping_between_messages(self) -> None:
        packets = [
            EnginePacket(T.MESSAGE, "hello"),
            EnginePacket(T.PING),
            EnginePacket(T.MESSAGE, "world"),
        ]
        self.assertEqual(decode_payload("4hello\x1e2\x1e4world"), packets)
        self.assertEqual(encode_payload(packets), "4hello\x1e2\x1e4world")

    def test_documented_payload_with_base64_binary(self) -> None:
        packets = [EnginePacket(T.MESSAGE, "hello"), EnginePacket(T.MESSAGE, b"\x01\x02\x03\x04")]
        self.assertEqual(decode_payload("4hello\x1ebAQIDBA=="), packets)
        self.assertEqual(encode_payload(packets), "4hello\x1ebAQIDBA==")

    def test_conformance_payloads_echo_unchanged(self) -> None:
        for body in ["4hello", "4test1\x1e4test2\x1e4test3", "4hello\x1ebAQIDBA==", "2", "3", "1", "6"]:
            self.assertEqual(encode_payload(decode_payload(body)), body, body)

    def test_sample_session_post_body_holds_two_socketio_events(self) -> None:
        self.assertEqual(
            decode_payload('42["hello"]\x1e42["world"]'),
            [EnginePacket(T.MESSAGE, '2["hello"]'), EnginePacket(T.MESSAGE, '2["world"]')],
        )

    def test_sample_session_poll_bodies(self) -> None:
        self.assertEqual(decode_payload("40"), [EnginePacket(T.MESSAGE, "0")])
        self.assertEqual(
            decode_payload('40{"sid":"wZX3oN0bSVIhsaknAAAI"}'),
            [EnginePacket(T.MESSAGE, '0{"sid":"wZX3oN0bSVIhsaknAAAI"}')],
        )
        self.assertEqual(decode_payload('42["hey","Jude"]'), [EnginePacket(T.MESSAGE, '2["hey","Jude"]')])

    def test_bytes_body_is_decoded_as_utf8(self) -> None:
        # The v3 -> v4 note: "€" is 3 bytes in UTF-8, which is why v4 dropped
        # length prefixes in favour of the separator.
        self.assertEqual(
            decode_payload("4€\x1e4x".encode()),
            [
                EnginePacket(T.MESSAGE, "€"),
                EnginePacket(T.MESSAGE, "x"),
            ],
        )
        self.assertEqual(decode_payload(bytearray(b"2")), [EnginePacket(T.PING)])

    def test_empty_binary_packet_is_an_empty_message(self) -> None:
        self.assertEqual(decode_payload("b"), [EnginePacket(T.MESSAGE, b"")])
        self.assertEqual(encode_payload([EnginePacket(T.MESSAGE, b"")]), "b")

    def test_encoding_no_packets_gives_an_empty_body(self) -> None:
        self.assertEqual(encode_payload([]), "")

    def test_payload_accepts_any_iterable(self) -> None:
        self.assertEqual(encode_payload(EnginePacket(T.PING) for _ in range(2)), "2\x1e2")

    def test_record_separator_inside_data_is_refused_when_encoding(self) -> None:
        self.assertRaises(ValueError, encode_payload, [EnginePacket(T.MESSAGE, "a\x1eb")])

    def test_invalid_packet_format_abc_is_a_protocol_error(self) -> None:
        self.assertRaises(ProtocolError, decode_payload, "abc")
        self.assertRaises(ProtocolError, decode_payload, "4hello\x1eabc")

    def test_empty_body_and_empty_segments_are_protocol_errors(self) -> None:
        for body in ["", "\x1e", "4a\x1e", "\x1e4a", "4a\x1e\x1e4b"]:
            self.assertRaises(ProtocolError, decode_payload, body)

    def test_invalid_utf8_is_a_protocol_error(self) -> None:
        for body in [b"4\xff", b"4\xc3", b"4\xed\xa0\x80"]:
            self.assertRaises(ProtocolError, decode_payload, body)

    def test_invalid_base64_is_a_protocol_error(self) -> None:
        for segment in ["b!!!!", "bAQIDBA", "bAQ==AQ==", "b====", "b AQID", "bAQID\n", "bé"]:
            self.assertRaises(ProtocolError, decode_payload, "4ok\x1e" + segment)

    def test_non_payload_input_is_a_protocol_error(self) -> None:
        self.assertRaises(ProtocolError, decode_payload, None)  # type: ignore[arg-type]

    def test_max_packets_allows_up_to_the_limit(self) -> None:
        self.assertEqual(len(decode_payload("2\x1e2\x1e2", max_packets=3)), 3)

    def test_max_packets_exceeded_is_a_protocol_error(self) -> None:
        self.assertRaises(ProtocolError, decode_payload, "2\x1e2\x1e2\x1e2", max_packets=3)
        self.assertRaises(ProtocolError, decode_payload, "\x1e" * 1_000_000, max_packets=10)

    def test_binary_on_a_non_message_packet_is_refused(self) -> None:
        self.assertRaises(ValueError, encode_payload, [EnginePacket(T.PONG, b"x")])


_packet_types = st.sampled_from(list(EnginePacketType))
_text_data = st.none() | st.text().filter(lambda s: "\x1e" not in s and s != "")
_packets = st.builds(EnginePacket, _packet_types, _text_data) | st.builds(EnginePacket, st.just(T.MESSAGE), st.binary())


class PropertyTests(SynchronousTestCase):
    @given(st.text())
    def test_decode_packet_on_any_text_raises_only_protocol_error(self, frame: str) -> None:
        try:
            packet = decode_packet(frame)
        except ProtocolError:
            return
        self.assertEqual(encode_packet(packet), frame)

    @given(st.binary())
    def test_decode_packet_on_any_bytes_is_a_binary_message(self, frame: bytes) -> None:
        self.assertEqual(decode_packet(frame), EnginePacket(T.MESSAGE, frame))

    @given(st.text() | st.binary(), st.none() | st.integers(min_value=1, max_value=20))
    def test_decode_payload_on_anything_raises_only_protocol_error(
        self, body: str | bytes, max_packets: int | None
    ) -> None:
        try:
            decode_payload(body, max_packets=max_packets)
        except ProtocolError:
            pass

    @given(st.text(alphabet="0123456789b4AQIDBA=\x1e"))
    def test_decode_payload_on_near_miss_bodies_raises_only_protocol_error(self, body: str) -> None:
        try:
            decode_payload(body)
        except ProtocolError:
            pass

    @given(_packets)
    def test_websocket_frame_round_trip(self, packet: EnginePacket) -> None:
        self.assertEqual(decode_packet(encode_packet(packet)), packet)

    @settings(max_examples=200)
    @given(st.lists(_packets, min_size=1, max_size=10))
    def test_polling_payload_round_trip(self, packets: list[EnginePacket]) -> None:
        body = encode_payload(packets)
        self.assertEqual(decode_payload(body), packets)
        self.assertEqual(decode_payload(body.encode("utf-8")), packets)
