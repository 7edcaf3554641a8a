"""Tests for the sans-IO Socket.IO v5 codec.

Wire strings come from the Socket.IO v5 protocol document and its
conformance suite (socketio/socket.io, docs/socket.io-protocol/).  Frames
here are Socket.IO level: the Engine.IO "4" prefix is already stripped, so
the suite's '42["foo"]' appears as '2["foo"]'.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from umoc.protocol.engineio import ProtocolError as EngineProtocolError
from umoc.protocol.socketio import (
    MAX_ACK_ID,
    Decoder,
    PacketType,
    ProtocolError,
    SocketPacket,
    decode_plain_event,
    encode,
    encode_event,
    plain_ack_text,
)

P = PacketType
BUF = b"\x01\x02\x03\x04"


def placeholder(num: int) -> str:
    return f'{{"_placeholder":true,"num":{num}}}'


def decode_all(*frames: str | bytes, decoder: Decoder | None = None) -> SocketPacket:
    """Feed frames; the last one must complete a packet, the others must not."""
    decoder = decoder or Decoder()
    for frame in frames[:-1]:
        assert decoder.feed(frame) is None, frame
    packet = decoder.feed(frames[-1])
    assert packet is not None
    return packet


# (packet, frames) pairs that must encode to, and decode from, exactly these frames.
DOCUMENT_EXAMPLES: list[tuple[SocketPacket, list[str | bytes]]] = [
    # Packet encoding / connection to a namespace
    (SocketPacket(P.CONNECT), ["0"]),
    (
        SocketPacket(P.CONNECT, "/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}),
        ['0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}'],
    ),
    (
        SocketPacket(P.CONNECT_ERROR, "/", {"message": "Not authorized"}),
        ['4{"message":"Not authorized"}'],
    ),
    # Exchange protocol / connection examples
    (SocketPacket(P.CONNECT, "/", {"sid": "wZX3oN0bSVIhsaknAAAI"}), ['0{"sid":"wZX3oN0bSVIhsaknAAAI"}']),
    (SocketPacket(P.CONNECT, "/admin"), ["0/admin,"]),
    (SocketPacket(P.CONNECT, "/admin", {"token": "123"}), ['0/admin,{"token":"123"}']),
    (
        SocketPacket(P.CONNECT, "/admin", {"sid": "iLnRaVGHY4B75TeVAAAB"}),
        ['0/admin,{"sid":"iLnRaVGHY4B75TeVAAAB"}'],
    ),
    # Sending and receiving data
    (SocketPacket(P.EVENT, "/", ["foo"]), ['2["foo"]']),
    (SocketPacket(P.EVENT, "/", ["bar"]), ['2["bar"]']),
    (SocketPacket(P.EVENT, "/admin", ["bar"]), ['2/admin,["bar"]']),
    (
        SocketPacket(P.BINARY_EVENT, "/", ["baz", BUF]),
        ['51-["baz",' + placeholder(0) + "]", BUF],
    ),
    (
        SocketPacket(P.BINARY_EVENT, "/admin", ["baz", b"\x01\x02", b"\x03\x04"]),
        [
            '52-/admin,["baz",' + placeholder(0) + "," + placeholder(1) + "]",
            b"\x01\x02",
            b"\x03\x04",
        ],
    ),
    # Acknowledgement
    (SocketPacket(P.EVENT, "/", ["foo"], 12), ['212["foo"]']),
    (SocketPacket(P.ACK, "/", [], 12), ["312[]"]),
    (SocketPacket(P.EVENT, "/admin", ["foo"], 13), ['2/admin,13["foo"]']),
    (SocketPacket(P.ACK, "/admin", ["bar"], 13), ['3/admin,13["bar"]']),
    (
        SocketPacket(P.BINARY_EVENT, "/", ["foo", BUF], 14),
        ['51-14["foo",' + placeholder(0) + "]", BUF],
    ),
    (SocketPacket(P.ACK, "/", ["bar"], 14), ['314["bar"]']),
    (SocketPacket(P.EVENT, "/", ["foo"], 15), ['215["foo"]']),
    (
        SocketPacket(P.BINARY_ACK, "/", ["bar", BUF], 15),
        ['61-15["bar",' + placeholder(0) + "]", BUF],
    ),
    # Disconnection
    (SocketPacket(P.DISCONNECT), ["1"]),
    (SocketPacket(P.DISCONNECT, "/admin"), ["1/admin,"]),
    # Sample session (Engine.IO "4" stripped)
    (SocketPacket(P.EVENT, "/", ["hey", "Jude"]), ['2["hey","Jude"]']),
    (SocketPacket(P.EVENT, "/", ["hello"]), ['2["hello"]']),
    (SocketPacket(P.EVENT, "/", ["world"]), ['2["world"]']),
    (
        SocketPacket(P.CONNECT, "/admin", {"sid": "-G5j-67EZFp-q59rADQM"}),
        ['0/admin,{"sid":"-G5j-67EZFp-q59rADQM"}'],
    ),
    (SocketPacket(P.EVENT, "/admin", ["tellme"], 1), ['2/admin,1["tellme"]']),
    (
        SocketPacket(P.BINARY_ACK, "/admin", [b"\xff"], 1),
        ["61-/admin,1[" + placeholder(0) + "]", b"\xff"],
    ),
    # Conformance suite
    (SocketPacket(P.CONNECT, "/", {"token": "123"}), ['0{"token":"123"}']),
    (SocketPacket(P.CONNECT, "/custom"), ["0/custom,"]),
    (SocketPacket(P.CONNECT, "/custom", {"token": "abc"}), ['0/custom,{"token":"abc"}']),
    (
        SocketPacket(P.CONNECT_ERROR, "/random", {"message": "Invalid namespace"}),
        ['4/random,{"message":"Invalid namespace"}'],
    ),
    (SocketPacket(P.EVENT, "/", ["auth", {}]), ['2["auth",{}]']),
    (SocketPacket(P.EVENT, "/", ["auth", {"token": "123"}]), ['2["auth",{"token":"123"}]']),
    (SocketPacket(P.EVENT, "/custom", ["auth", {}]), ['2/custom,["auth",{}]']),
    (
        SocketPacket(P.EVENT, "/custom", ["auth", {"token": "abc"}]),
        ['2/custom,["auth",{"token":"abc"}]'],
    ),
    (
        SocketPacket(P.EVENT, "/", ["message", "message to main namespace"]),
        ['2["message","message to main namespace"]'],
    ),
    (
        SocketPacket(P.EVENT, "/", ["message-back", "message to main namespace"]),
        ['2["message-back","message to main namespace"]'],
    ),
    (
        SocketPacket(P.EVENT, "/", ["message", 1, "2", {"3": [True]}]),
        ['2["message",1,"2",{"3":[true]}]'],
    ),
    (
        SocketPacket(P.BINARY_EVENT, "/", ["message", b"\x01\x02\x03", b"\x04\x05\x06"]),
        [
            '52-["message",' + placeholder(0) + "," + placeholder(1) + "]",
            b"\x01\x02\x03",
            b"\x04\x05\x06",
        ],
    ),
    (
        SocketPacket(P.EVENT, "/", ["message-with-ack", 1, "2", {"3": [False]}], 456),
        ['2456["message-with-ack",1,"2",{"3":[false]}]'],
    ),
    (SocketPacket(P.ACK, "/", [1, "2", {"3": [False]}], 456), ['3456[1,"2",{"3":[false]}]']),
    (
        SocketPacket(P.BINARY_EVENT, "/", ["message-with-ack", b"\x01\x02\x03", b"\x04\x05\x06"], 789),
        [
            '52-789["message-with-ack",' + placeholder(0) + "," + placeholder(1) + "]",
            b"\x01\x02\x03",
            b"\x04\x05\x06",
        ],
    ),
    (
        SocketPacket(P.BINARY_ACK, "/", [b"\x01\x02\x03", b"\x04\x05\x06"], 789),
        [
            "62-789[" + placeholder(0) + "," + placeholder(1) + "]",
            b"\x01\x02\x03",
            b"\x04\x05\x06",
        ],
    ),
]


class PacketTypeTests(SynchronousTestCase):
    def test_type_digits_match_the_protocol_table(self) -> None:
        self.assertEqual(
            [(t.name, int(t)) for t in PacketType],
            [
                ("CONNECT", 0),
                ("DISCONNECT", 1),
                ("EVENT", 2),
                ("ACK", 3),
                ("CONNECT_ERROR", 4),
                ("BINARY_EVENT", 5),
                ("BINARY_ACK", 6),
            ],
        )

    def test_protocol_error_is_shared_with_engineio(self) -> None:
        self.assertIs(ProtocolError, EngineProtocolError)

    def test_packet_defaults_to_main_namespace_without_data_or_ack(self) -> None:
        self.assertEqual(SocketPacket(P.CONNECT), SocketPacket(P.CONNECT, "/", None, None))


class DocumentExampleTests(SynchronousTestCase):
    def test_every_documented_packet_encodes_to_its_frames(self) -> None:
        for packet, frames in DOCUMENT_EXAMPLES:
            self.assertEqual(encode(packet), frames, packet)

    def test_every_documented_frame_sequence_decodes_to_its_packet(self) -> None:
        for packet, frames in DOCUMENT_EXAMPLES:
            self.assertEqual(decode_all(*frames), packet, frames)

    def test_one_decoder_handles_the_whole_example_stream(self) -> None:
        decoder = Decoder()
        for packet, frames in DOCUMENT_EXAMPLES:
            self.assertEqual(decode_all(*frames, decoder=decoder), packet, frames)

    def test_namespace_without_trailing_comma_is_accepted(self) -> None:
        # The conformance suite connects with "40/random" and "40/custom" and
        # disconnects with "41/custom": no comma when nothing follows.
        self.assertEqual(decode_all("0/random"), SocketPacket(P.CONNECT, "/random"))
        self.assertEqual(decode_all("0/custom"), SocketPacket(P.CONNECT, "/custom"))
        self.assertEqual(decode_all("1/custom"), SocketPacket(P.DISCONNECT, "/custom"))

    def test_explicit_main_namespace_is_accepted(self) -> None:
        self.assertEqual(decode_all('0/,{"a":1}'), SocketPacket(P.CONNECT, "/", {"a": 1}))

    def test_binary_packet_decodes_with_attachments_in_placeholder_order(self) -> None:
        decoder = Decoder()
        text = '52-["x",' + placeholder(1) + ',{"k":' + placeholder(0) + "}]"
        self.assertIsNone(decoder.feed(text))
        self.assertTrue(decoder.waiting)
        self.assertIsNone(decoder.feed(b"first"))
        packet = decoder.feed(b"second")
        self.assertFalse(decoder.waiting)
        self.assertEqual(packet, SocketPacket(P.BINARY_EVENT, "/", ["x", b"second", {"k": b"first"}]))

    def test_binary_packet_with_zero_attachments_completes_at_once(self) -> None:
        self.assertEqual(decode_all('50-["x"]'), SocketPacket(P.BINARY_EVENT, "/", ["x"]))

    def test_ack_id_up_to_max_safe_integer_is_accepted(self) -> None:
        packet = decode_all(f'2{MAX_ACK_ID}["x"]')
        self.assertEqual(packet.id, 2**53 - 1)

    def test_json_payload_details_survive_decoding(self) -> None:
        packet = decode_all('2["é😀",{"b":1,"a":[null,1.5,-2,true]}," x"]')
        self.assertEqual(packet.data, ["é😀", {"b": 1, "a": [None, 1.5, -2, True]}, " x"])
        self.assertEqual(list(packet.data[1]), ["b", "a"])

    def test_escaped_surrogate_pair_decodes_to_one_character(self) -> None:
        self.assertEqual(decode_all('2["\\ud83d\\ude00"]').data, ["😀"])

    def test_connect_error_with_string_payload_is_accepted(self) -> None:
        # v4 and earlier servers sent a plain string; decoders still accept it.
        self.assertEqual(decode_all('4"Not authorized"'), SocketPacket(P.CONNECT_ERROR, "/", "Not authorized"))

    def test_payload_nested_to_exactly_max_depth_is_accepted(self) -> None:
        text = '2["x",' + "[" * 31 + "]" * 31 + "]"
        self.assertIsNotNone(Decoder(max_depth=32).feed(text))


class EncodeTests(SynchronousTestCase):
    def test_encode_event_builds_an_event_array(self) -> None:
        self.assertEqual(encode_event("hey", "Jude"), ['2["hey","Jude"]'])
        self.assertEqual(encode_event("foo"), ['2["foo"]'])

    def test_encode_event_with_namespace_and_ack_id(self) -> None:
        self.assertEqual(encode_event("tellme", namespace="/admin", ack_id=1), ['2/admin,1["tellme"]'])
        self.assertEqual(encode_event("foo", ack_id=0), ['20["foo"]'])

    def test_encode_event_with_bytes_becomes_binary_event(self) -> None:
        self.assertEqual(encode_event("baz", BUF), ['51-["baz",' + placeholder(0) + "]", BUF])

    def test_bytes_anywhere_are_extracted_in_document_order(self) -> None:
        frames = encode_event("e", {"a": b"A", "list": [1, bytearray(b"B")]}, memoryview(b"C"))
        self.assertEqual(
            frames,
            [
                '53-["e",{"a":' + placeholder(0) + ',"list":[1,' + placeholder(1) + "]}," + placeholder(2) + "]",
                b"A",
                b"B",
                b"C",
            ],
        )
        for attachment in frames[1:]:
            self.assertIs(type(attachment), bytes)

    def test_ack_with_bytes_becomes_binary_ack(self) -> None:
        self.assertEqual(
            encode(SocketPacket(P.ACK, "/", ["bar", BUF], 15)),
            ['61-15["bar",' + placeholder(0) + "]", BUF],
        )

    def test_binary_type_without_bytes_writes_zero_attachments(self) -> None:
        self.assertEqual(encode(SocketPacket(P.BINARY_EVENT, "/", ["x"])), ['50-["x"]'])

    def test_json_is_compact_unescaped_and_keeps_key_order(self) -> None:
        self.assertEqual(
            encode_event("m", {"z": 1, "a": "é€😀", "t": (1, 2)}),
            ['2["m",{"z":1,"a":"é€😀","t":[1,2]}]'],
        )

    def test_control_characters_are_escaped_so_polling_framing_is_safe(self) -> None:
        frame = encode_event("m", "a\x1eb")[0]
        self.assertNotIn("\x1e", frame)
        self.assertEqual(decode_all(frame).data, ["m", "a\x1eb"])

    def test_nan_and_infinity_are_sent_as_null_as_javascript_does(self) -> None:
        """JSON has no NaN or infinity: JSON.stringify (the reference server) writes null; so do we, every path."""
        self.assertEqual(encode_event("m", float("nan")), ['2["m",null]'])
        self.assertEqual(encode_event("m", float("inf")), ['2["m",null]'])
        self.assertEqual(
            encode_event("m", {"a": None, "b": {"c": ({"d": [1.5, -float("inf")]},)}}),
            ['2["m",{"a":null,"b":{"c":[{"d":[1.5,null]}]}}]'],
        )
        # The standard encoder's paths too: an integer past 64 bits (orjson refuses it) and binary attachments.
        self.assertEqual(encode_event("m", [2**70, float("nan")]), [f'2["m",[{2**70},null]]'])
        self.assertEqual(
            encode_event("m", {"f": b"\x01", "x": float("-inf")}),
            ['51-["m",{"f":{"_placeholder":true,"num":0},"x":null}]', b"\x01"],
        )
        self.assertEqual(encode(SocketPacket(P.CONNECT, "/", {"x": float("nan")})), ['0{"x":null}'])
        self.assertEqual(encode_event("m", {"a": None, "b": [1.5, "null"]}), ['2["m",{"a":null,"b":[1.5,"null"]}]'])

    def test_output_is_the_standard_json_encoders_whatever_the_codec(self) -> None:
        import json

        values: list[Any] = [
            {"text": 'héllo \u2028 "quoted"', "n": -0.5, "big": 2**70, "none": None, "t": True},
            {1: "non-str key"},
            [1e16, 1.5, 0.1, 10**18],
            ("tuple", ["nested", {"x": []}]),
            "\x00\x7f\U0001f600",
        ]
        for value in values:
            expected = json.dumps(["m", value], ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            self.assertEqual(encode_event("m", value), ["2" + expected], value)

    def test_unserialisable_values_raise_type_error(self) -> None:
        self.assertRaises(TypeError, encode_event, "m", {1, 2})
        self.assertRaises(TypeError, encode, SocketPacket(P.CONNECT, "/", {"b": b"x"}))

    def test_namespace_with_comma_is_refused(self) -> None:
        self.assertRaises(ValueError, encode_event, "m", namespace="/a,b")

    def test_connect_error_with_string_payload(self) -> None:
        self.assertEqual(encode(SocketPacket(P.CONNECT_ERROR, "/", "nope")), ['4"nope"'])

    def test_result_is_reusable_across_recipients(self) -> None:
        # encode_event returns fresh, independent lists of immutable frames.
        first = encode_event("m", 1)
        second = encode_event("m", 1)
        self.assertEqual(first, second)
        self.assertIsNot(first, second)


class DecodeValueTests(SynchronousTestCase):
    def test_numbers_are_read_as_the_standard_decoder_reads_them(self) -> None:
        packet = Decoder().feed('2["m",123456789012345678901234567890,-9223372036854775809,1.5,-0,1e5]')
        assert packet is not None
        self.assertEqual(packet.data, ["m", 123456789012345678901234567890, -9223372036854775809, 1.5, 0, 100000.0])
        self.assertEqual([type(v) for v in packet.data[1:]], [int, int, float, int, float])


class DecodeErrorTests(SynchronousTestCase):
    """Each malformed input raises ProtocolError (the server closes the connection)."""

    def assertRejected(self, *frames: str | bytes, decoder: Decoder | None = None) -> None:
        decoder = decoder or Decoder()
        for frame in frames[:-1]:
            decoder.feed(frame)
        self.assertRaises(ProtocolError, decoder.feed, frames[-1])
        # After the error the decoder is clean and usable again.
        self.assertFalse(decoder.waiting)
        self.assertEqual(decoder.feed('2["ok"]'), SocketPacket(P.EVENT, "/", ["ok"]))

    def test_unknown_packet_type(self) -> None:
        # Conformance suite: "4abc" closes the connection.
        for text in ["abc", "7", "9[]", "", ' 2["x"]', "-1"]:
            self.assertRejected(text)

    def test_invalid_ack_id(self) -> None:
        # Conformance suite: '42abc["message-with-ack",...]' closes the connection.
        for text in [
            '2abc["message-with-ack",1,"2",{"3":[false]}]',
            '21.5["x"]',
            '2-1["x"]',
            '2 1["x"]',
            '2/admin,x1["x"]',
        ]:
            self.assertRejected(text)

    def test_absurd_ack_id(self) -> None:
        self.assertRejected(f'2{MAX_ACK_ID + 1}["x"]')
        self.assertRejected("2" + "9" * 17 + '["x"]')
        start = time.thread_time()
        self.assertRejected("2" + "9" * 1_000_000 + '["x"]')
        self.assertLess(time.thread_time() - start, 1.0)

    def test_invalid_json(self) -> None:
        for text in [
            '2["foo"',
            '2["foo"]]',
            "2[foo]",
            "2['foo']",
            '2["a",NaN]',
            '2["a",Infinity]',
            '2["a",-Infinity]',
            '2["a",1e999]',
            '0{"a":1,}',
            '2["a"] x',
        ]:
            self.assertRejected(text)

    def test_integer_too_long_for_python_is_a_protocol_error(self) -> None:
        self.assertRejected('2["a",' + "1" * 5000 + "]")

    def test_lone_surrogate_in_payload(self) -> None:
        # Would decode, but could never be re-encoded to UTF-8 for a broadcast.
        self.assertRejected('2["a","\\ud800"]')
        self.assertRejected('2["a","\\uDC00x"]')
        self.assertRejected('2["a",{"\\ud800":1}]')
        self.assertRejected('2["a","\ud800"]')

    def test_hostile_deep_nesting_fails_fast_without_recursion_error(self) -> None:
        # "Fast" in this thread's CPU time (here and in the other bounds of this file): the work the decoder does,
        # not the wall-clock a loaded machine stretches by running other processes meanwhile.
        for text in [
            "2" + "[" * 100_000,
            "2" + "[" * 100_000 + "]" * 100_000,
            "0" + '{"a":' * 50_000,
            "52-" + "[" * 100_000,
        ]:
            start = time.thread_time()
            self.assertRejected(text)
            self.assertLess(time.thread_time() - start, 1.0)

    def test_nesting_deeper_than_max_depth(self) -> None:
        text = '2["x",' + "[" * 32 + "]" * 32 + "]"
        self.assertRejected(text, decoder=Decoder(max_depth=32))
        self.assertRejected('3[{"a":[{"b":[1]}]}]', decoder=Decoder(max_depth=4))
        self.assertRejected('51-["x",[[' + placeholder(0) + "]]]", decoder=Decoder(max_depth=2))
        # Brackets inside strings do not count.
        self.assertIsNotNone(Decoder(max_depth=2).feed('2["[[[[{{{{"]'))

    def test_event_payload_that_is_not_an_array(self) -> None:
        # Conformance suite: '42{}' closes the connection.
        for text in ["2{}", '2"foo"', "21", "2null", "2", "212", "2/admin,", '50-{"a":1}']:
            self.assertRejected(text)

    def test_event_payload_that_is_an_empty_array(self) -> None:
        self.assertRejected("2[]")
        self.assertRejected("50-[]")

    def test_event_name_that_is_not_a_string(self) -> None:
        for text in ["2[1]", "2[null]", '2[["a"]]', '2[{"a":1}]', "2[true]"]:
            self.assertRejected(text)

    def test_ack_payload_that_is_not_an_array(self) -> None:
        for text in ["3{}", '3"x"', "312", "3", "3null", "60-{}"]:
            self.assertRejected(text)

    def test_connect_payload_that_is_not_an_object(self) -> None:
        for text in ["0[]", '0"x"', "0null", "0/admin,[1]", "0true"]:
            self.assertRejected(text)

    def test_connect_error_payload_that_is_not_an_object_or_string(self) -> None:
        for text in ["4", "4[]", "4null", "4/admin,", "4true"]:
            self.assertRejected(text)

    def test_disconnect_with_a_payload(self) -> None:
        for text in ["1{}", '1/admin,{"a":1}', "1[]", "1null", '1"x"']:
            self.assertRejected(text)

    def test_bad_namespace_syntax(self) -> None:
        for text in ['2/admin["bar"]', '0/admin{"token":"1"}', '2/ad"min,["x"]', "0/a\x1eb,", "0/a\nb"]:
            self.assertRejected(text)

    def test_missing_or_malformed_attachment_count(self) -> None:
        for text in ['5["a"]', '5-["a"]', '5x-["a"]', "5", '6["a"]', '51["a"]']:
            self.assertRejected(text)

    def test_more_attachments_than_allowed(self) -> None:
        self.assertRejected('511-["a"]', decoder=Decoder(max_attachments=10))
        self.assertRejected("63-[]", decoder=Decoder(max_attachments=2))
        start = time.thread_time()
        self.assertRejected('51000000000-["a"]')
        self.assertRejected("5" + "9" * 1_000_000 + '-["a"]')
        self.assertLess(time.thread_time() - start, 1.0)

    def test_attachment_count_at_the_limit_is_accepted(self) -> None:
        decoder = Decoder(max_attachments=2)
        self.assertIsNone(decoder.feed("62-[" + placeholder(0) + "," + placeholder(1) + "]"))
        decoder.feed(b"a")
        self.assertEqual(decoder.feed(b"b"), SocketPacket(P.BINARY_ACK, "/", [b"a", b"b"]))

    def test_placeholder_num_out_of_range(self) -> None:
        for text in [
            '51-["a",' + placeholder(1) + "]",
            '51-["a",' + placeholder(-1) + "]",
            '50-["a",' + placeholder(0) + "]",
            '51-["a",{"_placeholder":true,"num":"0"}]',
            '51-["a",{"_placeholder":true,"num":true}]',
            '51-["a",{"_placeholder":true,"num":0.0}]',
            '51-["a",{"_placeholder":true}]',
        ]:
            self.assertRejected(text)

    def test_binary_frame_with_no_binary_packet_pending(self) -> None:
        self.assertRejected(b"\x01")
        self.assertRejected('2["x"]', b"\x01")

    def test_text_frame_while_attachments_are_pending(self) -> None:
        self.assertRejected('52-["a",' + placeholder(0) + "," + placeholder(1) + "]", b"x", '2["y"]')

    def test_frame_of_another_type(self) -> None:
        self.assertRejected(None)  # type: ignore[arg-type]
        self.assertRejected(42)  # type: ignore[arg-type]


def _json_values() -> st.SearchStrategy[Any]:
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**63)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
        | st.binary(max_size=16)
    )
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
        max_leaves=12,
    )


_namespaces = st.just("/") | st.from_regex(r"/[a-z0-9_\-/]{0,12}", fullmatch=True)


class PropertyTests(SynchronousTestCase):
    @given(st.lists(st.text() | st.binary(), max_size=6))
    def test_feed_on_arbitrary_frames_raises_only_protocol_error(self, frames: list[str | bytes]) -> None:
        decoder = Decoder()
        for frame in frames:
            try:
                decoder.feed(frame)
            except ProtocolError:
                pass

    @given(st.text(alphabet='0123456-/,[]{}":_placeholdrutenm19abc\\', max_size=60))
    def test_feed_on_near_miss_text_raises_only_protocol_error(self, text: str) -> None:
        decoder = Decoder()
        try:
            decoder.feed(text)
            decoder.feed(b"x")
        except ProtocolError:
            pass

    @settings(max_examples=300)
    @given(
        st.text(min_size=0, max_size=10),
        st.lists(_json_values(), max_size=4),
        _namespaces,
        st.none() | st.integers(min_value=0, max_value=MAX_ACK_ID),
    )
    def test_event_round_trip(self, event: str, args: list[Any], namespace: str, ack_id: int | None) -> None:
        frames = encode_event(event, *args, namespace=namespace, ack_id=ack_id)
        packet = decode_all(*frames, decoder=Decoder(max_attachments=1000))
        self.assertEqual(packet.data, [event, *args])
        self.assertEqual(packet.namespace, namespace)
        self.assertEqual(packet.id, ack_id)
        self.assertEqual(packet.type, P.BINARY_EVENT if len(frames) > 1 else P.EVENT)

    @given(st.lists(_json_values(), max_size=4), st.integers(min_value=0, max_value=10**6))
    def test_ack_round_trip(self, args: list[Any], ack_id: int) -> None:
        frames = encode(SocketPacket(P.ACK, "/", args, ack_id))
        packet = decode_all(*frames, decoder=Decoder(max_attachments=1000))
        self.assertEqual((packet.data, packet.id), (args, ack_id))


def _general(text: str) -> Any:
    """What the general decoder makes of ``text``: (ack id, data) of an EVENT on "/", another packet, or the error."""
    try:
        packet = Decoder().feed(text)
    except ProtocolError as e:
        return ("error", type(e))
    if packet is not None and packet.type is P.EVENT and packet.namespace == "/":
        return (packet.id, packet.data)
    return ("other", packet)


class PlainPathTests(SynchronousTestCase):
    """The short paths give exactly what the general decoder and encoder give."""

    def assert_same_as_general(self, text: str) -> None:
        try:
            fast: Any = decode_plain_event(text, 32)
        except ProtocolError as e:
            fast = ("error", type(e))
        if fast is None:
            return  # left to the general decoder: nothing to compare
        self.assertEqual(fast, _general(text), text)

    def test_common_events(self) -> None:
        self.assertEqual(decode_plain_event('2["a",{"b":1}]', 32), (None, ["a", {"b": 1}]))
        self.assertEqual(decode_plain_event('217["a"]', 32), (17, ["a"]))
        self.assertEqual(decode_plain_event('2007["a"]', 32), (7, ["a"]))

    def test_everything_else_is_left_to_the_general_decoder(self) -> None:
        for text in (
            '0{"token":"x"}',
            '2/admin,["a"]',
            '21/admin,["a"]',
            '51-["a",{"_placeholder":true,"num":0}]',
            "2",
            '2{"a":1}',
            "2 [1]",
        ):
            self.assertIsNone(decode_plain_event(text, 32), text)

    def test_refusals_match_the_general_decoder(self) -> None:
        for text in (
            "2[]",
            "2[1]",
            '2["a"',
            "2[NaN]",
            '2["a",1e999]',
            "2" + str(MAX_ACK_ID + 1) + '["a"]',
            "2" + "9" * 40 + '["a"]',
            "2" + "[" * 40 + '"a"' + "]" * 40,
        ):
            self.assertRaises(ProtocolError, decode_plain_event, text, 32)
            self.assertEqual(_general(text)[0], "error", text)

    def test_long_numbers_keep_their_digits(self) -> None:
        big = 12345678901234567890123
        self.assertEqual(decode_plain_event(f'2["a",{big}]', 32), (None, ["a", big]))
        self.assertEqual(
            decode_plain_event('2["a","\\u00e9 1234567890123456789"]', 32),
            (None, ["a", "\u00e9 1234567890123456789"]),
        )

    @settings(max_examples=300)
    @given(st.text(alphabet='0123456789-/,[]{}":_abcNe.\\u', max_size=60))
    def test_near_misses_decode_as_the_general_decoder_does(self, tail: str) -> None:
        self.assert_same_as_general("2" + tail)

    @settings(max_examples=300)
    @given(
        st.text(min_size=0, max_size=10),
        st.lists(_json_values(), max_size=4),
        st.none() | st.integers(min_value=0, max_value=MAX_ACK_ID),
    )
    def test_encoded_events_decode_as_the_general_decoder_does(
        self, event: str, args: list[Any], ack_id: int | None
    ) -> None:
        frames = encode_event(event, *args, ack_id=ack_id)
        if len(frames) == 1:
            self.assert_same_as_general(frames[0])  # type: ignore[arg-type]

    @settings(max_examples=300)
    @given(st.lists(_json_values(), max_size=4), st.integers(min_value=0, max_value=MAX_ACK_ID))
    def test_plain_ack_text_is_what_encode_gives(self, args: list[Any], ack_id: int) -> None:
        text = plain_ack_text(ack_id, tuple(args))
        frames = encode(SocketPacket(P.ACK, "/", args, ack_id))
        if text is None:
            self.assertGreater(len(frames), 1)  # bytes: a binary ACK, left to the general encoder
        else:
            self.assertEqual([text], frames)

    def test_plain_ack_text_leaves_namespaces_and_bytes_to_the_general_encoder(self) -> None:
        self.assertIsNone(plain_ack_text(1, ({"a": 1},), "/admin"))
        self.assertIsNone(plain_ack_text(1, (b"\x00",)))
        self.assertEqual(plain_ack_text(3, ({"x": float("nan")},)), '33[{"x":null}]')
