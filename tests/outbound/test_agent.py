"""The outbound agent: which addresses it refuses in which spelling, and real receivers on loopback.

Receivers are real servers on 127.0.0.1 port 0; the guarded agent reaches
them only through the operator's allow-list, or through a stub DNS that
names them (as a rebinding name would).  Floods are raw TCP servers that
keep writing for as long as the connection lasts: the agent must cut them
off after a bounded number of bytes, not read them to the end.
"""

from __future__ import annotations

import gzip
import ipaddress
import time
from typing import Any

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IHostnameResolver, IHostResolution, IResolutionReceiver
from twisted.trial import unittest
from twisted.web import resource
from zope.interface import implementer

from tests.support.deferreds import inline
from tests.support.push import FloodServer, serve, serve_flood, until
from umoc.outbound import AddressPolicy, AnswerTooLargeError, HttpClient, RefusedAddressError
from umoc.outbound.agent import AnswerLimits, GuardedReactor, ip_literal, refused

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "0X7F000001",
    "0x7f.1",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "0177.1",
    "017700000001",
    "127.0.0.1.",
    "127.255.255.254",
    "::1",
    "[::1]",
    "0:0:0:0:0:0:0:1",
    "::ffff:127.0.0.1",
    "[::ffff:7f00:1]",
    "::127.0.0.1",
    "64:ff9b::127.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    "2002:7f00:0001:0000::1",
]

OTHER_REFUSED = [
    "0",  # 0.0.0.0
    "0.0.0.0",
    "0x0",
    "::",
    "10.0.0.1",
    "10.1",
    "012.0.0.1",  # octal 10.0.0.1
    "167772161",  # 10.0.0.1
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "0xc0a80101",  # 192.168.1.1
    "3232235777",  # 192.168.1.1
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "169.254.169.254",  # cloud metadata
    "0xa9fea9fe",
    "2852039166",
    "0251.0376.0251.0376",
    "0251.0xfe.43518",
    "[::ffff:169.254.169.254]",
    "fe80::1",
    "fe80::1%eth0",
    "[fe80::1%25eth0]",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "4294967295",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "192.88.99.1",
    "2001:db8::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:0:7f00:1::",  # Teredo whose server is loopback
    "64:ff9b::8.8.8.8",  # NAT64 is refused whatever it embeds
    "64:ff9b:1::a00:1",
    "::ffff:8.8.8.8",  # mapped is refused whatever it embeds
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "100::1",
    "3fff::1",
]

PERMITTED = ["8.8.8.8", "134744072", "0x8080808", "1.1", "93.184.216.34", "2606:4700::1111", "2002:808:808::1"]

NOT_ADDRESSES = ["example.com", "push.example.com", "1.2.3.4.5", "256.0.0.1", "08.0.0.1", "0x1g", "1.16777216"]


class AddressTests(unittest.SynchronousTestCase):
    def test_every_spelling_of_loopback_is_refused(self) -> None:
        for spelling in LOOPBACK_SPELLINGS:
            address = ip_literal(spelling)
            self.assertIsNotNone(address, spelling)
            assert address is not None
            self.assertTrue(refused(address), spelling)

    def test_ipv4_spellings_mean_what_inet_aton_makes_of_them(self) -> None:
        cases = {
            "2130706433": "127.0.0.1",
            "0x7f.1": "127.0.0.1",
            "0177.0.0.1": "127.0.0.1",
            "127.1": "127.0.0.1",
            "10.1": "10.0.0.1",
            "192.168.257": "192.168.1.1",
            "0251.0xfe.43518": "169.254.169.254",
            "0": "0.0.0.0",
        }
        for spelling, meant in cases.items():
            self.assertEqual(ip_literal(spelling), ipaddress.ip_address(meant), spelling)

    def test_private_link_local_metadata_multicast_reserved_mapped_and_nat64_are_refused(self) -> None:
        for spelling in OTHER_REFUSED:
            address = ip_literal(spelling)
            self.assertIsNotNone(address, spelling)
            assert address is not None
            self.assertTrue(refused(address), spelling)

    def test_public_addresses_are_permitted(self) -> None:
        for spelling in PERMITTED:
            address = ip_literal(spelling)
            self.assertIsNotNone(address, spelling)
            assert address is not None
            self.assertFalse(refused(address), spelling)

    def test_names_and_invalid_numbers_are_not_addresses(self) -> None:
        for text in NOT_ADDRESSES:
            self.assertIsNone(ip_literal(text), text)

    def test_the_operators_allow_list_permits_its_networks_only(self) -> None:
        policy = AddressPolicy.from_config(["127.0.0.1", "10.20.0.0/16", "fd00::/8"])
        self.assertTrue(policy.permits(ipaddress.ip_address("127.0.0.1")))
        self.assertFalse(policy.permits(ipaddress.ip_address("127.0.0.2")))
        self.assertTrue(policy.permits(ipaddress.ip_address("10.20.3.4")))
        self.assertFalse(policy.permits(ipaddress.ip_address("10.21.3.4")))
        self.assertTrue(policy.permits(ipaddress.ip_address("fd00::5")))
        self.assertFalse(policy.permits(ipaddress.ip_address("::ffff:127.0.0.1")), "a mapped spelling is not listed")
        self.assertTrue(policy.permits(ipaddress.ip_address("8.8.8.8")))

    def test_connect_accepts_only_a_plain_permitted_address(self) -> None:
        policy = AddressPolicy()
        for host in ("127.0.0.1", "2130706433", "0x7f.1", "localhost", "10.0.0.1", "::1", "169.254.169.254"):
            self.assertFalse(policy.permits_text(host), host)
        self.assertTrue(policy.permits_text("8.8.8.8"))
        self.assertFalse(policy.permits_text("push.example.com"), "a name is never connected to without resolving")


