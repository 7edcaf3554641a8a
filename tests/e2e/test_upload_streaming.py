"""Uploads and downloads over a real port, on both databases: streamed, chunked, slow and cut bodies.

What a body arriving in pieces over TCP does (streaming to disk, size and
time limits, a client that stops half way) is the point here, so these run
the real server; the resources' own rules are tested in-process in
``tests/web/test_uploads.py``.  Upload rows are made through the storage
API (what ``upload_file_prepare`` does after its checks).
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from typing import Any

import treq
from twisted.internet import defer, task
from twisted.internet import reactor as global_reactor
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from tests.support.databases import for_each_backend
from tests.support.deferreds import blocking, eventually, inline
from tests.support.server import ServerTestCase, test_config
from umoc.credentials import new_token, token_digest
from umoc.records.files import FileOffer

MAX_SIZE = 1024 * 1024


@implementer(IBodyProducer)
class ChunkedBody:
    """A body of unknown length (sent chunked), produced a piece at a time as a streaming client would."""

    length = UNKNOWN_LENGTH

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total = total
        self.chunk = chunk
        self._task: task.CooperativeTask | None = None

    def startProducing(self, consumer: Any) -> defer.Deferred:
        def pieces() -> Any:
            sent = 0
            while sent < self.total:
                size = min(self.chunk, self.total - sent)
                consumer.write(b"z" * size)
                sent += size
                yield None

        self._task = task.cooperate(pieces())

        def stopped(reason: Any) -> defer.Deferred:
            reason.trap(task.TaskStopped)
            return defer.Deferred()  # stopped by the client: never fires, as FileBodyProducer does

        return self._task.whenDone().addErrback(stopped)

    def pauseProducing(self) -> None:
        if self._task is not None:
            self._task.pause()

    def resumeProducing(self) -> None:
        if self._task is not None:
            self._task.resume()

    def stopProducing(self) -> None:
        if self._task is not None:
            try:
                self._task.stop()
            except task.TaskDone:
                pass


def expect_continue_exchange(port: int, file_id: str, token: str, body: bytes) -> tuple[bytes, bytes]:
    """A raw HTTP/1.1 client that waits for ``100 Continue``: (first answer, rest after sending the body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"PUT /api/upload/{file_id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n".encode()
        )
        first = sock.recv(65536)
        if not first.startswith(b"HTTP/1.1 100 "):
            return first, b""
        sock.sendall(body)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        return first, rest


