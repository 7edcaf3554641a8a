"""Thumbnails of shared images: small enough for a phone's chat list, made safely.

Decoding a client's image is the riskiest thing UMOC does with its bytes, so:

- the format is Pillow's own sniffing of the bytes, limited to JPEG, PNG,
  WebP and GIF; the type the client declared only decides whether to try;
- the pixel count is read from the header and checked against
  ``uploads.max_image_pixels`` before anything is decoded (a 50 KB PNG can
  claim 100 000 x 100 000 pixels: a decompression bomb);
- decoding and resizing run in a thread, never on the reactor, at most
  ``uploads.thumbnail_threads`` at a time, so a 12-megapixel photo delays
  nobody else's acks;
- the thumbnail is a fresh image built from pixels only: no EXIF (GPS
  position, camera serial), no ICC or XMP, no comments are carried over.

An image that cannot be thumbnailed (unknown format, too many pixels,
truncated) simply has none; the file itself stays shared and downloadable.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.logger import Logger

__all__ = ["SIZES", "ImageInfo", "Thumbnailer", "make_thumbnails", "thumbnail_type"]

log = Logger()

#: ``?size=`` names and their longest side in pixels.
SIZES: dict[str, int] = {"small": 64, "medium": 320}
#: Pillow format names decoded; anything else is not opened at all.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
#: EXIF orientations that swap width and height when applied.
_TRANSPOSED = frozenset((5, 6, 7, 8))


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """The image as it is displayed (EXIF orientation applied)."""

    width: int
    height: int


def thumbnail_type(data: bytes) -> str:
    """The content type of a thumbnail written by `make_thumbnails`: PNG when it has alpha, else JPEG."""
    return "image/png" if data.startswith(b"\x89PNG\r\n\x1a\n") else "image/jpeg"


def make_thumbnails(source: Path, target: Callable[[str], Path], max_pixels: int) -> ImageInfo | None:
    """Write every size of `SIZES` for the image at ``source`` to ``target(size)``; its dimensions.

    None (and nothing written) when the bytes are not one of `FORMATS`, the
    header claims more than ``max_pixels`` pixels, or decoding fails.  Runs in
    a thread: blocking, CPU-bound.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(source, formats=FORMATS) as image:
            width, height = image.size
            if width <= 0 or height <= 0 or width * height > max_pixels:
                log.info(
                    "Image {source} not thumbnailed: {width}x{height} is over {max_pixels} pixels",
                    source=source.name,
                    width=width,
                    height=height,
                    max_pixels=max_pixels,
                )
                return None
            orientation = image.getexif().get(0x0112, 1)
            largest = max(SIZES.values())
            # JPEG can decode at 1/2, 1/4 or 1/8 scale straight away: far less work for a photo.
            image.draft("RGB", (largest, largest))
            frame = ImageOps.exif_transpose(image.copy()) or image
            alpha = frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info)
            frame = frame.convert("RGBA" if alpha else "RGB")
            for name, side in SIZES.items():
                scaled = frame.copy()
                scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
                _save_clean(scaled, target(name), alpha)
    except (Image.DecompressionBombError, Image.UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        log.info("Image {source} not thumbnailed: not a decodable image", source=source.name)
        for name in SIZES:
            target(name).unlink(missing_ok=True)
        return None
    if orientation in _TRANSPOSED:
        width, height = height, width
    return ImageInfo(width, height)


def _save_clean(image: Any, path: Path, alpha: bool) -> None:
    """Pixels only, into a new image (no ``info``: no EXIF, ICC, XMP or comments), written atomically."""
    from PIL import Image

    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    temp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    if alpha:
        clean.save(temp, "PNG", optimize=True)
    else:
        clean.save(temp, "JPEG", quality=80, optimize=True)
    os.replace(temp, path)


class Thumbnailer:
    """Runs `make_thumbnails` in the reactor's thread pool, at most ``concurrency`` at once.

    ``reactor`` is where threads report back; a `Clock` (in-process tests)
    has no thread pool, and there the work runs inline.
    """

    def __init__(self, reactor: Any, concurrency: int, max_pixels: int) -> None:
        self._reactor = reactor
        self._slots = defer.DeferredSemaphore(max(1, concurrency))
        self._max_pixels = max_pixels

    def run(self, source: Path, target: Callable[[str], Path]) -> defer.Deferred[ImageInfo | None]:
        return self._slots.run(self._in_thread, source, target)

    def _in_thread(self, source: Path, target: Callable[[str], Path]) -> defer.Deferred[ImageInfo | None]:
        pool = getattr(self._reactor, "getThreadPool", None)
        if pool is None:
            return defer.maybeDeferred(make_thumbnails, source, target, self._max_pixels)
        return threads.deferToThreadPool(self._reactor, pool(), make_thumbnails, source, target, self._max_pixels)
