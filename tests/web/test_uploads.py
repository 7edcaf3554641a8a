"""The upload and download resources in-process.

Bodies streamed over a real port: ``tests/e2e/test_upload_streaming.py``.
"""

from __future__ import annotations

import errno
import os
import threading
import uuid
from typing import Any, BinaryIO

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from tests.support.deferreds import eventually, inline
from tests.support.node import NodeTestCase
from tests.support.web import exchange, request
from umoc.credentials import new_token, token_digest
from umoc.domain import files as files_module
from umoc.domain.files import FileStreamer, UploadSpool
from umoc.records.files import FileOffer
from umoc.records.sessions import NewSession
from umoc.web.uploads import content_disposition

MAX_SIZE = 1024 * 1024


@implementer(IBodyProducer)
class ContentDispositionTests(unittest.TestCase):
    def test_content_disposition_is_ascii_and_quoted(self) -> None:
        value = content_disposition('a";b\\c\r\nd.txt')
        value.encode("ascii")
        self.assertTrue(value.startswith("attachment; filename=\"a__b_c__d.txt\"; filename*=UTF-8''"))
        self.assertNotIn("\r", value)


class DownloadResourceTests(NodeTestCase):
    """``GET /api/files/<id>`` rendered in-process through the node's Site, over a real SQLite database."""

    async def stored(self, data: bytes) -> tuple[str, int, int, int]:
        """A file from alice to bob, uploaded and shared: its id and the ids of alice, bob and a stranger."""
        alice, bob, carol = [(await self.user(name)).id for name in ("alice", "bob", "carol")]
        file_id, now = str(uuid.uuid4()), self.clock.seconds()
        await self.storage.contacts.request(alice, "bob", now)
        await self.storage.contacts.accept(bob, alice, now)
        files = self.storage.files
        await files.create(
            file_id, alice, FileOffer(bob, False, "a.txt", len(data), "text/plain"), "digest", now, now + 600
        )
        self.services.files.path_for(file_id).parent.mkdir(parents=True, exist_ok=True)
        self.services.files.path_for(file_id).write_bytes(data)
        self.assertTrue(await files.mark_uploaded(file_id, now))
        self.assertTrue(await files.claim_completion(file_id, alice, now))
        return file_id, alice, bob, carol

    async def session_of(self, user_id: int) -> dict[str, str]:
        token, now = new_token(), self.clock.seconds()
        await self.storage.users.create_session(
            NewSession(user_id, f"s{user_id}", token_digest(token), now, now + 600), 3
        )
        return {"X-Session-ID": f"s{user_id}", "X-Session-Token": token}

    @inline
    async def test_member_downloads_the_bytes_outsider_gets_404_nobody_401(self) -> None:
        file_id, alice, bob, carol = await self.stored(b"hello file")
        got = await request(self.node.site, "GET", f"/api/files/{file_id}", headers=await self.session_of(bob))
        self.assertEqual((got.code, got.body), (200, b"hello file"))
        self.assertEqual(got.header("X-Content-Type-Options"), "nosniff")
        outsider = await request(self.node.site, "GET", f"/api/files/{file_id}", headers=await self.session_of(carol))
        self.assertEqual((outsider.code, outsider.json()), (404, {"error": "Not found", "code": "not_found"}))
        nobody = await request(self.node.site, "GET", f"/api/files/{file_id}")
        self.assertEqual(
            (nobody.code, nobody.json()), (401, {"error": "Invalid or expired session", "code": "not_authenticated"})
        )


class UploadResourceTests(NodeTestCase):
    """``PUT /api/upload/<id>`` in-process: the node's Site and its streaming request factory on a StringTransport."""

    async def prepared(self, size: int) -> tuple[str, str]:
        alice, bob = (await self.user("alice")).id, (await self.user("bob")).id
        file_id, token, now = str(uuid.uuid4()), new_token(), self.clock.seconds()
        await self.storage.files.create(
            file_id, alice, FileOffer(bob, False, "a.txt", size, "text/plain"), token_digest(token), now, now + 600
        )
        return file_id, token

    async def put(self, file_id: str, token: str, body: bytes) -> bytes:
        channel = self.node.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        head = (
            f"PUT /api/upload/{file_id} HTTP/1.1\r\nHost: umoc\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        channel.dataReceived(head.encode("ascii") + body)
        await eventually(lambda: b"\r\n\r\n" in transport.value())
        return transport.value()

    @inline
    async def test_an_authorised_body_is_stored_by_id_and_a_wrong_token_is_401(self) -> None:
        file_id, token = await self.prepared(5)
        answer = await self.put(file_id, "not the token", b"hello")
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer)
        self.assertFalse(self.services.files.path_for(file_id).exists())
        answer = await self.put(file_id, token, b"hello")
        self.assertTrue(answer.startswith(b"HTTP/1.1 201 "), answer)
        self.assertEqual(self.services.files.path_for(file_id).read_bytes(), b"hello")


class _GatedFile:
    """The upload's real temporary file, whose writes note their thread and wait for ``gate``."""

    def __init__(self, real: BinaryIO, gate: threading.Event, threads: list[threading.Thread]) -> None:
        self._real = real
        self._gate = gate
        self._threads = threads

    def writelines(self, chunks: list[bytes]) -> None:
        self._threads.append(threading.current_thread())
        if not self._gate.wait(60):
            raise OSError(errno.EIO, "the test never opened the gate")
        self._real.writelines(chunks)

    def close(self) -> None:
        self._threads.append(threading.current_thread())
        self._real.close()