class Recorder(resource.Resource):
    """Answers every request with ``code`` (and ``headers``, ``body``); remembers the requests."""

    isLeaf = True

    def __init__(self, code: int = 200, body: bytes = b"ok", headers: dict[bytes, bytes] | None = None) -> None:
        super().__init__()
        self.url = ""
        self.code = code
        self.body = body
        self.headers = headers or {}
        self.requests: list[tuple[bytes, bytes, dict[bytes, list[bytes]]]] = []

    def render(self, request: Any) -> bytes:
        self.requests.append(
            (request.method, request.path, {k.lower(): v for k, v in request.requestHeaders.getAllRawHeaders()})
        )
        request.setResponseCode(self.code)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        return self.body


@implementer(IHostnameResolver)
class StubDNS:
    """Names to addresses, as a DNS server the attacker controls would answer."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    def resolveHostName(  # noqa: N802
        self,
        resolutionReceiver: IResolutionReceiver,  # noqa: N803
        hostName: str,  # noqa: N803
        portNumber: int = 0,  # noqa: N803
        addressTypes: Any = None,  # noqa: N803
        transportSemantics: str = "TCP",  # noqa: N803
    ) -> IHostResolution:
        self.asked.append(hostName)
        resolutionReceiver.resolutionBegan(None)  # type: ignore[arg-type]
        for host in self.names.get(hostName, []):
            resolutionReceiver.addressResolved(IPv4Address("TCP", host, portNumber))
        resolutionReceiver.resolutionComplete()
        return None  # type: ignore[return-value]


class ReactorWithDNS:
    """The real reactor with a stub name resolver."""

    def __init__(self, dns: StubDNS) -> None:
        self.nameResolver = dns

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


class AgentCase(unittest.TestCase):
    def client(self, policy: AddressPolicy | None, dns: StubDNS | None = None, **limits: int) -> HttpClient:
        clock: Any = reactor
        base: Any = ReactorWithDNS(dns) if dns is not None else reactor
        http = HttpClient(base, clock, AnswerLimits(**limits), policy)
        self.addCleanup(http.close)
        return http

    async def post(self, http: HttpClient, url: str, timeout: float = 10) -> Any:
        return await http.post(url, b"{}", {"Content-Type": "application/json"}, timeout)


class GuardTests(AgentCase):
    @inline
    async def test_a_receiver_on_loopback_is_never_contacted_in_any_spelling(self) -> None:
        receiver = Recorder()
        url = await serve(self, receiver)
        port = url.rsplit(":", 1)[1]
        http = self.client(AddressPolicy())
        for spelling in ("127.0.0.1", "127.1", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "[::ffff:7f00:1]"):
            with self.assertRaises(RefusedAddressError, msg=spelling):
                await self.post(http, f"http://{spelling}:{port}/push")
        self.assertEqual(receiver.requests, [])

    @inline
    async def test_the_allow_list_lets_the_operators_receiver_through(self) -> None:
        receiver = Recorder()
        url = await serve(self, receiver)
        http = self.client(AddressPolicy.from_config(["127.0.0.1/32"]))
        answer = await self.post(http, url + "/push")
        self.assertEqual((answer.code, answer.body), (200, b"ok"))
        self.assertEqual(len(receiver.requests), 1)

    @inline
    async def test_a_name_resolving_to_loopback_is_refused_after_resolution(self) -> None:
        receiver = Recorder()
        url = await serve(self, receiver)
        port = url.rsplit(":", 1)[1]
        dns = StubDNS({"rebind.example.com": ["127.0.0.1"], "mixed.example.com": ["93.184.216.34", "127.0.0.1"]})
        http = self.client(AddressPolicy(), dns)
        for name in ("rebind.example.com", "mixed.example.com"):
            with self.assertRaises(DNSLookupError, msg=name):
                await self.post(http, f"http://{name}:{port}/push")
        self.assertEqual(dns.asked, ["rebind.example.com", "mixed.example.com"])
        self.assertEqual(receiver.requests, [])
        # The same stub, the address allowed: the request gets through (so the refusal above was the guard's).
        allowed = self.client(AddressPolicy.from_config(["127.0.0.1"]), dns)
        answer = await self.post(allowed, f"http://rebind.example.com:{port}/push")
        self.assertEqual(answer.code, 200)
        self.assertEqual(len(receiver.requests), 1)

    @inline
    async def test_connect_re_checks_the_address_it_is_given(self) -> None:
        receiver = Recorder()
        url = await serve(self, receiver)
        port = int(url.rsplit(":", 1)[1])
        guarded = GuardedReactor(reactor, AddressPolicy())
        factory = protocol.ClientFactory.forProtocol(protocol.Protocol)
        for host in ("127.0.0.1", "2130706433", "localhost"):
            with self.assertRaises(RefusedAddressError, msg=host):
                guarded.connectTCP(host, port, factory)
        # An endpoint handed a refused address by anything (a resolver that is not the guard's) fails too.
        endpoint = endpoints.TCP4ClientEndpoint(guarded, "127.0.0.1", port)
        with self.assertRaises(RefusedAddressError):
            await endpoint.connect(factory)
        self.assertEqual(receiver.requests, [])

    @inline
    async def test_a_redirect_is_an_answer_not_followed(self) -> None:
        secret = Recorder(code=404, body=b"not here")
        secret_url = await serve(self, secret)
        redirector = Recorder(code=303, body=b"", headers={b"location": (secret_url + "/internal").encode()})
        url = await serve(self, redirector)
        http = self.client(AddressPolicy.from_config(["127.0.0.1"]))
        answer = await self.post(http, url + "/push")
        self.assertEqual(answer.code, 303)
        self.assertEqual(len(redirector.requests), 1)
        self.assertEqual(secret.requests, [], "the redirect's target is never requested")


class BoundedAnswerTests(AgentCase):
    """The trusted client (no address policy) bounds answers the same way."""

    async def flooded(self, head: bytes, chunk: bytes, **limits: int) -> FloodServer:
        flood = FloodServer(head, chunk)
        url = await serve_flood(self, flood)
        http = self.client(None, **limits)
        started = time.monotonic()
        with self.assertRaises(AnswerTooLargeError):
            await self.post(http, url + "/hook", timeout=30)
        self.assertLess(time.monotonic() - started, 10, "cut off at the limit, not at the deadline")
        await until(lambda: flood.lost == 1, what="the connection to be aborted")
        self.assertEqual(flood.connections, 1)
        # What the receiver managed to write is what the kernel's buffers took, not the gigabyte it offered.
        self.assertLess(flood.sent, 64 * 1024 * 1024)
        return flood

    @inline
    async def test_an_endless_body_is_cut_off(self) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n"
        await self.flooded(head, b"x" * 65536)

    @inline
    async def test_an_endless_chunked_body_is_cut_off(self) -> None:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        await self.flooded(head, b"%x\r\n" % 4096 + b"y" * 4096 + b"\r\n")

    @inline
    async def test_a_body_until_close_is_cut_off(self) -> None:
        await self.flooded(b"HTTP/1.0 200 OK\r\n\r\n", b"z" * 65536)

    @inline
    async def test_endless_headers_are_cut_off(self) -> None:
        await self.flooded(b"HTTP/1.1 200 OK\r\n", b"X-Pad: " + b"a" * 1000 + b"\r\n")

    @inline
    async def test_a_gzip_bomb_past_the_limit_is_cut_off_on_its_compressed_bytes(self) -> None:
        bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), 9)
        self.assertGreater(len(bomb), 64 * 1024)
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
        flood = FloodServer(head + bomb, b"")
        url = await serve_flood(self, flood)
        with self.assertRaises(AnswerTooLargeError):
            await self.post(self.client(None), url + "/hook")

    @inline
    async def test_a_compressed_answer_is_never_inflated_nor_asked_for(self) -> None:
        bomb = gzip.compress(b"\0" * (30 * 1024 * 1024), 9)
        self.assertLess(len(bomb), 64 * 1024)
        receiver = Recorder(body=bomb, headers={b"content-encoding": b"gzip"})
        url = await serve(self, receiver)
        answer = await self.post(self.client(AddressPolicy.from_config(["127.0.0.1"])), url + "/push")
        self.assertEqual(answer.body, bomb, "the compressed bytes, as they came")
        self.assertNotIn(b"accept-encoding", receiver.requests[0][2])

    @inline
    async def test_an_answer_within_the_limits_is_read_whole(self) -> None:
        receiver = Recorder(body=b"b" * 1000)
        url = await serve(self, receiver)
        answer = await self.post(self.client(None, body=1000), url + "/hook")
        self.assertEqual(answer.body, b"b" * 1000)
        receiver.body = b"b" * 1001
        with self.assertRaises(AnswerTooLargeError):
            await self.post(self.client(None, body=1000), url + "/hook")

    @inline
    async def test_a_deadline_in_the_middle_of_a_body_aborts_the_connection(self) -> None:
        # Headers and a little of a body that never ends, then silence.
        flood = FloodServer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc", b"")
        url = await serve_flood(self, flood)
        with self.assertRaises(defer.TimeoutError):
            await self.post(self.client(None), url + "/hook", timeout=0.5)
        await until(lambda: flood.lost == 1, what="the connection to be aborted")
