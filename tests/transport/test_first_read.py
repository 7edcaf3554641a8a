"""`UpgradeSite`: a WebSocket upgrade on a connection's first read skips twisted.web; everything else is twisted.web's.

Each request goes to two sites built alike, an `UpgradeSite` and a plain
twisted.web `Site`, and what they write back must be the same (the
response head: a 101's Engine.IO OPEN holds a random sid).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.web import resource, server

from tests.support.fakes import Recorder
from tests.transport.test_websocket import HANDSHAKE, client_frame
from umoc.config import EngineIOConfig
from umoc.transport.cors import Cors
from umoc.transport.engine import EngineServer
from umoc.transport.gate import Gatekeeper
from umoc.transport.resource import engine_resource
from umoc.transport.upgrade import MAX_HEAD, FirstRead, UpgradeSite, parse_head
from umoc.transport.websocket import EngineWebSocketProtocol

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def _site(upgrade: bool, origins: tuple[str, ...] = (), per_ip: int = 200) -> Any:
    engine = EngineServer(Clock(), EngineIOConfig(max_sockets_per_ip=per_ip), Recorder)
    gate = Gatekeeper(allowed_origins=origins)
    root = resource.Resource()
    endpoint = engine_resource(engine, gate, Cors(gate))
    endpoint.websocket_factory.setProtocolOptions(openHandshakeTimeout=0)  # no timer on the real reactor
    root.putChild(b"socket.io", endpoint)
    site: Any = UpgradeSite(root, reactor=Clock()) if upgrade else server.Site(root, reactor=Clock())
    if upgrade:
        site.add_upgrade(b"/socket.io/", endpoint.websocket_factory)
    site.log = lambda request: None
    return site


class FirstReadTests(unittest.TestCase):
    def request(self, site: Any, *reads: bytes) -> tuple[bytes, Any, Any]:
        """What ``site`` wrote for ``reads``, the protocol left on the connection, and the one built first."""
        first = site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        transport.protocol = first
        first.makeConnection(transport)
        for data in reads:
            transport.protocol.dataReceived(data)
        protocol = transport.protocol
        if isinstance(protocol, EngineWebSocketProtocol) and protocol.state != protocol.STATE_CLOSED:
            self.addCleanup(protocol.dropConnection, True)
        elif not isinstance(protocol, EngineWebSocketProtocol):
            self.addCleanup(protocol.connectionLost, None)
        return transport.value(), protocol, first

    def compare(self, *reads: bytes, **site: Any) -> tuple[bytes, Any, bool]:
        """The `UpgradeSite`'s answer (checked against twisted.web's), its protocol, whether it skipped twisted.web."""
        to_http: list[bytes] = []
        original = FirstRead._to_http

        def spy(first: FirstRead, data: bytes) -> None:
            to_http.append(data)
            original(first, data)

        self.patch(FirstRead, "_to_http", spy)
        fast, protocol, _ = self.request(_site(True, **site), *reads)
        slow, _, _ = self.request(_site(False, **site), *reads)
        self.assertEqual(fast.split(b"\r\n\r\n")[0], slow.split(b"\r\n\r\n")[0])
        return fast, protocol, not to_http

    def test_a_plain_upgrade_skips_twisted_web_and_answers_as_it_does(self) -> None:
        output, protocol, skipped = self.compare(HANDSHAKE)
        self.assertTrue(skipped)
        self.assertIn(b"101 Switching Protocols", output)
        self.assertEqual(protocol.state, protocol.STATE_OPEN)
        self.assertEqual(protocol.session.query, {"EIO": "4", "transport": "websocket"})
        self.assertEqual(protocol.session.remote_ip, "127.0.0.1")

    def test_a_frame_in_the_same_read_reaches_the_socket(self) -> None:
        output, protocol, skipped = self.compare(HANDSHAKE + client_frame(b"40"))
        self.assertTrue(skipped)
        self.assertEqual(protocol.session.handler.messages, ["0"])

    def test_refusals_are_twisted_webs_and_autobahns(self) -> None:
        refused = {
            b"403 Origin not allowed": (
                HANDSHAKE.replace(b"\r\n\r\n", b"\r\nOrigin: http://evil.example\r\n\r\n"),
                {"origins": ("http://good.example",)},
            ),
            b"429 Too many connections": (HANDSHAKE, {"per_ip": 0}),
            b"400 bad Sec-WebSocket-Key": (HANDSHAKE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short=="), {}),
            b"400 WebSocket version 7 not supported": (HANDSHAKE.replace(b"Version: 13", b"Version: 7"), {}),
        }
        for status, (data, site) in refused.items():
            output, _, skipped = self.compare(data, **site)
            self.assertFalse(skipped)
            self.assertTrue(output.startswith(b"HTTP/1.1 " + status), (status, output))

    def test_anything_unusual_goes_to_twisted_web(self) -> None:
        unusual = [
            HANDSHAKE.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1),
            HANDSHAKE.replace(b"/socket.io/?", b"/socket.io?"),
            HANDSHAKE.replace(b"\r\n\r\n", b"\r\nHost: other\r\n\r\n"),
            HANDSHAKE.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"),
            HANDSHAKE.replace(b"\r\n\r\n", b"\r\nX-Long: " + b"a" * MAX_HEAD + b"\r\n\r\n"),
            HANDSHAKE.replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\r\n folded\r\n"),
            HANDSHAKE.replace(b"transport=websocket", b"transport=polling"),
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        for data in unusual:
            _, _, skipped = self.compare(data)
            self.assertFalse(skipped, data)

    def test_a_request_split_over_reads_is_served_by_twisted_web(self) -> None:
        output, protocol, skipped = self.compare(HANDSHAKE[:20], HANDSHAKE[20:])
        self.assertFalse(skipped)
        self.assertIn(b"101 Switching Protocols", output)
        self.assertIsInstance(protocol, EngineWebSocketProtocol)

    def test_keep_alive_requests_after_the_first_are_twisted_webs(self) -> None:
        poll = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"
        site = _site(True)
        first = site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        first.makeConnection(transport)
        first.dataReceived(poll)
        self.addCleanup(first.connectionLost, None)
        self.assertIn(b'0{"sid":', transport.value())
        first.dataReceived(poll)  # a caller that still holds the first protocol reaches twisted.web's channel
        self.assertEqual(transport.value().count(b"HTTP/1.1 200"), 2)

    def test_a_connection_that_sends_nothing_is_closed_after_the_sites_timeout(self) -> None:
        site = _site(True)
        first = site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        first.makeConnection(transport)
        site.reactor.advance(site.timeOut - 1)
        self.assertFalse(transport.disconnecting)
        site.reactor.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_data_cancels_the_idle_timer(self) -> None:
        site = _site(True)
        self.request(site, HANDSHAKE)
        self.assertEqual(site.reactor.getDelayedCalls(), [])

    @settings(deadline=None)
    @given(st.lists(st.tuples(st.text("ab=%+C3A9&;", max_size=6), st.text("ab=%+C3A9&x", max_size=6)), max_size=5))
    def test_a_query_reads_as_twisted_webs(self, pairs: list[tuple[str, str]]) -> None:
        query = "&".join(f"{k}={v}" for k, v in pairs).encode()
        data = HANDSHAKE.replace(b"transport=websocket", b"transport=websocket&" + query)
        fast = self.request(_site(True), data)[1]
        slow = self.request(_site(False), data)[1]
        self.assertEqual(isinstance(fast, EngineWebSocketProtocol), isinstance(slow, EngineWebSocketProtocol))
        if isinstance(fast, EngineWebSocketProtocol) and fast.session is not None:
            self.assertEqual(fast.session.query, slow.session.query)


class ParseHeadTests(unittest.TestCase):
    def test_a_head_is_read_into_lower_case_names_and_stripped_values(self) -> None:
        head = b"GET /x HTTP/1.1\r\nHost:  a \r\nX-Y:\tb\t"
        self.assertEqual(parse_head(head), (b"GET", b"/x", b"HTTP/1.1", {"host": "a", "x-y": "b"}))

    def test_unusual_heads_are_none(self) -> None:
        for head in [
            b"GET /x HTTP/1.1",  # no header at all (no Host)
            b"GET  /x HTTP/1.1\r\nHost: a",
            b"GET /x HTTP/1.1\r\nHost: a\r\nhost: b",
            b"GET /x HTTP/1.1\r\nHost: a\r\n b",
            b"GET /x HTTP/1.1\r\nHost a",
            b"GET /x HTTP/1.1\r\nHost: a\rb",
            b"GET /x HTTP/1.1\r\nHost: a\nb: c",
            b"GET /x HTTP/1.1\r\nHost: a\x00",
            b"GET /x HTTP/1.1\r\nHo st: a",
            b"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked",
        ]:
            self.assertIsNone(parse_head(head), head)
