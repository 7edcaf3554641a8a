"""Thumbnails of shared images: small enough for a phone's chat list, made safely.

Decoding a client's image is the riskiest thing UMOC does with its bytes, so:

- the format is Pillow's own sniffing of the bytes, limited to JPEG, PNG,
  WebP and GIF; the type the client declared only decides whether to try;
- the pixel count is read from the header and checked against
  ``uploads.max_image_pixels`` before anything is decoded (a 50 KB PNG can
  claim 100 000 x 100 000 pixels: a decompression bomb);
- decoding and resizing run in a thread, never on the reactor, at most
  ``uploads.thumbnail_threads`` at a time, so a 12-megapixel photo delays
  nobody else's acks; so does every file read and write of media work (a
  thumbnail written or served, a preview image, an upload's body written and
  moved into place, a download read), at most `Thumbnailer.IO_THREADS` at a
  time;
- Pillow's own bomb check (``Image.MAX_IMAGE_PIXELS``) stays on behind ours:
  anything it refuses is simply not thumbnailed;
- the thumbnail is a fresh image built from pixels only: no EXIF (GPS
  position, camera serial), no ICC or XMP, no comments are carried over.

An image that cannot be thumbnailed (unknown format, too many pixels,
truncated) simply has none; the file itself stays shared and downloadable.
"""

from __future__ import annotations

import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from twisted.internet import defer, threads
from twisted.logger import Logger

__all__ = ["SIZES", "ImageInfo", "Thumbnailer", "make_thumbnails", "thumbnail_type"]

log = Logger()

T = TypeVar("T")

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


def make_thumbnails(source: Path | bytes, target: Callable[[str], Path], max_pixels: int) -> ImageInfo | None:
    """Write every size of `SIZES` for the image at ``source`` to ``target(size)``; its dimensions.

    ``source`` is a file or, for an image fetched for a link preview, its
    bytes (never written to disk).  None (and nothing written) when the bytes
    are not one of `FORMATS`, the header claims more than ``max_pixels``
    pixels, or decoding fails.  Runs in a thread: blocking, CPU-bound, and
    it reads and writes files.
    """
    from PIL import Image, ImageOps

    name = source.name if isinstance(source, Path) else "(fetched)"
    try:
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source), formats=FORMATS) as image:
            width, height = image.size
            if width <= 0 or height <= 0 or width * height > max_pixels:
                log.info(
                    "Image {source} not thumbnailed: {width}x{height} is over {max_pixels} pixels",
                    source=name,
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
            for size, side in SIZES.items():
                scaled = frame.copy()
                scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
                _save_clean(scaled, target(size), alpha)
    except Image.DecompressionBombError:
        log.info("Image {source} not thumbnailed: over Pillow's own pixel limit", source=name)
        return None
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        log.info("Image {source} not thumbnailed: not a decodable image", source=name)
        for size in SIZES:
            target(size).unlink(missing_ok=True)
        return None
    if orientation in _TRANSPOSED:
        width, height = height, width
    return ImageInfo(width, height)


def _save_clean(image: Any, path: Path, alpha: bool) -> None:
    """Pixels only, into a new image (no ``info``: no EXIF, ICC, XMP or comments), written atomically."""
    from PIL import Image

    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    if alpha:
        clean.save(temp, "PNG", optimize=True)
    else:
        clean.save(temp, "JPEG", quality=80, optimize=True)
    os.replace(temp, path)


class Thumbnailer:
    """Runs `make_thumbnails`, and the file work around media, in the reactor's thread pool.

    At most ``concurrency`` images decode (or link preview pages parse:
    `cpu`) at once; apart from them, at most `IO_THREADS` file reads and
    writes (`io`), so a thumbnail served for a download never queues behind
    12-megapixel photos being decoded.  Both
    together stay under the reactor pool's ten threads, leaving room for
    name resolution.  ``reactor`` is where threads report back; a `Clock`
    (in-process tests) has no thread pool, and there the work runs inline.
    """

    IO_THREADS = 4

    def __init__(self, reactor: Any, concurrency: int, max_pixels: int) -> None:
        self._reactor = reactor
        self._slots = defer.DeferredSemaphore(max(1, concurrency))
        self._io = defer.DeferredSemaphore(self.IO_THREADS)
        self._max_pixels = max_pixels

    def run(self, source: Path | bytes, target: Callable[[str], Path]) -> defer.Deferred[ImageInfo | None]:
        """`make_thumbnails` in a thread, once a decoding slot is free."""
        return self._slots.run(self._in_thread, make_thumbnails, source, target, self._max_pixels)

    def cpu(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """``fn(*args)``, other CPU-bound media work (a link preview's page parsed), in a decoding slot."""
        return self._slots.run(self._in_thread, fn, *args)

    def io(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """``fn(*args)``, a blocking file operation, in a thread once an I/O slot is free."""
        return self._io.run(self._in_thread, fn, *args)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        pool = getattr(self._reactor, "getThreadPool", None)
        if pool is None:
            return defer.maybeDeferred(fn, *args)
        return threads.deferToThreadPool(self._reactor, pool(), fn, *args)
