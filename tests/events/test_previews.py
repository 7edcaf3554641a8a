"""Link previews: a real HTTP server on 127.0.0.1 serves the page and its image; both databases.

Loopback is refused by the outbound policy, so these tests list 127.0.0.1
in ``outbound.allowed_hosts``, as an operator would an internal site; the
refusal itself is tested with that list empty, and with a redirect to
127.0.0.2, which it does not cover (Linux routes all of 127/8 to loopback).
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web import resource, server

from tests.domain.test_thumbnails import image_bytes
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from umoc.outbound import previews
from umoc.outbound.previews import first_url, parse_page

PAGE = b"""<!doctype html><html><head><meta charset="utf-8">
<title>Plain title</title>
<meta property="og:title" content="Caf\xc3\xa9 &amp; Co">
<meta property="og:description" content="  The best   coffee. ">
<meta property="og:site_name" content="Example">
<meta property="og:image" content="/img.png">
</head><body><meta property="og:title" content="not this"></body></html>"""


class Site(resource.Resource):
    """Pages by path, counting the requests each got; a path may redirect instead."""

    isLeaf = True

    def __init__(self, pages: dict[bytes, tuple[str, bytes]], redirects: dict[bytes, bytes] | None = None) -> None:
        super().__init__()
        self.pages = pages
        self.redirects = redirects or {}
        self.hits: dict[bytes, int] = {}

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - twisted.web's name
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        request.setHeader(b"Connection", b"close")  # nothing left open when the test ends
        if request.path in self.redirects:
            request.setResponseCode(302)
            request.setHeader(b"Location", self.redirects[request.path])
            return b""
        if request.path not in self.pages:
            request.setResponseCode(404)
            return b"no"
        content_type, body = self.pages[request.path]
        request.setHeader(b"Content-Type", content_type.encode())
        return body


def listen(test: unittest.TestCase, site: Site, interface: str = "127.0.0.1") -> int:
    port = reactor.listenTCP(0, server.Site(site), interface=interface)  # type: ignore[attr-defined]
    test.addCleanup(port.stopListening)
    return int(port.getHost().port)


class ParsingTests(unittest.TestCase):
    def test_first_url_is_found_and_closing_punctuation_left_out(self) -> None:
        self.assertEqual(first_url("see (https://example.com/a?b=1)."), "https://example.com/a?b=1")
        self.assertEqual(first_url("http://a.example/x and https://b.example"), "http://a.example/x")
        self.assertIsNone(first_url("no link, just http talk"))
        self.assertIsNone(first_url("ftp://example.com/file"))

    def test_opengraph_first_then_html_and_only_the_head(self) -> None:
        meta = parse_page(PAGE)
        self.assertEqual(
            (meta.title, meta.description, meta.site_name, meta.image),
            ("Caf\u00e9 & Co", "The best coffee.", "Example", "/img.png"),
        )
        plain = parse_page(b"<html><head><title> Just a\n title </title><meta name=description content=Words></head>")
        self.assertEqual(
            (plain.title, plain.description, plain.site_name, plain.image), ("Just a title", "Words", None, None)
        )
        self.assertEqual(parse_page("<title>\u00e9t\u00e9</title>".encode("latin-1"), "latin-1").title, "\u00e9t\u00e9")

    def test_parsing_stops_soon_after_the_head_however_long_the_page(self) -> None:
        fed: list[int] = []
        real_feed = previews._HeadParser.feed
        self.patch(previews._HeadParser, "feed", lambda parser, text: fed.append(len(text)) or real_feed(parser, text))
        page = (
            b"<html><head><title>Long</title></head><body>"
            + b"<p><b>x</b><meta name=description content=no></p>" * 50_000
        )
        meta = parse_page(page)
        self.assertEqual((meta.title, meta.description), ("Long", None))
        self.assertEqual(len(fed), 1, "one piece, not the whole page")
        self.assertLess(sum(fed), len(page) // 100)


class PreviewFlowMixin:
    config_overrides = {
        "ratelimits": {"enabled": False},
        "messages": {"link_previews": True},
        "outbound": {"allowed_hosts": ["127.0.0.1"]},
    }

    @inline
    async def setUp(self) -> None:
        await super().setUp()  # type: ignore[misc]
        self.alice = await self.person("alice")
        self.bob = await self.person("bob")
        await self.befriend(self.alice, self.bob)
        self.site = Site(
            {b"/page": ("text/html; charset=utf-8", PAGE), b"/img.png": ("image/png", image_bytes("PNG", (800, 400)))}
        )
        self.port = listen(self, self.site)
        self.addCleanup(self.node.services.previews.close)

    async def settled_previews(self) -> None:
        await self.node.services.previews.idle()

    async def fetch(self, url: str) -> Any:
        who = self.bob
        return await self.server.http(
            "GET", url, None, {"X-Session-ID": who.login["sessionID"], "X-Session-Token": who.login["token"]}
        )

    @inline
    async def test_a_link_gets_its_card_live_and_in_history_and_is_fetched_once(self) -> None:
        url = f"http://127.0.0.1:{self.port}/page"
        other = await self.connect(self.bob.login)
        cursor = (await other.expect("connection_successful"))["cursor"]
        sent = await self.alice.call("send_message", recipient_id=self.bob.id, is_group=False, content=f"look: {url}")
        self.assertNotIn("preview", sent)
        await self.bob.client.expect("new_message")
        await self.settled_previews()
        shown = await self.bob.client.expect("message_preview")
        preview = shown["preview"]
        self.assertEqual(
            {k: v for k, v in shown.items() if k != "preview"},
            {"message_id": sent["message_id"], "chat_id": self.alice.id, "is_group": False},
        )
        self.assertTrue(preview["image_url"].startswith("/api/previews/"))
        self.assertEqual(
            {k: v for k, v in preview.items() if k != "image_url"},
            {"url": url, "title": "Caf\u00e9 & Co", "description": "The best coffee.", "site_name": "Example"},
        )
        mine = await self.alice.client.expect("message_preview")
        self.assertEqual((mine["chat_id"], mine["preview"]), (self.bob.id, preview))
        image = await self.fetch(preview["image_url"])
        self.assertEqual(image.code, 200)
        self.assertEqual(Image.open(io.BytesIO(image.body)).size, (320, 160))
        history = await self.bob.call("get_chat_history", chat_id=self.alice.id, is_group=False)
        self.assertEqual(history["messages"][-1]["preview"], preview)
        # sync carries it too (the feed row written with it), as the live event said.
        synced = await self.bob.call("sync", cursor=cursor)
        self.assertEqual(
            [(c["kind"], c["event"]) for c in synced["changes"]],
            [("message", "new_message"), ("preview", "message_preview")],
        )
        self.assertEqual(synced["changes"][1]["preview"], preview)
        # The same URL again: the cached card, no second request to the site.
        again = await self.alice.call("send_message", recipient_id=self.bob.id, is_group=False, content=url)
        await self.settled_previews()
        self.assertEqual((await self.bob.client.expect("message_preview"))["message_id"], again["message_id"])
        self.assertEqual((self.site.hits[b"/page"], self.site.hits[b"/img.png"]), (1, 1))

    @inline
    async def test_a_redirect_to_a_refused_address_gives_no_preview_and_reaches_nobody(self) -> None:
        blocked = Site({b"/secret": ("text/html", b"<title>internal</title>")})
        blocked_port = listen(self, blocked, "127.0.0.2")
        self.site.redirects[b"/away"] = f"http://127.0.0.2:{blocked_port}/secret".encode()
        sent = await self.alice.call(
            "send_message", recipient_id=self.bob.id, is_group=False, content=f"http://127.0.0.1:{self.port}/away"
        )
        await self.settled_previews()
        self.assertEqual(self.site.hits[b"/away"], 1)
        self.assertEqual(blocked.hits, {})
        history = await self.bob.call("get_chat_history", chat_id=self.alice.id, is_group=False)
        self.assertEqual(history["messages"][-1]["message_id"], sent["message_id"])
        self.assertNotIn("preview", history["messages"][-1])


for_each_backend(PreviewFlowMixin, InProcessChatCase, globals())


class RefusedByDefaultTests(InProcessChatCase):
    """With no ``outbound.allowed_hosts``, a loopback URL is never requested."""

    backend = "sqlite"
    config_overrides = {"ratelimits": {"enabled": False}, "messages": {"link_previews": True}}

    @inline
    async def test_loopback_is_refused(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        site = Site({b"/page": ("text/html", PAGE)})
        port = listen(self, site)
        self.addCleanup(self.node.services.previews.close)
        for host in ("127.0.0.1", "2130706433", "0x7f.0.0.1", "localhost"):
            await alice.call("send_message", recipient_id=bob.id, is_group=False, content=f"http://{host}:{port}/page")
        await self.node.services.previews.idle()
        self.assertEqual(site.hits, {})


class SlowSite(resource.Resource):
    """A page whose answer never ends: the client must give up on its own."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> Any:  # noqa: N802 - twisted.web's name
        request.setHeader(b"Content-Type", b"text/html")
        request.write(b"<html><head><title>slow")
        self.requests.append(request)
        return server.NOT_DONE_YET


