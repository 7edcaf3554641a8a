"""`umoc.domain.thumbnails`: real images of each format, made with Pillow here, and what is refused.

Also the `Thumbnailer` on the real reactor: every file it writes is written
in a worker thread, its threads are bounded, and the reactor keeps ticking
while a large image is thumbnailed.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable

from PIL import GifImagePlugin, Image, ImageFile, JpegImagePlugin, PngImagePlugin, WebPImagePlugin
from twisted.internet import defer, reactor, task
from twisted.python import threadable
from twisted.trial import unittest

from tests.support.deferreds import inline
from umoc.domain.thumbnails import SIZES, ImageInfo, Thumbnailer, make_thumbnails, thumbnail_type

LIMIT = 50_000_000


def image_bytes(fmt: str, size: tuple[int, int], mode: str = "RGB", **save: object) -> bytes:
    out = io.BytesIO()
    image = Image.new(mode, size, (200, 30, 30, 128) if mode == "RGBA" else None)
    if mode == "P":
        image.putpalette([0, 0, 0, 255, 0, 0] * 128)
    image.save(out, fmt, **save)
    return out.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A PNG a few dozen bytes long whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def with_size(fmt: str, width: int, height: int) -> bytes:
    """A small real image of ``fmt`` whose header is rewritten to claim ``width`` x ``height`` pixels."""
    if fmt == "PNG":
        return png_bomb(width, height)
    data = bytearray(image_bytes(fmt, (64, 48), mode="P" if fmt == "GIF" else "RGB"))
    if fmt == "GIF":  # the logical screen, little-endian
        data[6:10] = struct.pack("<HH", width, height)
    elif fmt == "JPEG":  # the baseline frame header: precision, then height and width
        at = data.find(b"\xff\xc0")
        data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    else:  # lossy WebP: RIFF, "VP8 " chunk, frame tag, start code, then 14-bit width and height
        assert data[12:16] == b"VP8 ", data[12:16]
        data[26:30] = struct.pack("<HH", width, height)
    return bytes(data)


def noisy_image(size: tuple[int, int]) -> Image.Image:
    """Gradients under noise: a photo's worth of detail, so it neither compresses nor resizes to nothing."""
    gradient = Image.linear_gradient("L").resize(size)
    base = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient.rotate(180)))
    noise = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    return Image.blend(base, noise, 0.3)


