"""`umoc.domain.thumbnails`: real images of each format, made with Pillow here, and what is refused."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image
from twisted.trial import unittest

from umoc.domain.thumbnails import SIZES, ImageInfo, make_thumbnails, thumbnail_type

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