class BoundedFetchTestsMixin:
    """A slow page and an oversized one give no preview; the limits are the configured ones."""

    config_overrides = {
        "ratelimits": {"enabled": False},
        "messages": {"link_previews": True},
        "outbound": {"allowed_hosts": ["127.0.0.1"]},
        "previews": {"timeout": "0.5s", "max_page_size": "64K"},
    }

    @inline
    async def setUp(self) -> None:
        await super().setUp()  # type: ignore[misc]
        self.alice = await self.person("alice")
        self.bob = await self.person("bob")
        await self.befriend(self.alice, self.bob)
        self.addCleanup(self.node.services.previews.close)

    async def history_after(self, url: str) -> dict[str, Any]:
        await self.alice.call("send_message", recipient_id=self.bob.id, is_group=False, content=url)
        await self.node.services.previews.idle()
        history = await self.bob.call("get_chat_history", chat_id=self.alice.id, is_group=False)
        return history["messages"][-1]

    @inline
    async def test_a_page_that_never_ends_gives_no_preview_after_the_timeout(self) -> None:
        slow = SlowSite()
        port = listen(self, slow)
        started = reactor.seconds()  # type: ignore[attr-defined]
        self.assertNotIn("preview", await self.history_after(f"http://127.0.0.1:{port}/slow"))
        self.assertEqual(len(slow.requests), 1)
        self.assertLess(reactor.seconds() - started, 5)  # type: ignore[attr-defined]

    @inline
    async def test_a_page_over_max_page_size_gives_no_preview(self) -> None:
        big = b"<html><head><title>Big</title></head><body>" + b"x" * 100_000 + b"</body></html>"
        site = Site({b"/big": ("text/html", big), b"/small": ("text/html", b"<title>Small</title>")})
        port = listen(self, site)
        self.assertNotIn("preview", await self.history_after(f"http://127.0.0.1:{port}/big"))
        self.assertEqual((await self.history_after(f"http://127.0.0.1:{port}/small"))["preview"]["title"], "Small")


for_each_backend(BoundedFetchTestsMixin, InProcessChatCase, globals())