class MakeThumbnailsTests(unittest.TestCase):
    def thumbnail(self, data: bytes, max_pixels: int = LIMIT) -> tuple[ImageInfo | None, Path]:
        directory = Path(self.mktemp())
        directory.mkdir()
        source = directory / "file"
        source.write_bytes(data)
        return make_thumbnails(source, lambda size: directory / f"file.{size}", max_pixels), directory

    def test_each_format_gets_both_sizes_within_their_long_side(self) -> None:
        cases = {
            "JPEG": image_bytes("JPEG", (1200, 800)),
            "PNG": image_bytes("PNG", (800, 1200)),
            "WEBP": image_bytes("WEBP", (1000, 500)),
            "GIF": image_bytes("GIF", (640, 480), mode="P"),
        }
        for fmt, data in cases.items():
            info, directory = self.thumbnail(data)
            original = Image.open(io.BytesIO(data)).size
            self.assertEqual(info, ImageInfo(*original), fmt)
            for name, side in SIZES.items():
                thumb = (directory / f"file.{name}").read_bytes()
                with Image.open(io.BytesIO(thumb)) as image:
                    self.assertEqual(max(image.size), side, (fmt, name))
                    self.assertEqual(image.format, "JPEG" if thumbnail_type(thumb) == "image/jpeg" else "PNG")

    def test_transparency_is_kept_as_png_and_opaque_images_become_jpeg(self) -> None:
        _, directory = self.thumbnail(image_bytes("PNG", (300, 300), mode="RGBA"))
        self.assertEqual(thumbnail_type((directory / "file.small").read_bytes()), "image/png")
        _, directory = self.thumbnail(image_bytes("PNG", (300, 300)))
        self.assertEqual(thumbnail_type((directory / "file.small").read_bytes()), "image/jpeg")

    def test_exif_is_stripped_and_its_orientation_applied(self) -> None:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotated 90 degrees: displayed 400 wide, 600 high
        exif[0x010F] = "SecretCam"
        exif[0x8825] = {2: (52.0, 31.0, 0.0)}  # GPS latitude
        data = image_bytes("JPEG", (600, 400), exif=exif.tobytes())
        self.assertIn(b"SecretCam", data)
        info, directory = self.thumbnail(data)
        self.assertEqual(info, ImageInfo(400, 600))
        for name in SIZES:
            thumb = (directory / f"file.{name}").read_bytes()
            self.assertNotIn(b"Exif", thumb)
            self.assertNotIn(b"SecretCam", thumb)
            with Image.open(io.BytesIO(thumb)) as image:
                self.assertEqual(dict(image.getexif()), {})
                self.assertGreater(image.size[1], image.size[0])

    def test_a_decompression_bomb_is_refused_before_decoding(self) -> None:
        bomb = png_bomb(100_000, 100_000)
        self.assertLess(len(bomb), 200)
        info, directory = self.thumbnail(bomb)
        self.assertIsNone(info)
        self.assertEqual(sorted(p.name for p in directory.iterdir()), ["file"])

    def never_decode(self) -> None:
        """Make any decoding of pixels fail the test: refusals must come from the header alone."""

        def decoded(image: Any) -> None:
            raise AssertionError(f"{image.format} pixels decoded")

        for cls in (
            ImageFile.ImageFile,
            JpegImagePlugin.JpegImageFile,
            PngImagePlugin.PngImageFile,
            WebPImagePlugin.WebPImageFile,
            GifImagePlugin.GifImageFile,
        ):
            if "load" in vars(cls):  # subclasses without their own inherit the patched one
                self.patch(cls, "load", decoded)

    def test_each_format_over_the_configured_limit_is_refused_by_its_header_alone(self) -> None:
        # 81 million pixels: over the default 50 million, under Pillow's own limit (so ours decides).
        self.never_decode()
        for fmt in ("JPEG", "PNG", "WEBP", "GIF"):
            bomb = with_size(fmt, 9000, 9000)
            with Image.open(io.BytesIO(bomb)) as image:
                self.assertEqual((image.format, image.size), (fmt, (9000, 9000)))
            info, directory = self.thumbnail(bomb)
            self.assertIsNone(info, fmt)
            self.assertEqual(sorted(p.name for p in directory.iterdir()), ["file"], fmt)

    def test_pillows_own_bomb_limit_is_on_and_refuses_what_a_too_generous_config_would_let_through(self) -> None:
        """Pillow's check (``Image.MAX_IMAGE_PIXELS``) stays behind ours: nothing may turn it off."""
        self.assertIsNotNone(Image.MAX_IMAGE_PIXELS)
        assert Image.MAX_IMAGE_PIXELS is not None
        self.assertLessEqual(Image.MAX_IMAGE_PIXELS, 100_000_000)
        self.never_decode()
        for fmt, side in (("JPEG", 65_000), ("PNG", 100_000), ("WEBP", 16_383), ("GIF", 65_000)):
            bomb = with_size(fmt, side, side)
            self.assertGreater(side * side, 2 * Image.MAX_IMAGE_PIXELS)
            with self.assertRaises(Image.DecompressionBombError):
                Image.open(io.BytesIO(bomb))
            info, directory = self.thumbnail(bomb, max_pixels=10**12)
            self.assertIsNone(info, fmt)
            self.assertEqual(sorted(p.name for p in directory.iterdir()), ["file"], fmt)

    def test_metadata_of_every_format_is_left_behind(self) -> None:
        """EXIF, XMP, ICC profiles, text chunks and comments: none reaches a thumbnail."""
        from PIL import ImageCms

        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        exif = Image.Exif()
        exif[0x010F] = "SecretCam"
        exif[0x8825] = {2: (52.0, 31.0, 0.0)}
        xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">SecretXMP</x:xmpmeta>'
        text = PngImagePlugin.PngInfo()
        text.add_text("Author", "SecretAuthor")
        text.add_itxt("Location", "SecretPlace")
        cases = {
            "JPEG": image_bytes("JPEG", (400, 300), exif=exif.tobytes(), icc_profile=icc, comment=b"SecretComment"),
            "PNG": image_bytes("PNG", (400, 300), pnginfo=text, exif=exif.tobytes(), icc_profile=icc),
            "WEBP": image_bytes("WEBP", (400, 300), exif=exif.tobytes(), xmp=xmp, icc_profile=icc),
            "GIF": image_bytes("GIF", (400, 300), mode="P", comment=b"SecretComment"),
        }
        for fmt, data in cases.items():
            self.assertIn(b"Secret", data, fmt)
            info, directory = self.thumbnail(data)
            self.assertEqual(info, ImageInfo(400, 300), fmt)
            for name in SIZES:
                thumb = (directory / f"file.{name}").read_bytes()
                for marker in (b"Secret", b"Exif", b"ICC_PROFILE", b"iCCP", b"eXIf", b"tEXt", b"iTXt", b"xmpmeta"):
                    self.assertNotIn(marker, thumb, (fmt, name))
                with Image.open(io.BytesIO(thumb)) as image:
                    self.assertEqual(dict(image.getexif()), {}, (fmt, name))
                    self.assertFalse({"exif", "icc_profile", "xmp", "comment"} & set(image.info), (fmt, name))

    def test_the_pixel_limit_is_the_configured_one(self) -> None:
        info, _ = self.thumbnail(image_bytes("PNG", (100, 100)), max_pixels=100 * 100 - 1)
        self.assertIsNone(info)
        info, _ = self.thumbnail(image_bytes("PNG", (100, 100)), max_pixels=100 * 100)
        self.assertEqual(info, ImageInfo(100, 100))

    def test_other_formats_garbage_and_truncated_images_get_none(self) -> None:
        jpeg = image_bytes("JPEG", (500, 500))
        svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>"
        for data in (image_bytes("BMP", (50, 50)), svg, jpeg[: len(jpeg) // 3]):
            info, directory = self.thumbnail(data)
            self.assertIsNone(info)
            self.assertEqual(sorted(p.name for p in directory.iterdir()), ["file"])


class ThumbnailerTests(unittest.TestCase):
    """On trial's real reactor, whose thread pool the node's thumbnailer uses."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        #: (what, on the reactor thread?) for every file write seen.
        self.writes: list[tuple[str, bool]] = []

    def record_writes(self) -> None:
        """Note the thread of every encoded image and every file moved into place, then do it."""
        save, replace = Image.Image.save, os.replace

        def saving(image: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
            self.writes.append((f"save {fp}", threadable.isInIOThread()))
            save(image, fp, *args, **kwargs)

        def replacing(source: Any, target: Any) -> None:
            self.writes.append((f"replace {target}", threadable.isInIOThread()))
            replace(source, target)

        self.patch(Image.Image, "save", saving)
        self.patch(os, "replace", replacing)

    def target(self, name: str) -> Callable[[str], Path]:
        return lambda size: self.directory / "sub" / f"{name}.{size}"

    @inline
    async def test_thumbnails_of_a_file_and_of_bytes_are_written_in_a_worker_thread_never_the_reactors(
        self,
    ) -> None:
        self.assertTrue(threadable.isInIOThread())
        source = self.directory / "photo"
        source.write_bytes(image_bytes("JPEG", (1200, 900)))
        fetched = image_bytes("PNG", (300, 600))
        self.record_writes()
        thumbnailer = Thumbnailer(reactor, 2, 50_000_000)
        self.assertEqual(await thumbnailer.run(source, self.target("photo")), ImageInfo(1200, 900))
        self.assertEqual(await thumbnailer.run(fetched, self.target("fetched")), ImageInfo(300, 600))
        self.assertEqual(
            sorted(p.name for p in (self.directory / "sub").iterdir()),
            ["fetched.medium", "fetched.small", "photo.medium", "photo.small"],
        )
        self.assertEqual(len(self.writes), 8)  # each thumbnail: encoded to a temporary file, then moved
        self.assertEqual([what for what, on_reactor in self.writes if on_reactor], [])

    @inline
    async def test_file_work_runs_in_worker_threads_at_most_io_threads_at_once(self) -> None:
        thumbnailer = Thumbnailer(reactor, 1, 50_000_000)
        lock, release = threading.Lock(), threading.Event()
        running, most, in_reactor = [0], [0], []

        def work(index: int) -> int:
            in_reactor.append(threadable.isInIOThread())
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            release.wait(10)
            with lock:
                running[0] -= 1
            return index

        jobs = [thumbnailer.io(work, index) for index in range(Thumbnailer.IO_THREADS * 2)]
        deadline = time.monotonic() + 10
        while running[0] < Thumbnailer.IO_THREADS and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.01, lambda: None)
        await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(running[0], Thumbnailer.IO_THREADS)
        release.set()
        self.assertEqual(await defer.gatherResults(jobs), list(range(Thumbnailer.IO_THREADS * 2)))
        self.assertEqual(most[0], Thumbnailer.IO_THREADS)
        self.assertEqual(set(in_reactor), {False})

    @inline
    async def test_the_reactor_keeps_ticking_while_a_large_image_is_thumbnailed(self) -> None:
        """Three 12-megapixel PNGs one after another (one decoding slot): the reactor is never held.

        Were they decoded on the reactor, its longest gap between ticks would
        be the whole run; the bound (half the run) is generous for a busy machine.
        """
        out = io.BytesIO()
        noisy_image((4000, 3000)).save(out, "PNG", compress_level=1)
        data = out.getvalue()
        thumbnailer = Thumbnailer(reactor, 1, 50_000_000)
        ticks: list[float] = []
        ticker = task.LoopingCall(lambda: ticks.append(time.monotonic()))
        ticker.start(0.005)
        started = time.monotonic()
        try:
            results = await defer.gatherResults(
                [thumbnailer.run(data, self.target(f"big{index}")) for index in range(3)]
            )
        finally:
            ended = time.monotonic()
            ticker.stop()
        self.assertEqual(results, [ImageInfo(4000, 3000)] * 3)
        during = [tick for tick in ticks if started <= tick <= ended]
        gaps = [later - earlier for earlier, later in zip([started, *during], [*during, ended], strict=True)]
        self.assertLess(max(gaps), (ended - started) / 2, f"longest gap {max(gaps):.3f}s of {ended - started:.3f}s")