class FileBytesOffReactorTests(NodeTestCase):
    """Upload bodies go to disk, downloads come from it, in the file I/O threads: the reactor answers meanwhile.

    On the real reactor (its thread pool runs the file work), through the
    Site's own channel on a `StringTransport`.
    """

    use_clock = False

    async def prepared(self, size: int) -> tuple[str, str]:
        return await UploadResourceTests.prepared(self, size)  # type: ignore[arg-type]

    async def channel(self, file_id: str, token: str, size: int) -> tuple[Any, StringTransport]:
        """A connection that sent an upload's headers, once the upload is authorised (the body is read again)."""
        channel = self.node.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        head = (
            f"PUT /api/upload/{file_id} HTTP/1.1\r\nHost: umoc\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {size}\r\n\r\n"
        )
        channel.dataReceived(head.encode("ascii"))
        self.assertEqual(transport.producerState, "paused")
        await eventually(lambda: transport.producerState == "producing")
        return channel, transport

    def gated(self) -> tuple[threading.Event, list[threading.Thread]]:
        """Every upload's file from now on: writes blocked until the Event is set, their threads noted."""
        gate, threads = threading.Event(), []
        self.addCleanup(gate.set)
        real_create = files_module._create_temp
        self.patch(files_module, "_create_temp", lambda path: _GatedFile(real_create(path), gate, threads))
        return gate, threads

    def temp_files(self) -> list[str]:
        temp_dir = self.services.files.temp_dir
        return os.listdir(temp_dir) if temp_dir.exists() else []

    @inline
    async def test_a_blocked_disk_write_runs_in_a_worker_thread_and_the_reactor_answers_meanwhile(self) -> None:
        self.patch(UploadSpool, "QUEUE_BYTES", 1000)
        gate, threads = self.gated()
        data = os.urandom(5000)
        file_id, token = await self.prepared(len(data))
        channel, transport = await self.channel(file_id, token, len(data))
        channel.dataReceived(data[:500])
        await eventually(lambda: len(threads) == 1)  # the first write is under way, and stuck
        self.assertIsNot(threads[0], threading.current_thread())
        health = await exchange(self.node.site, "GET", "/healthz")
        self.assertEqual(health.code, 200)
        channel.dataReceived(data[500:900])
        self.assertEqual(transport.producerState, "producing")
        channel.dataReceived(data[900:1500])  # 1500 bytes not yet on disk: stop reading the body
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(transport.value(), b"")
        gate.set()
        await eventually(lambda: transport.producerState == "producing")
        channel.dataReceived(data[1500:])
        await eventually(lambda: b"\r\n\r\n" in transport.value())
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 201 "), transport.value())
        self.assertEqual(self.services.files.path_for(file_id).read_bytes(), data)
        self.assertEqual(self.temp_files(), [])
        self.assertGreaterEqual(len(threads), 3)  # the writes and the close, every one in a worker thread
        self.assertNotIn(threading.current_thread(), threads)

    @inline
    async def test_a_failed_disk_write_answers_500_and_leaves_no_partial_file(self) -> None:
        real_create = files_module._create_temp

        class NoSpace(_GatedFile):
            def writelines(self, chunks: list[bytes]) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(files_module, "_create_temp", lambda path: NoSpace(real_create(path), threading.Event(), []))
        file_id, token = await self.prepared(5000)
        channel, transport = await self.channel(file_id, token, 5000)
        channel.dataReceived(b"x" * 1000)
        await eventually(lambda: b"\r\n\r\n" in transport.value())
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 500 "), transport.value())
        self.assertIn(b'{"error":"The upload could not be stored","code":"internal"}', transport.value())
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        await eventually(lambda: self.temp_files() == [])
        self.assertFalse(self.services.files.path_for(file_id).exists())
        self.assertIsNone((await self.storage.files.get(file_id)).uploaded_at)

    @inline
    async def test_a_download_is_read_in_worker_threads_while_the_reactor_answers(self) -> None:
        data = os.urandom(300_000)
        file_id, _, bob, _ = await DownloadResourceTests.stored(self, data)  # type: ignore[arg-type]
        headers = await DownloadResourceTests.session_of(self, bob)  # type: ignore[arg-type]
        gate, threads = threading.Event(), []
        self.addCleanup(gate.set)
        real_open = files_module._open_if_there

        def opened(path: Any) -> Any:
            found = real_open(path)
            return None if found is None else (_GatedReader(found[0], gate, threads), found[1])

        self.patch(files_module, "_open_if_there", opened)
        download = defer.ensureDeferred(exchange(self.node.site, "GET", f"/api/files/{file_id}", headers=headers))
        await eventually(lambda: len(threads) == 1)  # the first read is under way, and stuck
        health = await exchange(self.node.site, "GET", "/healthz")
        self.assertEqual(health.code, 200)
        self.assertNoResult(download)
        gate.set()
        got = await download
        self.assertEqual((got.code, got.body), (200, data))
        self.assertGreaterEqual(len(threads), 300_000 // FileStreamer.CHUNK_SIZE + 1)
        self.assertNotIn(threading.current_thread(), threads)


class _GatedReader:
    """A stored file opened for a download, whose reads note their thread and wait for ``gate``."""

    def __init__(self, real: BinaryIO, gate: threading.Event, threads: list[threading.Thread]) -> None:
        self._real = real
        self._gate = gate
        self._threads = threads

    def read(self, size: int) -> bytes:
        self._threads.append(threading.current_thread())
        if not self._gate.wait(60):
            raise OSError(errno.EIO, "the test never opened the gate")
        return self._real.read(size)

    def close(self) -> None:
        self._real.close()
