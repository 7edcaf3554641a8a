"""The WebSocket protocol: the fast path agrees with Autobahn's frame parser; floods are handled in batches.

The protocol runs on a StringTransport with Autobahn's real handshake and
state machine; frames are built byte by byte as a browser would send them.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from pprint import pformat
from typing import Any, cast

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.web import resource, server

from tests.support.fakes import Recorder
from umoc.config import EngineIOConfig, Size
from umoc.protocol.websocket import encode_frame as _ws_frame
from umoc.protocol.websocket import unmask as _unmask
from umoc.transport.cors import Cors
from umoc.transport.engine import EngineServer, Outgoing
from umoc.transport.gate import Gatekeeper
from umoc.transport.resource import engine_resource
from umoc.transport.websocket import (
    _OPEN_FIELDS,
    EngineWebSocketFactory,
    EngineWebSocketProtocol,
    TurnWriter,
    _autobahn_pformat,
)

HANDSHAKE = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(payload: bytes, opcode: int = 1, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A masked client-to-server frame."""
    mask = mask if mask is not None else os.urandom(4)
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class FastPathTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.engine = EngineServer(self.clock, EngineIOConfig(max_payload=Size(1000)), Recorder)
        self.protocol: Any = EngineWebSocketFactory(self.engine, Gatekeeper()).buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.protocol.closeHandshakeTimeout = 0  # no timer on the real reactor after a failed connection
        self.protocol.dataReceived(HANDSHAKE)
        self.assertEqual(self.protocol.state, self.protocol.STATE_OPEN)
        (session,) = self.engine.sessions.values()
        self.handler: Recorder = session.handler  # type: ignore[assignment]
        self.transport.clear()

    def tearDown(self) -> None:
        for call in self.clock.getDelayedCalls():
            call.cancel()

    def feed(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        self.clock.advance(0)  # any batches left for the next reactor turns

    def close_code(self) -> int | None:
        """The status code of the CLOSE frame the server wrote, if any."""
        out = self.transport.value()
        if len(out) >= 4 and out[0] == 0x88:
            return struct.unpack("!H", out[2:4])[0]
        return None

    def test_many_frames_in_one_read_arrive_in_order(self) -> None:
        texts = [f'42["e",{{"n":{i}}}]' for i in range(100)]
        self.feed(b"".join(client_frame(t.encode()) for t in texts))
        self.assertEqual(self.handler.messages, [t[1:] for t in texts])

    def test_extended_length_unicode_and_binary_frames(self) -> None:
        long_text = "4" + "ü" * 300  # 601 bytes: the 16-bit length form
        self.feed(client_frame(long_text.encode()) + client_frame(b"\x00\x01\xff", opcode=2) + client_frame(b"4"))
        self.assertEqual(self.handler.messages, ["ü" * 300, b"\x00\x01\xff", ""])

    def test_a_frame_split_across_reads_arrives_once_complete(self) -> None:
        frame = client_frame(b'42["split"]')
        for i in range(len(frame)):
            self.feed(frame[i : i + 1])
        self.assertEqual(self.handler.messages, ['2["split"]'])

    def test_fragmented_message_goes_through_autobahn_and_fast_frames_follow(self) -> None:
        self.feed(client_frame(b'42["fr', fin=False) + client_frame(b'ag"]', opcode=0) + client_frame(b'42["next"]'))
        self.assertEqual(self.handler.messages, ['2["frag"]', '2["next"]'])

    def test_ping_between_frames_is_answered(self) -> None:
        self.feed(client_frame(b"41") + client_frame(b"hi", opcode=9) + client_frame(b"42"))
        self.assertEqual(self.handler.messages, ["1", "2"])
        self.assertIn(b"\x8a\x02hi", self.transport.value())

    def test_invalid_utf8_fails_the_connection_with_1007(self) -> None:
        self.feed(client_frame(b"4\xff\xfe"))
        self.assertEqual(self.handler.messages, [])
        self.assertEqual(self.close_code(), 1007)

    def test_frame_over_max_payload_fails_the_connection_with_1009(self) -> None:
        self.feed(client_frame(b"4" + b"x" * 1000))
        self.assertEqual(self.handler.messages, [])
        self.assertEqual(self.close_code(), 1009)

    def test_unmasked_frame_is_a_protocol_violation(self) -> None:
        self.feed(b"\x81\x02" + b"42")
        self.assertEqual(self.handler.messages, [])
        self.assertEqual(self.close_code(), 1002)

    def test_outgoing_message_is_framed_once_and_shared(self) -> None:
        message = Outgoing.from_socketio(['2["x"]', b"\x01\x02"])
        session = next(iter(self.engine.sessions.values()))
        session.send(message)
        wire = message.cache["websocket"]
        self.assertEqual(self.transport.value(), wire)
        self.assertEqual(wire, b"\x81\x074" + b'2["x"]' + b"\x82\x02\x01\x02")


class FramingTests(unittest.TestCase):
    @given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
    def test_unmask_is_the_rfc_xor(self, payload: bytes, mask: bytes) -> None:
        self.assertEqual(_unmask(payload, mask), bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def test_server_frames_are_the_bytes_autobahn_sends(self) -> None:
        for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
            text = "a" * size
            self.assertEqual(_ws_frame(text), PreparedMessage(text.encode(), False, False, False).payloadHybi)
            data = b"\x07" * size
            self.assertEqual(_ws_frame(data), PreparedMessage(data, True, False, False).payloadHybi)

    def test_autobahn_settings_are_pretty_printed_only_when_logged(self) -> None:
        settings = [("autoPingInterval", 0, "Factory"), ("maxFramePayloadSize", 1000, "Factory")]
        lazy = _autobahn_pformat(settings)
        self.assertNotIsInstance(lazy, str)
        self.assertEqual("\n{attrs}".format(attrs=lazy), "\n" + pformat(settings))  # noqa: UP032 - as loggers do
        self.assertEqual(_autobahn_pformat({"a": 1}), pformat({"a": 1}))

    def test_autobahn_names_methods_only_when_logged(self) -> None:
        import autobahn.twisted.websocket
        import autobahn.websocket.protocol
        from autobahn.util import hltype

        for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
            lazy = module.hltype(EngineWebSocketFactory.__init__)  # type: ignore[attr-defined]
            self.assertNotIsInstance(lazy, str)
            self.assertEqual("{func}: x".format(func=lazy), hltype(EngineWebSocketFactory.__init__) + ": x")  # noqa: UP032


class SharedSettingsTests(unittest.TestCase):
    """Autobahn's settings live on a protocol class per factory; an open connection keeps no handshake."""

    def connect(self, factory: EngineWebSocketFactory, handshake: bytes = HANDSHAKE) -> tuple[Any, StringTransport]:
        protocol: Any = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(handshake)
        self.addCleanup(protocol.dropConnection, True)
        return protocol, transport

    def factory(self, max_payload: int) -> EngineWebSocketFactory:
        return EngineWebSocketFactory(
            EngineServer(Clock(), EngineIOConfig(max_payload=Size(max_payload)), Recorder), Gatekeeper()
        )

    def test_each_factory_has_its_own_settings_and_no_connection_copies_them(self) -> None:
        small, large = self.connect(self.factory(1000))[0], self.connect(self.factory(2000))[0]
        self.assertEqual((small.maxFramePayloadSize, large.maxFramePayloadSize), (1000, 2000))
        self.assertNotIn("maxFramePayloadSize", vars(small))
        self.assertEqual(small.state, small.STATE_OPEN)

    def test_a_compression_offer_is_declined_and_the_connection_opens(self) -> None:
        offer = HANDSHAKE.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
        protocol, transport = self.connect(self.factory(1000), offer)
        self.assertEqual(protocol.state, protocol.STATE_OPEN)
        self.assertIn(b"101 Switching Protocols", transport.value())
        self.assertNotIn(b"permessage-deflate", transport.value())

    def test_an_open_connection_keeps_nothing_of_its_handshake(self) -> None:
        protocol = self.connect(self.factory(1000))[0]
        self.assertEqual((protocol.http_request_data, protocol.http_response_data), (None, None))
        self.assertEqual((protocol.http_headers, protocol._headers, protocol._query), ({}, {}, {}))


def _inline_values(obj: object) -> bool:
    """CPython 3.11: whether ``obj`` keeps its attributes in its inline values (not a dict object).

    The values pointer sits four words before the object (``_PyObject_ValuesPointer``); it is
    NULL once the instance's ``__dict__`` was made, after which attribute reads are not specialised.
    """
    return ctypes.c_void_p.from_address(id(obj) - 4 * ctypes.sizeof(ctypes.c_void_p)).value is not None


class InlineValuesTests(unittest.TestCase):
    """An open connection's ``self.x`` stay on CPython's specialised fast path (bench_wire ingest1)."""

    def setUp(self) -> None:
        if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
            raise unittest.SkipTest("reads CPython 3.11's object layout")
        self.site = _site()

    def connect(self) -> Any:
        """A WebSocket through the site, as clients connect (the fast handshake unless patched)."""
        output, protocol = _request(self, self.site, HANDSHAKE)
        self.assertIn(b"101 Switching Protocols", output)
        return protocol

    def test_an_open_connection_keeps_inline_values_through_frames_and_writes(self) -> None:
        protocol = self.connect()
        protocol.dataReceived(client_frame(b'42["x"]'))
        protocol.send_frame("2")
        protocol._out = None  # what a TCP connection's first write sets (`TurnWriter`)
        protocol.pauseProducing()
        protocol.resumeProducing()
        self.assertTrue(_inline_values(protocol))

    def test_a_first_connection_with_many_fields_does_not_push_later_ones_off(self) -> None:
        # Autobahn's own handshake sets more names than the class has room for (30).
        self.patch(EngineWebSocketFactory, "check_handshake", lambda *args: None)
        self.assertFalse(_inline_values(self.connect()))
        self.patch(EngineWebSocketFactory, "check_handshake", _CHECK_HANDSHAKE)
        protocol = self.connect()
        for name in _OPEN_FIELDS:  # every name an open connection sets, as it sets them
            setattr(protocol, name, getattr(protocol, name))
        self.assertTrue(_inline_values(protocol))


class BatchingTests(unittest.TestCase):
    """A connection with many frames buffered handles a batch per reactor turn, not reading meanwhile."""

    def setUp(self) -> None:
        self.clock = Clock()
        engine = EngineServer(self.clock, EngineIOConfig(), lambda s: None)
        self.protocol = EngineWebSocketFactory(engine, Gatekeeper()).buildProtocol(None)
        self.protocol.transport = StringTransport()
        self.protocol.state = self.protocol.STATE_OPEN
        self.left = 0
        self.handled = 0

        def process_data() -> bool:
            # Stands in for Autobahn's frame parser: one step per call while frames are buffered.
            if self.left == 0:
                return False
            self.left -= 1
            self.handled += 1
            return True

        self.protocol.processData = process_data

    def next_turn(self) -> None:
        """Run the one pending call, as the next reactor iteration would (Clock.advance(0) runs them all)."""
        (call,) = self.clock.getDelayedCalls()
        self.clock.calls.remove(call)
        call.func(*call.args, **call.kw)

    def test_flood_is_handled_one_batch_per_turn_with_reading_paused(self) -> None:
        steps = self.protocol.STEPS_PER_TURN
        self.left = steps * 2 + 5
        self.protocol.consumeData()
        self.assertEqual(self.handled, steps)
        self.assertEqual(self.protocol.transport.producerState, "paused")
        self.next_turn()
        self.assertEqual(self.handled, steps * 2)
        self.assertEqual(self.protocol.transport.producerState, "paused")
        self.next_turn()
        self.assertEqual(self.handled, steps * 2 + 5)
        self.assertEqual(self.protocol.transport.producerState, "producing")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_few_frames_are_handled_at_once_without_pausing(self) -> None:
        self.left = 3
        self.protocol.consumeData()
        self.assertEqual(self.handled, 3)
        self.assertEqual(self.protocol.transport.producerState, "producing")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closing_cancels_the_next_batch(self) -> None:
        self.left = self.protocol.STEPS_PER_TURN * 3
        self.protocol.consumeData()
        self.protocol.onClose(False, 1006, None)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Flushed:
    """Stands for a connection: records each `TurnWriter` flush of it."""

    def __init__(self, name: int, log: list[int]) -> None:
        self.name = name
        self.log = log

    def flush_writes(self) -> None:
        self.log.append(self.name)


class TurnWriterTests(unittest.TestCase):
    """One ``send()`` per connection per turn, and a large turn's first connections sent to before its end."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.writer = TurnWriter(self.clock)
        self.sent: list[int] = []

    def mark(self, *names: int) -> None:
        for name in names:
            self.writer.mark(cast(Any, _Flushed(name, self.sent)))

    def test_a_small_turn_is_sent_at_its_end_with_one_timer(self) -> None:
        self.mark(1, 2, 3)
        self.assertEqual((self.sent, len(self.clock.getDelayedCalls())), ([], 1))
        self.clock.advance(0)
        self.assertEqual((self.sent, self.clock.getDelayedCalls()), ([1, 2, 3], []))

    def test_a_fan_out_sends_each_early_flush_as_it_goes(self) -> None:
        size = TurnWriter.EARLY_FLUSH
        self.mark(*range(size - 1))
        self.assertEqual(self.sent, [])
        self.mark(size - 1)
        self.assertEqual(self.sent, list(range(size)))  # before the turn ends
        self.mark(*range(size, size + 10))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # still one end-of-turn flush
        self.clock.advance(0)
        self.assertEqual(self.sent, list(range(size + 10)))
        # The next turn schedules its own.
        self.mark(99)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(self.sent[-1], 99)


def _site(origins: tuple[str, ...] = (), per_ip: int = 200) -> server.Site:
    """The Engine.IO endpoint on a twisted.web Site, as the server has it."""
    engine = EngineServer(Clock(), EngineIOConfig(max_sockets_per_ip=per_ip), Recorder)
    gate = Gatekeeper(allowed_origins=origins)
    root = resource.Resource()
    endpoint = engine_resource(engine, gate, Cors(gate))
    # No timer on the real reactor for Autobahn's handshake (the fast path sets none).
    cast(Any, endpoint)._websocket._factory.setProtocolOptions(openHandshakeTimeout=0)
    root.putChild(b"socket.io", endpoint)
    site = server.Site(root)
    site.log = lambda request: None  # type: ignore[method-assign]
    return site


def _request(test: unittest.TestCase, site: server.Site, data: bytes) -> tuple[bytes, Any]:
    """What the server wrote for ``data``, and the protocol it left on the connection."""
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    transport.protocol = channel  # as TCP has it: Autobahn's resource swaps it
    channel.makeConnection(transport)  # type: ignore[union-attr]
    channel.dataReceived(data)  # type: ignore[union-attr]
    protocol = transport.protocol
    if isinstance(protocol, EngineWebSocketProtocol) and protocol.state != protocol.STATE_CLOSED:
        test.addCleanup(protocol.dropConnection, True)
    return transport.value(), protocol


_CHECK_HANDSHAKE = EngineWebSocketFactory.check_handshake


class FastHandshakeTests(unittest.TestCase):
    """The upgrade answered from twisted.web's request writes what Autobahn writes; refusals are Autobahn's."""

    def site(self, origins: tuple[str, ...] = (), per_ip: int = 200) -> server.Site:
        return _site(origins, per_ip)

    def request(self, site: server.Site, data: bytes) -> tuple[bytes, Any]:
        return _request(self, site, data)

    def both(self, data: bytes, **site: Any) -> tuple[tuple[bytes, Any], tuple[bytes, Any], list[Any]]:
        """(fast path's output, Autobahn's output, what `check_handshake` returned)."""
        checked: list[Any] = []
        check = _CHECK_HANDSHAKE

        def recording(factory: EngineWebSocketFactory, request: Any, transport: Any) -> Any:
            checked.append(check(factory, request, transport))
            return checked[-1]

        self.patch(EngineWebSocketFactory, "check_handshake", recording)
        fast = self.request(self.site(**site), data)
        self.patch(EngineWebSocketFactory, "check_handshake", lambda *args: None)
        slow = self.request(self.site(**site), data)
        return fast, slow, checked

    @staticmethod
    def head(output: bytes) -> bytes:
        """The HTTP response head (the Engine.IO OPEN that follows a 101 holds a random sid)."""
        return output.split(b"\r\n\r\n")[0]

    def assert_fast_and_same(self, data: bytes, **site: Any) -> Any:
        (fast, protocol), (slow, _), checked = self.both(data, **site)
        self.assertIsNotNone(checked[0], "the fast path took this request")
        self.assertEqual(self.head(fast), self.head(slow))
        self.assertIn(b"101 Switching Protocols", fast)
        self.assertIn(b'0{"sid":', fast)
        self.assertEqual(protocol.state, protocol.STATE_OPEN)
        return protocol

    def assert_autobahn_decides(self, data: bytes, **site: Any) -> bytes:
        (fast, _), (slow, _), checked = self.both(data, **site)
        self.assertEqual(checked, [None])
        self.assertEqual(self.head(fast), self.head(slow))
        return fast

    def test_a_plain_upgrade_opens_with_autobahns_response(self) -> None:
        protocol = self.assert_fast_and_same(HANDSHAKE)
        self.assertEqual(protocol.session.query, {"EIO": "4", "transport": "websocket"})
        self.assertEqual(protocol.session.remote_ip, "127.0.0.1")

    def test_a_browsers_upgrade_with_origin_and_a_compression_offer_opens_without_compression(self) -> None:
        browser = HANDSHAKE.replace(
            b"\r\n\r\n",
            b"\r\nOrigin: http://127.0.0.1\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            b"User-Agent: Mozilla/5.0\r\n\r\n",
        )
        protocol = self.assert_fast_and_same(browser)
        self.assertEqual(protocol.session.headers["origin"], "http://127.0.0.1")
        self.assertNotIn(b"permessage-deflate", self.request(self.site(), browser)[0])

    def test_an_open_connection_keeps_nothing_of_its_fast_handshake(self) -> None:
        protocol = self.assert_fast_and_same(HANDSHAKE)
        self.assertEqual((protocol.http_request_data, protocol.http_response_data), (None, None))
        self.assertEqual((protocol.http_headers, protocol._headers, protocol._query), ({}, {}, {}))

    def test_refusals_are_autobahns(self) -> None:
        refused = {
            b"403 Origin not allowed": (
                HANDSHAKE.replace(b"\r\n\r\n", b"\r\nOrigin: http://evil.example\r\n\r\n"),
                {"origins": ("http://good.example",)},
            ),
            b"429 Too many connections": (HANDSHAKE, {"per_ip": 0}),
            b"400 bad Sec-WebSocket-Key": (HANDSHAKE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short=="), {}),
            b"400 HTTP Connection headers do not include": (
                HANDSHAKE.replace(b"Connection: Upgrade", b"Connection: keep-alive"),
                {},
            ),
            b"400 HTTP Origin header invalid": (HANDSHAKE.replace(b"\r\n\r\n", b"\r\nOrigin: nohost\r\n\r\n"), {}),
            b"400 WebSocket connection denied: origin 'null' not allowed": (
                HANDSHAKE.replace(b"\r\n\r\n", b"\r\nOrigin: null\r\n\r\n"),
                {},
            ),
            b"400 WebSocket version 7 not supported": (HANDSHAKE.replace(b"Version: 13", b"Version: 7"), {}),
        }
        for status, (data, site) in refused.items():
            output = self.assert_autobahn_decides(data, **site)
            self.assertTrue(output.startswith(b"HTTP/1.1 " + status), (status, output))

    def test_unusual_requests_go_through_autobahn(self) -> None:
        unusual = [
            HANDSHAKE.replace(b"Version: 13", b"Version: 8"),
            HANDSHAKE.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: chat\r\n\r\n"),
            HANDSHAKE.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1),
            HANDSHAKE.replace(b"Host: 127.0.0.1", b"Host: 127.0.0.1:+80"),
            HANDSHAKE.replace(b"transport=websocket", b"transport=websocket&x=%C3%A9"),
        ]
        for data in unusual[:-1]:
            self.assert_autobahn_decides(data)
        # A percent-escape is plain ASCII: the fast path reads it as Autobahn does.
        self.assertEqual(self.assert_fast_and_same(unusual[-1]).session.query["x"], "é")


class ConnectionSetUpTests(unittest.TestCase):
    def test_a_connection_starts_as_autobahns_own_set_up_leaves_it(self) -> None:
        factory = EngineWebSocketFactory(EngineServer(Clock(), EngineIOConfig(), Recorder), Gatekeeper())
        factory.setProtocolOptions(openHandshakeTimeout=0)  # no timer on the real reactor
        ours: Any = factory.buildProtocol(None)
        theirs: Any = object.__new__(factory.protocol)
        WebSocketProtocol.__init__(theirs)
        theirs.factory = factory
        for protocol, set_up in ((ours, type(ours)._connectionMade), (theirs, WebSocketProtocol._connectionMade)):
            protocol.transport = StringTransport()
            set_up(protocol)
        made = {"trafficStats", "utf8validator", "send_queue", "is_open", "is_closed", "_transport_details"}
        names = set(vars(theirs)) - made - {"factory", "transport"}
        self.assertEqual({n: getattr(ours, n) for n in names}, {n: getattr(theirs, n) for n in names})
        self.assertEqual({n: type(getattr(ours, n)) for n in made}, {n: type(getattr(theirs, n)) for n in made})
        self.assertEqual(vars(ours.trafficStats), vars(theirs.trafficStats))
        self.assertEqual((list(ours.send_queue), ours.is_open.called), ([], False))
        self.assertEqual((ours.peer, ours._transport_details.peer), ("tcp4:192.168.1.1:54321",) * 2)


class QueryTests(unittest.TestCase):
    @given(st.lists(st.tuples(st.text("ab=%+C3A9&", max_size=6), st.text("ab=%+C3A9&x", max_size=6)), max_size=5))
    def test_the_fast_path_reads_a_query_as_autobahn_does(self, pairs: list[tuple[str, str]]) -> None:
        query = "&".join(f"{k}={v}" for k, v in pairs).encode()
        data = HANDSHAKE.replace(b"transport=websocket", b"transport=websocket&" + query)
        fast = _request(self, _site(), data)[1]
        slow_site = _site()
        cast(Any, slow_site.resource.children[b"socket.io"])._websocket._factory.check_handshake = lambda *args: None
        slow = _request(self, slow_site, data)[1]
        self.assertEqual(isinstance(fast, EngineWebSocketProtocol), isinstance(slow, EngineWebSocketProtocol))
        if isinstance(fast, EngineWebSocketProtocol) and fast.session is not None:  # not refused
            self.assertEqual(fast.session.query, slow.session.query)
