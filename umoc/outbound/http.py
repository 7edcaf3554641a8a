"""Requests through an `OutboundAgent`, with one deadline over the whole exchange: connect, send, read the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from umoc.config import OutboundConfig
from umoc.outbound.agent import AddressPolicy, AnswerLimits, OutboundAgent

__all__ = ["HttpClient", "HttpClients", "HttpResult", "destination"]


@dataclass(frozen=True, slots=True)
class HttpResult:
    code: int
    body: bytes
    headers: dict[str, str]


def destination(url: str) -> str:
    """What the queue's per-destination bound counts by: scheme, host and port."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class HttpClient:
    """POSTs (and GETs) with a deadline; a connection pool kept per client, so push services see few connections.

    With a ``policy`` it is the guarded client for client-chosen URLs (see
    `umoc.outbound.agent`); without, the trusted one for the operator's.
    Either way answers are bounded by ``limits`` and redirects not followed.
    """

    def __init__(
        self,
        reactor: Any,
        clock: IReactorTime | None = None,
        limits: AnswerLimits | None = None,
        policy: AddressPolicy | None = None,
    ) -> None:
        self._clock: IReactorTime = clock or reactor
        self.agent = OutboundAgent(reactor, limits or AnswerLimits(), policy)

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> defer.Deferred[HttpResult]:
        """The answer, or a `defer.TimeoutError` (or connection error, `RefusedAddressError`, `AnswerTooLargeError`)
        past ``timeout`` seconds."""
        d = self.agent.request(b"POST", url, headers, body)
        d.addTimeout(timeout, self._clock)
        return d.addCallback(lambda answer: HttpResult(answer.code, answer.body, answer.headers))

    def get(self, url: str, headers: dict[str, str], timeout: float) -> defer.Deferred[HttpResult]:
        """A GET (an identity provider's key set), bounded and with a deadline like `post`."""
        d = self.agent.request(b"GET", url, headers, None)
        d.addTimeout(timeout, self._clock)
        return d.addCallback(lambda answer: HttpResult(answer.code, answer.body, answer.headers))

    def close(self) -> defer.Deferred[None]:
        return self.agent.close()


@dataclass(frozen=True)
class HttpClients:
    """A node's two clients: ``guarded`` for client-chosen URLs (Web Push endpoints), ``trusted`` for the
    operator's (push gateways, webhooks, an identity provider's key set).  Both bound answers and follow no
    redirects."""

    guarded: HttpClient
    trusted: HttpClient

    @classmethod
    def from_config(cls, reactor: Any, clock: IReactorTime, config: OutboundConfig) -> HttpClients:
        limits = AnswerLimits(body=config.max_answer_body, headers=config.max_answer_headers)
        policy = AddressPolicy.from_config(config.allowed_hosts)
        return cls(HttpClient(reactor, clock, limits, policy), HttpClient(reactor, clock, limits))

    def close(self) -> defer.Deferred[Any]:
        return defer.DeferredList([self.guarded.close(), self.trusted.close()], consumeErrors=True)