class UploadTestsMixin:
    config_overrides = {"uploads": {"max_size": MAX_SIZE}}

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.alice = await self.server.user("alice")
        self.bob = await self.server.user("bob")
        self.carol = await self.server.user("carol")
        self.uploads = self.server.services.files
        self.files = self.server.services.storage.files

    async def prepared(
        self, size: int, *, file_name: str = "notes.txt", file_type: str = "text/plain", expires_in: float = 600
    ) -> tuple[str, str]:
        """A prepared upload from alice to bob, as upload_file_prepare records it: ``(file_id, token)``."""
        file_id, token, now = str(uuid.uuid4()), new_token(), global_reactor.seconds()
        await self.files.create(
            file_id,
            self.alice["user_id"],
            FileOffer(self.bob["user_id"], False, file_name, size, file_type),
            token_digest(token),
            now,
            now + expires_in,
        )
        return file_id, token

    async def put(self, file_id: str, body: Any, token: str | None, method: str = "PUT") -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = await treq.request(
            method, f"{self.server.url}/api/upload/{file_id}", data=body, headers=headers, persistent=False
        )
        return response.code, await response.json()

    async def get(self, file_id: str, login: dict[str, Any] | None, via_headers: bool = False) -> Any:
        url = f"{self.server.url}/api/files/{file_id}"
        headers: dict[str, str] = {}
        if login is not None and via_headers:
            headers = {"X-Session-ID": login["sessionID"], "X-Session-Token": login["token"]}
        elif login is not None:
            url += f"?sessionID={login['sessionID']}&token={login['token']}"
        return await treq.get(url, headers=headers, persistent=False)

    async def shared(self, data: bytes, **kwargs: Any) -> str:
        """Upload ``data`` and mark it completed, as upload_file_complete would: the file id."""
        file_id, token = await self.prepared(len(data), **kwargs)
        code, _ = await self.put(file_id, data, token)
        self.assertEqual(code, 201)
        self.assertTrue(await self.files.claim_completion(file_id, self.alice["user_id"], global_reactor.seconds()))
        return file_id

    def temp_files(self) -> list[str]:
        return os.listdir(self.uploads.temp_dir) if self.uploads.temp_dir.exists() else []

    # -- uploads ------------------------------------------------------------

    @inline
    async def test_upload_stores_the_bytes_under_the_file_id_and_answers_201(self) -> None:
        data = os.urandom(300_000)
        file_id, token = await self.prepared(len(data), file_name="../../etc/passwd")
        code, body = await self.put(file_id, data, token)
        self.assertEqual((code, body), (201, {"file_id": file_id, "file_size": len(data)}))
        with open(self.uploads.path_for(file_id), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(self.uploads.path_for(file_id).name, file_id)
        self.assertEqual(self.temp_files(), [])
        record = await self.files.get(file_id)
        self.assertIsNotNone(record.uploaded_at)

    @inline
    async def test_upload_by_post_with_chunked_body_works_too(self) -> None:
        file_id, token = await self.prepared(200_000)
        code, _ = await self.put(file_id, ChunkedBody(200_000), token, method="POST")
        self.assertEqual(code, 201)
        self.assertEqual(os.path.getsize(self.uploads.path_for(file_id)), 200_000)

    @inline
    async def test_declared_content_length_over_the_maximum_is_413_before_any_lookup(self) -> None:
        code, body = await self.put(str(uuid.uuid4()), b"x" * (MAX_SIZE + 1), "whatever")
        self.assertEqual((code, body), (413, {"error": "File too large", "code": "too_large"}))

    @inline
    async def test_content_length_over_the_prepared_size_is_413_and_keeps_the_token(self) -> None:
        file_id, token = await self.prepared(1000)
        code, _ = await self.put(file_id, b"x" * 5000, token)
        self.assertEqual(code, 413)
        code, _ = await self.put(file_id, b"x" * 1000, token)
        self.assertEqual(code, 201)

    @inline
    async def test_streamed_body_passing_the_declared_size_is_cut_off_with_413(self) -> None:
        file_id, token = await self.prepared(100_000)
        code, body = await self.put(file_id, ChunkedBody(600_000, chunk=16 * 1024), token)
        self.assertEqual((code, body), (413, {"error": "Body larger than the declared file size", "code": "too_large"}))
        await eventually(lambda: self.temp_files() == [])  # removed in a file I/O thread, maybe after the answer
        self.assertFalse(self.uploads.path_for(file_id).exists())
        code, body = await self.put(file_id, b"x" * 100_000, token)
        self.assertEqual((code, body), (403, {"error": "Upload token already used", "code": "forbidden"}))

    @inline
    async def test_streamed_body_short_of_the_declared_size_is_not_whole(self) -> None:
        file_id, token = await self.prepared(100_000)
        code, body = await self.put(file_id, ChunkedBody(50_000), token)
        self.assertEqual(code, 400)
        self.assertIn("incomplete", body["error"])
        self.assertIsNone((await self.files.get(file_id)).uploaded_at)
        self.assertFalse(self.uploads.path_for(file_id).exists())

    @inline
    async def test_missing_or_wrong_token_is_401(self) -> None:
        file_id, token = await self.prepared(10)
        self.assertEqual((await self.put(file_id, b"0123456789", None))[0], 401)
        self.assertEqual((await self.put(file_id, b"0123456789", new_token()))[0], 401)
        self.assertEqual((await self.put(file_id, b"0123456789", token))[0], 201)

    @inline
    async def test_second_upload_with_the_same_token_is_409(self) -> None:
        file_id, token = await self.prepared(10)
        self.assertEqual((await self.put(file_id, b"0123456789", token))[0], 201)
        code, body = await self.put(file_id, b"9876543210", token)
        self.assertEqual((code, body), (409, {"error": "File already uploaded", "code": "conflict"}))
        with open(self.uploads.path_for(file_id), "rb") as f:
            self.assertEqual(f.read(), b"0123456789")

    @inline
    async def test_expired_token_is_403(self) -> None:
        file_id, token = await self.prepared(10, expires_in=-1)
        code, body = await self.put(file_id, b"0123456789", token)
        self.assertEqual((code, body), (403, {"error": "Upload token expired", "code": "forbidden"}))

    @inline
    async def test_100_continue_comes_only_after_the_upload_is_authorised(self) -> None:
        file_id, token = await self.prepared(10)
        first, _ = await blocking(expect_continue_exchange, self.server.port, file_id, new_token(), b"0123456789")
        self.assertTrue(first.startswith(b"HTTP/1.1 401 "), first)
        first, rest = await blocking(expect_continue_exchange, self.server.port, file_id, token, b"0123456789")
        self.assertEqual(first, b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertTrue(rest.startswith(b"HTTP/1.1 201 "), rest)

    @inline
    async def test_unknown_file_id_is_401_like_a_wrong_token_and_a_malformed_one_404(self) -> None:
        self.assertEqual(
            await self.put(str(uuid.uuid4()), b"x", new_token()),
            (401, {"error": "Invalid upload token", "code": "not_authenticated"}),
        )
        self.assertEqual((await self.put("..%2F..%2Fetc", b"x", new_token()))[0], 404)

    @inline
    async def test_expired_uploads_never_completed_are_purged_with_their_bytes(self) -> None:
        expires_in = self.server.services.config.uploads.expires_in
        stale_id, stale_token = await self.prepared(10, expires_in=1)
        self.assertEqual((await self.put(stale_id, b"0123456789", stale_token))[0], 201)
        fresh_id, _ = await self.prepared(10)
        done_id = await self.shared(b"kept")
        await self.server.services.storage.db.run(
            "test",
            lambda txn: txn.execute(
                "UPDATE files SET expires_at = ? WHERE id IN (?, ?)",
                (global_reactor.seconds() - expires_in - 1, stale_id, done_id),
            ),
        )
        orphan = self.uploads.temp_path(stale_id)
        orphan.write_bytes(b"half")
        crashed = self.uploads.temp_path(str(uuid.uuid4()))
        crashed.write_bytes(b"left over by a crash")
        long_ago = global_reactor.seconds() - 2 * expires_in - 1
        os.utime(crashed, (long_ago, long_ago))
        in_progress = self.uploads.temp_path(str(uuid.uuid4()))
        in_progress.write_bytes(b"being written")
        self.assertEqual(await self.uploads.purge_expired(), 1)
        self.assertIsNone(await self.files.get(stale_id))
        self.assertFalse(self.uploads.path_for(stale_id).exists())
        self.assertFalse(orphan.exists())
        self.assertFalse(crashed.exists())
        self.assertTrue(in_progress.exists())
        self.assertIsNotNone(await self.files.get(fresh_id))
        self.assertTrue(self.uploads.path_for(done_id).exists())

    @inline
    async def test_the_service_purges_on_its_cleanup_interval(self) -> None:
        server = await self.start_server(
            test_config(tempfile.mkdtemp(prefix="umoc-srv-"), uploads={"cleanup_interval": "50ms", "expires_in": "1s"})
        )
        files = server.services.storage.files
        user = await server.user("dave")
        file_id = str(uuid.uuid4())
        await files.create(
            file_id,
            user["user_id"],
            FileOffer(user["user_id"], False, "a.txt", 1, "text/plain"),
            token_digest(new_token()),
            0.0,
            1.0,
        )
        await eventually(lambda: files.get(file_id), None)
        self.assertIsNone(await files.get(file_id))

    @inline
    async def test_other_endpoints_refuse_oversized_bodies_before_spooling_them(self) -> None:
        limit = self.server.services.config.max_plain_body
        response = await treq.post(self.server.url + "/api/login", data=b"{" * (limit + 1), persistent=False)
        self.assertEqual(
            (response.code, await response.json()), (413, {"error": "Request body too large", "code": "too_large"})
        )
        response = await treq.post(self.server.url + "/api/login", data=ChunkedBody(limit * 3), persistent=False)
        self.assertEqual(
            (response.code, await response.json()), (413, {"error": "Request body too large", "code": "too_large"})
        )
        self.assertEqual((await self.server.post("/api/login", {"username": "alice", "password": "x" * 9}))[0], 401)

    # -- downloads ----------------------------------------------------------

    @inline
    async def test_members_of_the_chat_download_the_exact_bytes_with_safe_headers(self) -> None:
        data = os.urandom(200_000)
        file_id = await self.shared(data, file_name='résumé "final".pdf', file_type="application/pdf")
        for login, via_headers in ((self.bob, False), (self.alice, True)):
            response = await self.get(file_id, login, via_headers)
            self.assertEqual(response.code, 200)
            self.assertEqual(await response.content(), data)
            headers = response.headers
            self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/pdf"])
            self.assertEqual(headers.getRawHeaders("X-Content-Type-Options"), ["nosniff"])
            self.assertEqual(
                headers.getRawHeaders("Content-Disposition"),
                ["attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"],
            )

    @inline
    async def test_outsider_gets_the_same_404_as_for_a_file_that_does_not_exist(self) -> None:
        file_id = await self.shared(b"secret")
        outsider = await self.get(file_id, self.carol)
        nothing = await self.get(str(uuid.uuid4()), self.carol)
        self.assertEqual((outsider.code, await outsider.json()), (404, {"error": "Not found", "code": "not_found"}))
        self.assertEqual((nothing.code, await nothing.json()), (404, {"error": "Not found", "code": "not_found"}))

    @inline
    async def test_file_not_yet_completed_is_404_even_for_the_recipient(self) -> None:
        file_id, token = await self.prepared(6)
        self.assertEqual((await self.put(file_id, b"secret", token))[0], 201)
        response = await self.get(file_id, self.bob)
        self.assertEqual(response.code, 404)
        await response.content()

    @inline
    async def test_download_without_a_valid_session_is_401(self) -> None:
        file_id = await self.shared(b"secret")
        for login in (None, {**self.bob, "token": new_token()}):
            response = await self.get(file_id, login)
            self.assertEqual(response.code, 401)
            await response.content()


for_each_backend(UploadTestsMixin, ServerTestCase, globals())
