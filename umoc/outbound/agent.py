"""The one outbound HTTP agent: refused addresses, answers read with a byte limit, no redirects.

Every URL UMOC fetches goes through an `OutboundAgent`.  A client-chosen
URL (a Web Push subscription's endpoint) goes through a *guarded* one, built
with an `AddressPolicy`; the operator's own URLs (push gateways, webhooks)
through a trusted one with the same bounds but no address policy.  The
guard, modelled on Synapse's ``BlocklistingReactorWrapper`` and
``BlocklistingAgentWrapper`` (``synapse/http/client.py``), checks three
times::

    request     the URL's host, when it is an address in any spelling inet_aton accepts
                (2130706433, 0x7f000001, 0177.0.0.1, 127.1) or an IPv6 literal
    resolution  every address a name resolves to (DNS rebinding): one refused address and
                the name resolves to nothing, so nothing is connected to
    connect     the literal address given to connectTCP, again; anything but a literal address
                (which connectTCP would resolve on its own) is refused too

Refused, unless inside an operator's ``outbound.allowed_hosts`` network:
loopback, private (RFC 1918, unique local), carrier-grade NAT (100.64/10),
link-local, multicast, reserved, unspecified, documentation and benchmark
ranges, IPv4-mapped and IPv4-compatible IPv6, NAT64 (64:ff9b::/96 and
64:ff9b:1::/48), everything outside global unicast IPv6 (2000::/3),
Teredo with the rest of 2001::/23, and 6to4 (2002::/16) when the IPv4
address it embeds is refused.

Answers are bounded whatever the agent: the status line and headers
(``max_headers`` bytes), then at most ``max_headers + max_body`` bytes on
the wire in all, counted by the connection's protocol as they arrive; a body
(after transfer decoding, never content decoding) of more than ``max_body``
bytes.  Past a bound the connection is aborted and the request fails with
`AnswerTooLargeError`.  No ``Accept-Encoding`` is sent and a compressed body is
never inflated: its bytes are the body.  Redirects are never followed: a
3xx is an answer like any other.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.address import IPv4Address as TwistedIPv4
from twisted.internet.address import IPv6Address as TwistedIPv6
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
    IResolutionReceiver,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import HEADER, STATUS, HTTP11ClientProtocol
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

__all__ = [
    "AddressPolicy",
    "Answer",
    "AnswerLimits",
    "AnswerTooLargeError",
    "GuardedReactor",
    "OutboundAgent",
    "RefusedAddressError",
    "ip_literal",
    "refused",
]

log = Logger()

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REFUSED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # former 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
#: Only global unicast IPv6 is reachable; this excludes ::1, ::, IPv4-mapped (::ffff:0:0/96) and
#: -compatible (::/96), NAT64 (64:ff9b::/96, 64:ff9b:1::/48), unique local, link- and site-local, multicast.
_GLOBAL_V6 = ipaddress.IPv6Network("2000::/3")
_REFUSED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments: Teredo (2001::/32), ORCHID, benchmarking
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
    )
)
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def refused(address: IPAddress) -> bool:
    """Whether ``address`` is one no outbound request may reach (before the operator's allow-list)."""
    if isinstance(address, ipaddress.IPv4Address):
        return any(address in network for network in _REFUSED_V4)
    if address.scope_id:
        return True
    if address not in _GLOBAL_V6 or any(address in network for network in _REFUSED_V6):
        return True
    if address in _SIX_TO_FOUR:
        embedded = address.sixtofour
        return embedded is None or refused(embedded)
    return False


_V4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def _ipv4_literal(text: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any spelling ``inet_aton`` accepts: 1 to 4 parts, each decimal, octal
    (leading 0) or hex (0x), the last filling the bytes left (``127.1``, ``2130706433``)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.fullmatch(p) for p in parts):
        return None
    values = [int(p[2:] or "0", 16) if p[:2].lower() == "0x" else int(p, 8 if p.startswith("0") else 10) for p in parts]
    last_bits = 8 * (5 - len(parts))
    if any(v > 255 for v in values[:-1]) or values[-1] >= 1 << last_bits:
        return None
    number = values[-1]
    for i, value in enumerate(values[:-1]):
        number |= value << (24 - 8 * i)
    return ipaddress.IPv4Address(number)


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells (a URL's host: brackets, a zone and one trailing dot allowed), or None
    for a name."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.replace("%25", "%"))
        except ValueError:
            return None
    return _ipv4_literal(text[:-1] if text.endswith(".") else text)


@dataclass(frozen=True)
class AddressPolicy:
    """The refused addresses, less the operator's ``outbound.allowed_hosts`` networks."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, allowed_hosts: Iterable[str]) -> AddressPolicy:
        return cls(tuple(ipaddress.ip_network(entry, strict=False) for entry in allowed_hosts))

    def permits(self, address: IPAddress) -> bool:
        if any(address.version == n.version and address in n for n in self.allowed):
            return True
        return not refused(address)

    def permits_text(self, host: str) -> bool:
        """For connectTCP: only a literal address in its plain form, and a permitted one."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return self.permits(address)


class RefusedAddressError(ConnectError):
    """The URL's host, or the address it resolved to, is refused by the outbound policy."""


class AnswerTooLargeError(Exception):
    """The answer's headers or body went past their byte limit: the connection was aborted."""


# -- the guard: resolution and connect ---------------------------------------------------------------


@implementer(IHostnameResolver)
class _GuardedResolver:
    """The reactor's resolver, passing on a name's addresses only when every one is permitted."""

    def __init__(self, resolver: IHostnameResolver, policy: AddressPolicy) -> None:
        self._resolver = resolver
        self._policy = policy

    def resolveHostName(  # noqa: N802 - Twisted's interface
        self,
        resolutionReceiver: IResolutionReceiver,  # noqa: N803
        hostName: str,  # noqa: N803
        portNumber: int = 0,  # noqa: N803
        addressTypes: Any = None,  # noqa: N803
        transportSemantics: str = "TCP",  # noqa: N803
    ) -> IHostResolution:
        found: list[IAddress] = []
        policy = self._policy

        @implementer(IResolutionReceiver)
        class Receiver:
            @staticmethod
            def resolutionBegan(resolution: IHostResolution) -> None:  # noqa: N802
                resolutionReceiver.resolutionBegan(resolution)

            @staticmethod
            def addressResolved(address: IAddress) -> None:  # noqa: N802
                found.append(address)

            @staticmethod
            def resolutionComplete() -> None:  # noqa: N802
                bad = [
                    str(getattr(a, "host", a))
                    for a in found
                    if not isinstance(a, (TwistedIPv4, TwistedIPv6)) or not policy.permits_text(a.host)
                ]
                if bad:
                    # One refused address refuses the name: the connection must not race to it.
                    log.info("Outbound: {name} resolved to refused {addresses}", name=hostName, addresses=bad)
                else:
                    for address in found:
                        resolutionReceiver.addressResolved(address)
                resolutionReceiver.resolutionComplete()

        return self._resolver.resolveHostName(Receiver(), hostName, portNumber, addressTypes, transportSemantics)


@implementer(IReactorTCP, IReactorTime, IReactorPluggableNameResolver)
class GuardedReactor:
    """The reactor, but names resolve only to permitted addresses and connectTCP reaches only those."""

    def __init__(self, reactor: Any, policy: AddressPolicy) -> None:
        self._reactor = reactor
        self._policy = policy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    @property
    def nameResolver(self) -> IHostnameResolver:  # noqa: N802 - Twisted's interface
        """The reactor's resolver (whichever is installed now), guarded."""
        return _GuardedResolver(self._reactor.nameResolver, self._policy)

    def connectTCP(self, host: str, port: int, factory: Any, timeout: float = 30, bindAddress: Any = None) -> Any:  # noqa: N802, N803
        if not self._policy.permits_text(host):
            log.info("Outbound: refused a connection to {host}", host=host)
            raise RefusedAddressError(string=f"refused address {host}")
        return self._reactor.connectTCP(host, port, factory, timeout, bindAddress)

    def connectSSL(  # noqa: N802
        self,
        host: str,
        port: int,
        factory: Any,
        contextFactory: Any,
        timeout: float = 30,
        bindAddress: Any = None,  # noqa: N803
    ) -> Any:
        if not self._policy.permits_text(host):
            log.info("Outbound: refused a connection to {host}", host=host)
            raise RefusedAddressError(string=f"refused address {host}")
        return self._reactor.connectSSL(host, port, factory, contextFactory, timeout, bindAddress)

    def connectUNIX(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        raise RefusedAddressError(string="no UNIX sockets for outbound requests")


# -- bounded answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerLimits:
    #: Most bytes of an answer's body (as received, never inflated).
    body: int = 64 * 1024
    #: Most bytes of its status line and headers.
    headers: int = 16 * 1024


@dataclass(frozen=True)
class Answer:
    code: int
    headers: dict[str, str]
    body: bytes


class _BoundedClientProtocol(HTTP11ClientProtocol):
    """HTTP/1.1 client that counts what each answer brings and aborts the connection past the limits."""

    def __init__(self, quiescentCallback: Callable[[Any], None], limits: AnswerLimits) -> None:  # noqa: N803
        super().__init__(quiescentCallback)
        self._limits = limits
        self._received = 0
        self._serial = 0
        #: Why the current answer was cut off (too large, cancelled), once it was.
        self.cut_reason: Exception | None = None

    def request(self, request: Any) -> defer.Deferred[Any]:
        self._received = 0
        self._serial += 1
        self.cut_reason = None
        serial = self._serial
        d = super().request(request)
        return d.addCallback(lambda response: _Exchange(response, self, serial))

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.cut_reason is not None:
            return
        self._received += len(data)
        if self._received > self._limits.headers + self._limits.body:
            self.cut(self._serial, AnswerTooLargeError(f"answer past {self._limits.headers + self._limits.body} bytes"))
            return
        super().dataReceived(data)
        parser = self._parser
        if parser is not None and parser.state in (STATUS, HEADER) and self._received > self._limits.headers:
            self.cut(self._serial, AnswerTooLargeError(f"answer headers past {self._limits.headers} bytes"))

    def cut(self, serial: int, reason: Exception) -> None:
        """Abort the connection while it serves answer ``serial``; what waits on it fails with ``reason``."""
        if serial != self._serial or self.cut_reason is not None:
            return
        self.cut_reason = reason
        transport: Any = self.transport
        transport.abortConnection()
        if self._state == "WAITING":
            # Fail what waits now, with the reason; the connectionLost that follows finds nothing to fail.
            self._disconnectParser(Failure(reason))


@dataclass(frozen=True)
class _Exchange:
    response: IResponse
    protocol: _BoundedClientProtocol
    serial: int

    def cut(self, reason: Exception) -> None:
        self.protocol.cut(self.serial, reason)

    @property
    def cut_reason(self) -> Exception | None:
        return self.protocol.cut_reason if self.protocol._serial == self.serial else None


class _BoundedFactory(Factory):
    def __init__(self, quiescentCallback: Callable[[Any], None], metadata: Any, limits: AnswerLimits) -> None:  # noqa: N803
        self._quiescentCallback = quiescentCallback
        self._limits = limits

    def buildProtocol(self, addr: Any) -> _BoundedClientProtocol:  # noqa: N802
        return _BoundedClientProtocol(self._quiescentCallback, self._limits)


class _BoundedPool(HTTPConnectionPool):
    """A connection pool whose connections speak `_BoundedClientProtocol`."""

    def __init__(self, reactor: Any, limits: AnswerLimits) -> None:
        super().__init__(reactor, persistent=True)
        self._limits = limits
        self.maxPersistentPerHost = 4
        self.retryAutomatically = False

    def _factory(self, quiescentCallback: Callable[[Any], None], metadata: Any) -> _BoundedFactory:  # type: ignore[override]  # noqa: N803
        return _BoundedFactory(quiescentCallback, metadata, self._limits)


class _BodyReader(Protocol):
    """Collects at most ``limit`` bytes of a body; past it the connection is cut."""

    def __init__(self, exchange: _Exchange, limit: int) -> None:
        self._exchange = exchange
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.done: defer.Deferred[bytes] = defer.Deferred(lambda _: exchange.cut(defer.CancelledError()))

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._exchange.cut(AnswerTooLargeError(f"answer body past {self._limit} bytes"))
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]  # noqa: N802
        if self.done.called:
            return
        cut = self._exchange.cut_reason
        if cut is not None:
            self.done.errback(Failure(cut))
        elif reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(reason)


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body already in memory, written at once."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:  # noqa: N802
        consumer.write(self._body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        pass

    def resumeProducing(self) -> None:  # noqa: N802
        pass

    def stopProducing(self) -> None:  # noqa: N802
        pass


def _unwrap(failure: Failure) -> Failure:
    """A `ResponseFailed` or `RequestTransmissionFailed` carrying `AnswerTooLargeError`: that instead."""
    for reason in getattr(failure.value, "reasons", ()):
        if isinstance(reason, Failure) and reason.check(AnswerTooLargeError):
            return reason
    return failure


class OutboundAgent:
    """Requests through a bounded connection pool; guarded when given an `AddressPolicy`."""

    def __init__(self, reactor: Any, limits: AnswerLimits, policy: AddressPolicy | None = None) -> None:
        self.policy = policy
        self.limits = limits
        self.reactor = GuardedReactor(reactor, policy) if policy is not None else reactor
        self._pool = _BoundedPool(self.reactor, limits)
        self._agent = Agent(self.reactor, pool=self._pool)

    def check_url(self, url: str) -> None:
        """`RefusedAddressError` (or ValueError) for a URL this agent must not request, before any DNS."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        if self.policy is None:
            return
        address = ip_literal(parts.hostname)
        if address is not None and not self.policy.permits(address):
            log.info("Outbound: refused a request to {address}", address=str(address))
            raise RefusedAddressError(string=f"refused address {address}")

    def request(self, method: bytes, url: str, headers: dict[str, str], body: bytes | None) -> defer.Deferred[Answer]:
        """The answer (its body bounded); cancelling the Deferred aborts the connection."""
        return defer.ensureDeferred(self._request(method, url, headers, body))

    async def _request(self, method: bytes, url: str, headers: dict[str, str], body: bytes | None) -> Answer:
        self.check_url(url)
        producer = _BytesProducer(body) if body is not None else None
        raw_headers = Headers({k.encode("latin-1"): [v.encode("latin-1")] for k, v in headers.items()})
        # The pool's `_BoundedClientProtocol` answers with an `_Exchange`, not the bare response.
        d: defer.Deferred[Any] = self._agent.request(method, url.encode("utf-8"), raw_headers, producer)
        exchange: _Exchange = await d.addErrback(_unwrap)
        reader = _BodyReader(exchange, self.limits.body)
        exchange.response.deliverBody(reader)
        content = await reader.done
        response = exchange.response
        answer_headers = {
            k.decode("latin-1").lower(): v[0].decode("latin-1") for k, v in response.headers.getAllRawHeaders()
        }
        return Answer(response.code, answer_headers, content)

    def close(self) -> defer.Deferred[None]:
        return self._pool.closeCachedConnections()
