"""File rules (names that cannot be paths or tricks, types from the MIME allow-list); bytes to and from disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer
from twisted.trial import unittest
from zope.interface import implementer

import umoc.domain.files as files_module
from umoc.config import UploadsConfig
from umoc.domain.files import (
    FileStreamer,
    TransferStoppedError,
    UploadSpool,
    check_file_name,
    message_type_for,
    normalise_type,
)
from umoc.errors import UserError


class FileNameAndTypeTests(unittest.TestCase):
    def test_plain_names_pass(self) -> None:
        for name in ("image.jpg", "résumé final.pdf", "日本語.txt", ".bashrc", "a" * 255):
            self.assertEqual(check_file_name(name, 255), name)

    def test_paths_separators_controls_and_bidi_tricks_are_refused(self) -> None:
        for name in (
            "../x",
            "a/b",
            "a\\b",
            "C:x",
            "a\x00b",
            "a\nb",
            "a\x1fb",
            "a\x7fb",
            "photo\u202egpj.exe",
            ".",
            "..",
            " ",
            "",
            "a" * 256,
            "x\u2028y",
        ):
            with self.assertRaises(UserError, msg=repr(name)):
                check_file_name(name, 255)

    def test_message_type_comes_from_the_allow_list_the_mime_type_is_in(self) -> None:
        config = UploadsConfig()
        self.assertEqual(message_type_for("image/png", config), "image")
        self.assertEqual(message_type_for("video/mp4", config), "video")
        self.assertEqual(message_type_for("audio/ogg", config), "audio")
        self.assertEqual(message_type_for("application/pdf", config), "file")
        self.assertIsNone(message_type_for("text/html", config))
        self.assertIsNone(message_type_for("application/x-msdownload", config))
        self.assertEqual(normalise_type(" Image/PNG; charset=binary"), "image/png")


class ManualIO:
    """`Thumbnailer.io` stand-in: each file operation waits until the test runs it (``step``)."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[..., Any], tuple[Any, ...], defer.Deferred[Any]]] = []

    def __call__(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.waiting.append((fn, args, d))
        return d

    def step(self) -> None:
        """Run the oldest waiting operation, as an I/O thread would, and report back."""
        fn, args, d = self.waiting.pop(0)
        try:
            result = fn(*args)
        except Exception:  # noqa: BLE001 - handed back as the Deferred's failure, as deferToThreadPool does
            d.errback()
            return
        d.callback(result)

    def drain(self) -> None:
        while self.waiting:
            self.step()


class UploadSpoolTests(unittest.TestCase):
    """`UploadSpool`: one operation at a time per upload, in order, a bounded queue, failures kept."""

    def make(self, queue_bytes: int = 10) -> tuple[UploadSpool, ManualIO, list[str]]:
        self.patch(UploadSpool, "QUEUE_BYTES", queue_bytes)
        io, said = ManualIO(), []
        path = Path(self.mktemp()) / "tmp" / "upload.part"
        spool = UploadSpool(
            io, path, lambda: said.append("full"), lambda: said.append("drained"), lambda f: said.append("failed")
        )
        return spool, io, said

    def test_pieces_land_in_order_one_operation_at_a_time_batched_while_one_runs(self) -> None:
        spool, io, said = self.make(queue_bytes=100)
        spool.write(b"ab")  # the file is still being created: queued
        spool.write(b"cd")
        self.assertEqual(len(io.waiting), 1)
        io.step()  # created; "ab" + "cd" go down in one write
        self.assertEqual(len(io.waiting), 1)
        spool.write(b"ef")
        spool.write(b"gh")
        self.assertEqual(len(io.waiting), 1, "never two operations of one upload at once")
        io.step()
        self.assertEqual(len(io.waiting), 1)
        finished = defer.ensureDeferred(spool.finish())
        self.assertNoResult(finished)
        io.drain()
        self.assertEqual(self.successResultOf(finished), 8)
        self.assertEqual(spool.path.read_bytes(), b"abcdefgh")
        self.assertEqual(said, [])

    def test_a_full_queue_asks_to_stop_reading_and_half_empty_to_go_on(self) -> None:
        spool, io, said = self.make(queue_bytes=12)
        io.step()  # created
        spool.write(b"x" * 6)  # under way at once (still counted until written)
        spool.write(b"y" * 6)
        self.assertEqual(said, [])
        spool.write(b"z" * 6)  # 18 bytes not yet written
        self.assertEqual(said, ["full"])
        spool.write(b"w")
        self.assertEqual(said, ["full"], "said once")
        io.step()  # the first 6 written: 13 still waiting, more than half
        self.assertEqual(said, ["full"])
        io.step()  # y, z and w written: nothing waits
        self.assertEqual(said, ["full", "drained"])
        self.assertEqual(spool.queued, 0)
        finished = defer.ensureDeferred(spool.finish())
        io.drain()
        self.assertEqual(self.successResultOf(finished), 19)

    def test_a_failed_write_is_reported_kept_and_leaves_no_file(self) -> None:
        spool, io, said = self.make()
        io.step()
        real = spool._file
        assert real is not None

        def no_space(chunks: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(real, "writelines", no_space)
        spool.write(b"abc")
        io.step()
        self.assertEqual(said, ["failed"])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        spool.write(b"more")  # ignored
        io.drain()
        self.assertFalse(spool.path.exists())
        self.failureResultOf(defer.ensureDeferred(spool.finish()), OSError)

    def test_discard_waits_for_the_operation_under_way_then_removes_the_file(self) -> None:
        spool, io, said = self.make()
        io.step()
        spool.write(b"abc")
        removed = spool.discard()
        spool.write(b"late")
        self.assertNoResult(removed)
        io.drain()
        self.successResultOf(removed)
        self.assertFalse(spool.path.exists())
        self.assertEqual(said, [])

    def test_discard_before_the_file_exists_removes_it_once_created(self) -> None:
        spool, io, _ = self.make()
        spool.write(b"abc")
        removed = spool.discard()
        io.drain()
        self.successResultOf(removed)
        self.assertFalse(spool.path.exists())
        self.assertTrue(spool.path.parent.is_dir())


@implementer(IConsumer)
class Consumer:
    """An HTTP response as a streaming producer sees it: bytes written, registration."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802 - Twisted's interface
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802 - Twisted's interface
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)


class FileStreamerTests(unittest.TestCase):
    """`FileStreamer`: every read through the file I/O, one at a time, none while the consumer is paused."""

    def make(self, data: bytes) -> tuple[FileStreamer, ManualIO, Consumer, defer.Deferred[None]]:
        self.patch(FileStreamer, "CHUNK_SIZE", 4)
        path = Path(self.mktemp())
        path.write_bytes(data)
        handle = open(path, "rb")  # noqa: SIM115 - closed by the cleanup
        self.addCleanup(handle.close)
        io, consumer = ManualIO(), Consumer()
        streamer = FileStreamer(io, handle)
        return streamer, io, consumer, streamer.send(consumer)

    def test_the_file_is_read_a_chunk_at_a_time_and_none_is_read_while_paused(self) -> None:
        streamer, io, consumer, done = self.make(b"abcdefghij")
        self.assertIs(consumer.producer, streamer)
        self.assertEqual(len(io.waiting), 1)
        io.step()
        self.assertEqual(consumer.written, [b"abcd"])
        self.assertEqual(len(io.waiting), 1, "one read at a time")
        streamer.pauseProducing()
        io.step()  # the read under way still arrives
        self.assertEqual(consumer.written, [b"abcd", b"efgh"])
        self.assertEqual(io.waiting, [])
        streamer.resumeProducing()
        streamer.resumeProducing()
        self.assertEqual(len(io.waiting), 1)
        self.assertNoResult(done)
        io.drain()
        self.assertEqual(b"".join(consumer.written), b"abcdefghij")
        self.assertIsNone(consumer.producer)
        self.successResultOf(done)

    def test_a_stopped_transfer_fails_once_the_read_under_way_is_over(self) -> None:
        streamer, io, consumer, done = self.make(b"abcdefghij")
        streamer.stopProducing()
        self.assertNoResult(done)  # the file must not be closed under the read
        io.step()
        self.failureResultOf(done, TransferStoppedError)
        self.assertEqual((consumer.written, io.waiting), ([], []))


class MoveIntoPlaceTests(unittest.TestCase):
    def test_the_bytes_and_the_rename_reach_the_disk_before_the_upload_completes(self) -> None:
        """Completion is acknowledged after this: a power loss must not leave a complete file empty or unnamed."""
        root = Path(self.mktemp())
        (root / "tmp").mkdir(parents=True)
        temp, final = root / "tmp" / "upload", root / "files" / "ab" / "abcd"
        temp.write_bytes(b"x" * 10)
        synced: list[int] = []
        real_fsync = os.fsync

        def recording_fsync(fd: int) -> None:
            synced.append(os.fstat(fd).st_ino)
            real_fsync(fd)

        self.patch(os, "fsync", recording_fsync)
        temp_inode = temp.stat().st_ino
        files_module._move_into_place(temp, final, 10)
        self.assertEqual(final.read_bytes(), b"x" * 10)
        self.assertEqual(synced, [temp_inode, final.parent.stat().st_ino])

    def test_a_size_other_than_received_is_refused_and_the_partial_file_removed(self) -> None:
        temp = Path(self.mktemp())
        temp.write_bytes(b"short")
        with self.assertRaises(files_module.UploadStoreError):
            files_module._move_into_place(temp, temp.with_name("final"), 10)
        self.assertFalse(temp.exists())
