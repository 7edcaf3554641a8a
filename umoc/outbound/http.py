"""treq with one deadline over the whole exchange: connect, send, and read the (bounded) answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import treq
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import Agent, HTTPConnectionPool

__all__ = ["HttpClient", "HttpResult", "destination"]

#: Most bytes of an answer read; push services and webhook receivers answer briefly.
MAX_ANSWER = 64 * 1024


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
    """POSTs with a deadline; a connection pool kept per node, so push services see few connections."""

    def __init__(self, reactor: Any, clock: IReactorTime | None = None) -> None:
        self._clock: IReactorTime = clock or reactor
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 4
        self._pool.retryAutomatically = False
        self._client = HTTPClient(Agent(reactor, pool=self._pool))

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> defer.Deferred[HttpResult]:
        """The answer, or a `defer.TimeoutError` (or connection error) past ``timeout`` seconds."""
        d = defer.ensureDeferred(self._post(url, body, headers))
        d.addTimeout(timeout, self._clock)
        return d

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpResult:
        raw: dict[bytes | str, list[bytes | str]] = {k: [v] for k, v in headers.items()}
        response = await self._client.post(url.encode("utf-8"), data=body, headers=raw)
        content = await treq.content(response)
        answer_headers = {
            k.decode("latin-1").lower(): v[0].decode("latin-1") for k, v in response.headers.getAllRawHeaders()
        }
        return HttpResult(response.code, content[:MAX_ANSWER], answer_headers)

    def close(self) -> defer.Deferred[None]:
        return self._pool.closeCachedConnections()
