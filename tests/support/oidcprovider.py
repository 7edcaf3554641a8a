"""The certified `oidc-provider` npm package as a real OpenID provider (tests/js/oidc_provider.mjs), and a
small browser that walks its pages: a cookie jar, redirects followed one by one, HTML forms submitted.

Needs ``node`` and ``npm install`` (package.json lists oidc-provider among its development dependencies);
`MISSING` says which is absent, for a test's ``skip``.
"""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet import defer, protocol, reactor
from twisted.web.client import Agent, HTTPConnectionPool

__all__ = ["MISSING", "Browser", "NodeOpenIdProvider", "Page"]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "oidc_provider.mjs"
NODE = shutil.which("node")
MISSING = (
    "node is not installed"
    if NODE is None
    else "node_modules/oidc-provider is missing: run npm install"
    if not (ROOT / "node_modules" / "oidc-provider").is_dir()
    else None
)


class _ProviderProcess(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.started: defer.Deferred[str] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._out = b""
        self.err = b""
        #: The JSON lines after the first (the token requests), parsed.
        self.reports: list[dict[str, Any]] = []

    def outReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self._out += data
        while b"\n" in self._out:
            line, self._out = self._out.split(b"\n", 1)
            if not line.startswith(b'{"'):
                continue  # the package's own output (its development interactions log to stdout)
            if not self.started.called:
                self.started.callback(json.loads(line)["issuer"])
            else:
                self.reports.append(json.loads(line))

    def errReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.err += data

    def processEnded(self, reason: Any) -> None:  # noqa: N802 - Twisted's name
        if not self.started.called:
            self.started.errback(RuntimeError("oidc_provider.mjs ended: " + self.err.decode(errors="replace")))
        self.ended.callback(None)


class NodeOpenIdProvider:
    """oidc-provider under Node on 127.0.0.1 port 0, with one client (see tests/js/oidc_provider.mjs for
    ``options``: ``token_endpoint_auth_method``, ``names_in_id_token``)."""

    def __init__(
        self, client_id: str, client_secret: str, redirect_uri: str, options: dict[str, Any] | None = None
    ) -> None:
        self._args = [client_id, client_secret, redirect_uri, "0", json.dumps(options or {})]
        self._process = _ProviderProcess()
        self.issuer = ""

    async def start(self) -> str:
        """Start it; its issuer URL once it listens."""
        assert NODE is not None
        reactor.spawnProcess(
            self._process, NODE, [NODE, str(SCRIPT), *self._args], env=dict(os.environ), path=str(ROOT)
        )
        self.issuer = await self._process.started
        return self.issuer

    @property
    def token_requests(self) -> list[tuple[str, int]]:
        """How the client authenticated at each token request so far, and the provider's status code."""
        return [(report["token_request"], report["status"]) for report in self._process.reports]

    async def stop(self) -> None:
        """Close its stdin (it exits) and wait for the process to end."""
        if not self._process.ended.called:
            self._process.transport.closeStdin()  # type: ignore[union-attr]
            await self._process.ended


class _Forms(HTMLParser):
    """A page's forms (action and fields) and links."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in a:
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])


class Page:
    """One response: its status, its absolute URL and Location (if any), its body, and its forms."""

    def __init__(self, url: str, code: int, location: str | None, body: str) -> None:
        self.url, self.code, self.body = url, code, body
        self.location = urljoin(url, location) if location is not None else None
        parser = _Forms()
        parser.feed(body)
        self.forms = [(urljoin(url, action), fields) for action, fields in parser.forms]
        self.links = [urljoin(url, href) for href in parser.links]


class Browser:
    """Requests with one cookie jar (cookies for 127.0.0.1 go to every port, as a browser's do), redirects left
    to the caller, and ``hosts``: public names mapped to where the servers listen, as DNS or a proxy would."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.jar = IndexableCookieJar()
        self.hosts = hosts
        self._http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)), self.jar)

    def _resolve(self, url: str) -> str:
        parts = urlsplit(url)
        netloc = self.hosts.get(parts.netloc, parts.netloc)
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    async def open(self, url: str, form: dict[str, str] | None = None) -> Page:
        """GET ``url``, or POST ``form`` to it (urlencoded), without following a redirect."""
        target = self._resolve(url)
        if form is None:
            response = await self._http.get(target, allow_redirects=False)
        else:
            response = await self._http.post(target, data=form, allow_redirects=False)
        location = response.headers.getRawHeaders("location")
        return Page(url, response.code, location[0] if location else None, await response.text("utf-8"))

    async def follow(self, url: str, stop_at: str) -> Page:
        """GET ``url`` and follow redirects until a page that is not one, or one to a URL under ``stop_at``
        (returned unfollowed)."""
        page = await self.open(url)
        while page.location is not None and not page.location.startswith(stop_at):
            page = await self.open(page.location)
        return page
