"""Fetching a link preview: the page through the guarded agent, its metadata, its image thumbnailed.

Every request goes through a guarded `OutboundAgent` (the address policy at
the URL, at resolution and at connect), so a message cannot make UMOC
reach loopback, private or link-local addresses unless the operator listed
them in ``outbound.allowed_hosts``.  Redirects are followed here, not by
the agent, at most ``previews.max_redirects``, each target a new request the
agent checks again from scratch.  The whole fetch has one deadline
(``previews.timeout``); answers are bounded in bytes (``previews.max_page_size``,
``previews.max_image_size``) by the agent as they arrive.  No cookies,
no credentials: a URL with a user name or password is not fetched at all.

The page is parsed with the standard library's `html.parser`: no
maintained third-party HTML parser (lxml, html5lib, BeautifulSoup) is a
dependency of UMOC, and reading ``<meta>`` and ``<title>`` from the head
needs no tree; html.parser is maintained with CPython, tolerant of broken
markup and pure Python (no C library to harden).  Being pure Python it is
slow (a megabyte of tags is a second of CPU), so it is fed a piece at a time,
stops at the end of the head, and runs in one of the thumbnailer's decoding
threads, never on the reactor.

The page's image (``og:image``) is fetched once, thumbnailed with the same
code as shared images (format sniffed, pixel limit, metadata stripped; the
domain's thumbnailer is handed in), straight from the bytes fetched and in
the thumbnailer's threads (no file is read or written on the reactor), and
kept under ``<uploads>/previews/``; clients get UMOC's copy, never the
site's URL.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import PreviewsConfig
from umoc.outbound.agent import AddressPolicy, Answer, AnswerLimits, OutboundAgent

__all__ = ["FetchedPreview", "PreviewFetcher", "first_url", "parse_page"]

log = Logger()

#: A candidate URL in message text; trailing punctuation is trimmed after.
_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""
MAX_URL = 2048
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_HEADERS = {"User-Agent": "UMOC link preview", "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"}
_LIMITS = {"title": 300, "description": 1000, "site_name": 100}


def first_url(text: str) -> str | None:
    """The first http(s) URL in ``text`` (closing punctuation not included), or None."""
    match = _URL.search(text)
    if match is None:
        return None
    url = match.group(0).rstrip(_TRAILING)
    parts = urlsplit(url)
    if not parts.hostname or len(url) > MAX_URL:
        return None
    return url


@dataclass(frozen=True, slots=True)
class PageMetadata:
    title: str | None
    description: str | None
    site_name: str | None
    image: str | None


@dataclass(frozen=True, slots=True)
class FetchedPreview:
    """What a fetch found: the page's texts and the id of UMOC's copy of its image (None: no image)."""

    title: str | None
    description: str | None
    site_name: str | None
    image_id: str | None


class _HeadParser(HTMLParser):
    """``<meta property|name=... content=...>`` and ``<title>`` up to the start of ``<body>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title: list[str] = []
        self._in_title = False
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "body":
            self.done = True
        elif tag == "title":
            self._in_title = True
        elif tag == "meta":
            values = {k.lower(): v for k, v in attrs if v is not None}
            key = (values.get("property") or values.get("name") or "").strip().lower()
            if key and "content" in values:
                self.meta.setdefault(key, values["content"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "head":
            self.done = True

    def handle_data(self, data: str) -> None:
        if self._in_title and not self.done:
            self.title.append(data)


def _clean(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    text = " ".join(value.split())
    return text[: _LIMITS[field]] or None


def _charset(answer: Answer) -> str:
    """The Content-Type's charset, else a ``<meta charset>`` near the top, else UTF-8."""
    found = re.search(r"charset=[\"']?([\w.:-]+)", answer.headers.get("content-type", ""), re.IGNORECASE)
    if found is not None:
        return found.group(1)
    meta = re.search(rb"<meta[^>]+charset=[\"']?([\w.:-]+)", answer.body[:2048], re.IGNORECASE)
    return meta.group(1).decode("ascii", "replace") if meta is not None else "utf-8"


#: Characters handed to the HTML parser at a time, so it stops soon after the head.
_PARSE_PIECE = 16 * 1024


def parse_page(body: bytes, charset: str = "utf-8") -> PageMetadata:
    """OpenGraph first (``og:title``, ``og:description``, ``og:site_name``, ``og:image``), then plain HTML.

    CPU-bound (pure-Python parsing of up to ``previews.max_page_size``): the fetcher runs it in a thread.
    """
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    parser = _HeadParser()
    try:
        # A piece at a time, stopping at the end of the head: the body (most of a page, often
        # most of a megabyte of tags) would cost html.parser a second of CPU for nothing.
        for start in range(0, len(text), _PARSE_PIECE):
            parser.feed(text[start : start + _PARSE_PIECE])
            if parser.done:
                break
        parser.close()
    except Exception:  # noqa: BLE001 - html.parser is tolerant; anything left is a page with no preview
        pass
    meta = parser.meta
    title = meta.get("og:title") or meta.get("twitter:title") or "".join(parser.title)
    description = meta.get("og:description") or meta.get("twitter:description") or meta.get("description")
    image = meta.get("og:image:secure_url") or meta.get("og:image") or meta.get("twitter:image")
    return PageMetadata(
        _clean(title, "title"),
        _clean(description, "description"),
        _clean(meta.get("og:site_name"), "site_name"),
        image.strip() if image else None,
    )


class PreviewFetcher:
    """Fetch a URL's preview; None for anything refused, failed, too large, not HTML or without a title."""

    def __init__(
        self,
        reactor: Any,
        clock: IReactorTime,
        config: PreviewsConfig,
        policy: AddressPolicy,
        thumbnail: Callable[[bytes, Callable[[str], Path]], defer.Deferred[Any]],
        image_path: Callable[[str, str], Path],
        max_headers: int = 16 * 1024,
        in_thread: Callable[..., defer.Deferred[Any]] | None = None,
    ) -> None:
        self._clock = clock
        self.config = config
        self._pages = OutboundAgent(reactor, AnswerLimits(body=config.max_page_size, headers=max_headers), policy)
        self._images = OutboundAgent(reactor, AnswerLimits(body=config.max_image_size, headers=max_headers), policy)
        #: `umoc.domain.thumbnails.Thumbnailer.run`: None when the bytes are no image it will decode.
        self._thumbnail = thumbnail
        #: Where an image's thumbnail of a size goes (`umoc.domain.files.FileManager.preview_image_path`).
        self.image_path = image_path
        #: Runs `parse_page` off the reactor (`umoc.domain.thumbnails.Thumbnailer.cpu`); inline when None.
        self._in_thread = in_thread or defer.maybeDeferred

    async def fetch(self, url: str) -> FetchedPreview | None:
        page = await self._get(self._pages, url)
        if page is None:
            return None
        final_url, answer = page
        if answer.code != 200 or "html" not in answer.headers.get("content-type", "text/html").lower():
            return None
        # A head of a megabyte of tags still takes html.parser about a second: not on the reactor.
        meta = await self._in_thread(parse_page, answer.body, _charset(answer))
        if meta.title is None and meta.description is None:
            return None
        image_id = None
        if meta.image is not None:
            image_id = await self._image(urljoin(final_url, meta.image))
        return FetchedPreview(meta.title, meta.description, meta.site_name, image_id)

    async def _get(self, agent: OutboundAgent, url: str) -> tuple[str, Answer] | None:
        """GET ``url``, following redirects; the last URL and its answer, or None on any failure."""
        deadline = self._clock.seconds() + self.config.timeout
        for _ in range(self.config.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or parts.username is not None or parts.password is not None:
                return None
            remaining = deadline - self._clock.seconds()
            if remaining <= 0:
                return None
            d = agent.request(b"GET", url, dict(_HEADERS), None)
            d.addTimeout(remaining, self._clock)
            try:
                answer = await d
            except Exception as failure:  # noqa: BLE001 - refused, unreachable, too large, too slow: no preview
                log.info("Link preview of {host} failed: {why}", host=parts.hostname, why=type(failure).__name__)
                return None
            location = answer.headers.get("location")
            if answer.code not in _REDIRECTS or not location:
                return url, answer
            url = urljoin(url, location)
        return None

    async def _image(self, url: str) -> str | None:
        """Fetch the page's image once and thumbnail it (from memory, in a thread); its id, or None."""
        got = await self._get(self._images, url)
        if got is None or got[1].code != 200:
            return None
        image_id = str(uuid.uuid4())
        info = await self._thumbnail(got[1].body, lambda size: self.image_path(image_id, size))
        return image_id if info is not None else None

    def close(self) -> defer.Deferred[Any]:
        return defer.DeferredList([self._pages.close(), self._images.close()], consumeErrors=True)
