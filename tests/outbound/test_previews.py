"""The SSRF guard through the real preview fetcher: refused addresses, rebinding names, redirects.

The fetcher is built as the node builds it (guarded agents, the uploads'
thumbnailer) over the real reactor; pages are served on 127.0.0.1, which
the policy refuses unless allowed, and names resolve through a stub DNS.
Every refusal is checked on the listener too: it saw no request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image
from twisted.internet import reactor
from twisted.python import threadable
from twisted.trial import unittest

from tests.domain.test_thumbnails import image_bytes
from tests.events.test_previews import PAGE, Site, listen
from tests.outbound.test_agent import ReactorWithDNS, StubDNS
from tests.support.deferreds import inline
from umoc.config import PreviewsConfig
from umoc.domain.thumbnails import Thumbnailer
from umoc.outbound import previews
from umoc.outbound.agent import AddressPolicy
from umoc.outbound.previews import FetchedPreview, PreviewFetcher


class PreviewGuardTests(unittest.TestCase):
    def setUp(self) -> None:
        self.site = Site({b"/page": ("text/html", PAGE), b"/img.png": ("image/png", image_bytes("PNG", (100, 50)))})
        self.port = listen(self, self.site)
        self.images = Path(self.mktemp())

    def fetcher(self, allowed: list[str], dns: StubDNS | None = None) -> PreviewFetcher:
        base: Any = ReactorWithDNS(dns) if dns is not None else reactor
        fetcher = PreviewFetcher(
            base,
            reactor,  # type: ignore[arg-type]
            PreviewsConfig(),
            AddressPolicy.from_config(allowed),
            Thumbnailer(reactor, 1, 50_000_000).run,
            lambda image_id, size: self.images / f"{image_id}.{size}",
        )
        self.addCleanup(fetcher.close)
        return fetcher

    @inline
    async def test_every_spelling_and_family_of_a_refused_address_gives_nothing(self) -> None:
        fetcher = self.fetcher([])
        port = self.port
        for host in (
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "[::ffff:7f00:1]",
            "[::1]",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "240.0.0.1",
            "[fe80::1]",
            "[fc00::1]",
            "[64:ff9b::7f00:1]",
            "localhost",
        ):
            self.assertIsNone(await fetcher.fetch(f"http://{host}:{port}/page"), host)
        self.assertEqual(self.site.hits, {})

    @inline
    async def test_a_name_resolving_to_a_refused_address_is_refused_after_resolution(self) -> None:
        dns = StubDNS({"rebind.example.com": ["127.0.0.1"], "mixed.example.com": ["93.184.216.34", "127.0.0.1"]})
        refused = self.fetcher([], dns)
        for name in ("rebind.example.com", "mixed.example.com"):
            self.assertIsNone(await refused.fetch(f"http://{name}:{self.port}/page"), name)
        self.assertEqual(self.site.hits, {})
        # The same names with the address allowed get their preview: the refusal above was the guard's.
        allowed = self.fetcher(["127.0.0.1"], dns)
        found = await allowed.fetch(f"http://rebind.example.com:{self.port}/page")
        assert found is not None
        self.assertEqual(found.title, "Caf\u00e9 & Co")
        self.assertIsNotNone(found.image_id)

    @inline
    async def test_a_redirect_or_an_image_on_a_refused_address_reaches_nobody(self) -> None:
        inside = Site({b"/secret": ("text/html", b"<title>internal</title>"), b"/i.png": ("image/png", b"x")})
        inside_port = listen(self, inside, "127.0.0.2")
        self.site.redirects[b"/away"] = f"http://127.0.0.2:{inside_port}/secret".encode()
        self.site.pages[b"/card"] = (
            "text/html",
            f'<meta property="og:title" content="Card"><meta property="og:image" '
            f'content="http://127.0.0.2:{inside_port}/i.png">'.encode(),
        )
        fetcher = self.fetcher(["127.0.0.1"])
        self.assertIsNone(await fetcher.fetch(f"http://127.0.0.1:{self.port}/away"))
        # The page is allowed, its image is not: a card without an image.
        self.assertEqual(
            await fetcher.fetch(f"http://127.0.0.1:{self.port}/card"), FetchedPreview("Card", None, None, None)
        )
        self.assertEqual(inside.hits, {})

    @inline
    async def test_credentials_in_the_url_are_never_sent(self) -> None:
        fetcher = self.fetcher(["127.0.0.1"])
        self.assertIsNone(await fetcher.fetch(f"http://user:secret@127.0.0.1:{self.port}/page"))
        self.assertEqual(self.site.hits, {})


class PreviewImageThreadTests(unittest.TestCase):
    """The page's image is thumbnailed from memory; every file it makes is written off the reactor."""

    @inline
    async def test_a_preview_page_is_parsed_and_its_image_written_off_the_reactor_thread(self) -> None:
        site = Site({b"/page": ("text/html", PAGE), b"/img.png": ("image/png", image_bytes("PNG", (100, 50)))})
        port = listen(self, site)
        images = Path(self.mktemp())
        writes: list[tuple[str, bool]] = []
        save, replace, write_bytes = Image.Image.save, os.replace, Path.write_bytes

        def saving(image: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
            writes.append((f"save {fp}", threadable.isInIOThread()))
            save(image, fp, *args, **kwargs)

        def replacing(source: Any, target: Any) -> None:
            writes.append((f"replace {target}", threadable.isInIOThread()))
            replace(source, target)

        def writing(path: Path, data: Any) -> int:
            writes.append((f"write_bytes {path}", threadable.isInIOThread()))
            return write_bytes(path, data)

        self.patch(Image.Image, "save", saving)
        self.patch(os, "replace", replacing)
        self.patch(Path, "write_bytes", writing)
        parsed: list[bool] = []
        parse = previews.parse_page

        def parsing(body: bytes, charset: str) -> Any:
            parsed.append(threadable.isInIOThread())
            return parse(body, charset)

        self.patch(previews, "parse_page", parsing)
        thumbnailer = Thumbnailer(reactor, 1, 50_000_000)
        fetcher = PreviewFetcher(
            reactor,
            reactor,  # type: ignore[arg-type]
            PreviewsConfig(),
            AddressPolicy.from_config(["127.0.0.1"]),
            thumbnailer.run,
            lambda image_id, size: images / image_id[:2] / f"{image_id}.{size}",
            in_thread=thumbnailer.cpu,
        )
        self.addCleanup(fetcher.close)
        found = await fetcher.fetch(f"http://127.0.0.1:{port}/page")
        self.assertEqual(parsed, [False], "the page is parsed once, in a worker thread")
        assert found is not None and found.image_id is not None
        made = sorted(p.name for p in images.rglob("*") if p.is_file())
        self.assertEqual(made, sorted(f"{found.image_id}.{size}" for size in ("small", "medium")))
        self.assertEqual(len(writes), 4)  # each size encoded to a temporary file, then moved into place
        self.assertEqual([what for what, on_reactor in writes if on_reactor], [])
