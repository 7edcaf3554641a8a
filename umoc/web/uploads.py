"""``PUT /api/upload/<file_id>`` (POST too), ``GET /api/files/<file_id>`` and its ``/thumbnail``.

Uploads stream: twisted.web normally collects a whole request body in
``request.content`` before any resource sees it, which would let anyone with
an upload URL fill memory or disk with a body larger than the one they
declared.  `UploadRequest` (the Site's request factory) takes over bodies
for ``/api/upload/`` as soon as the headers are in (``gotLength``): it
checks the path, the bearer token and Content-Length, refuses it with 503
and ``Retry-After`` while the node is overloaded (``server.overload_wait``:
the token stays unspent, the same request may be sent again), pauses
reading while the database says whether this upload may proceed, then hands
each chunk as it arrives (``handleContentChunk``) to an `UploadSpool`, which
writes it to a temporary file in the file I/O threads, in order, never on the
reactor thread, and refuses the request with 413 the moment the running size
passes the declared size.  While more than `UploadSpool.QUEUE_BYTES` wait for
a slow disk, the body is not read (TCP pushes back on the client); a failed
write is answered 500 at once and the partial file removed.
A refused upload is answered at once and the connection closed, instead of
reading the rest of an unwanted body; a client that sent ``Expect:
100-continue`` hears ``100 Continue`` only once its upload is authorised, so
a refused one never sends its body at all.

When the body is complete the resource waits for every byte of it to be
written, checks the size on disk, moves the temporary file into place (in a
thread) under its ``file_id`` (never the client's name) and records it as
whole: a 201 means the whole body is in the file.

Downloads are opened in a thread and streamed from disk, each read in a
thread too (`FileStreamer`), to members of the chat the file was shared in;
everyone else gets the same 404 whether or not the file exists.  Thumbnails
are read whole in a thread.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from umoc.domain.files import FileManager, TransferStoppedError, UploadDeniedError, UploadSpool
from umoc.domain.overload import WriteAdmission
from umoc.domain.sessions import SessionManager
from umoc.domain.thumbnails import SIZES, thumbnail_type
from umoc.errors import Code
from umoc.records.files import FileRecord
from umoc.web.jsonapi import HttpError, JsonResource, write_json
from umoc.web.sessionauth import request_session

__all__ = ["UploadRequest", "Uploads", "content_disposition", "refuse_now"]

log = Logger()

UPLOAD_PREFIX = b"/api/upload/"


def _file_id(raw: bytes) -> str | None:
    """The canonical UUID string in a path segment, or None."""
    try:
        text = raw.decode("ascii")
        return str(uuid.UUID(text)) if len(text) <= 36 else None
    except (UnicodeDecodeError, ValueError):
        return None


def content_disposition(file_name: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name per RFC 6266 / RFC 5987.

    Names were checked at prepare (no separators or control characters), but
    the header is built defensively anyway: quotes, backslashes and anything
    outside printable ASCII never reach the quoted form.
    """
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%;' else "_" for c in file_name)
    exact = urllib.parse.quote(file_name, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def refuse_now(request: IRequest, status: int, message: str, code: Code, headers: dict[str, str] | None = None) -> None:
    """Answer a request whose body is still arriving, then close the connection.

    twisted.web cannot finish a `Request` that its channel is still filling,
    so this writes the JSON error itself, as twisted.web does for malformed
    requests, and the rest of the unwanted body is never read.
    """
    body = json.dumps({"error": message, "code": code}, separators=(",", ":")).encode("utf-8")
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        "Cache-Control: no-store",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{key}: {value}" for key, value in (headers or {}).items()),
    ]
    channel = getattr(request, "channel", None)
    if channel is not None and channel.transport is not None:
        channel.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        channel.loseConnection()


class UploadRefusedError(Exception):
    """An upload was refused and already answered; nothing more to send."""


class UploadReceiver:
    """One upload request's body: authorised, bounded, streamed to a temporary file."""

    def __init__(self, uploads: Uploads, request: UploadRequest, path: bytes, length: int | None) -> None:
        self.uploads = uploads
        self.request = request
        self.length = length
        self.file_id = _file_id(path.split(b"?", 1)[0][len(UPLOAD_PREFIX) :])
        self.received = 0
        #: Largest body accepted: the configured maximum until the declared size is known.
        self.limit: int = uploads.files.config.max_size
        self.rejected = False
        self.finished = False
        #: The client sent ``Expect: 100-continue`` and waits for our go-ahead.
        self.expects_continue = False
        #: The body on its way to disk, from the moment the headers pass until it is whole or refused.
        self.spool: UploadSpool | None = None
        #: The whole body has arrived (twisted.web called ``requestReceived``): nothing more to read.
        self.body_done = False
        #: Why reading the body is paused: ``"authorising"``, ``"disk"`` (the spool's queue is full).
        self._pauses: set[str] = set()
        #: Fires with the file's record once the upload may proceed.
        self.authorised: defer.Deferred[FileRecord] = defer.Deferred()

    # -- while headers and body arrive ---------------------------------------

    def start(self) -> None:
        """Refuse what the headers alone condemn; otherwise ask the database and wait."""
        if self.file_id is None:
            self.reject(404, "Unknown upload", "not_found")
            return
        token = self._bearer_token()
        if token is None:
            self.reject(401, "Missing upload token", "not_authenticated", {"WWW-Authenticate": "Bearer"})
            return
        if self.length is not None and self.length > self.limit:
            self.reject(413, "File too large", "too_large")
            return
        overloaded = self.uploads.admission.refusal("upload")
        if overloaded is not None:
            self.reject(overloaded.status, overloaded.message, "overloaded", overloaded.headers)
            return
        self.spool = self.uploads.files.spool(
            self.file_id, lambda: self._pause("disk"), lambda: self._resume("disk"), self._disk_failed
        )
        if self.rejected:  # the file could not even be created (only where file work runs inline: tests)
            return
        self._pause("authorising")
        d = defer.ensureDeferred(self._authorise(self.file_id, token))
        d.addErrback(self._crashed)

    def _bearer_token(self) -> str | None:
        header = self.request.getHeader(b"authorization")
        if header is None:
            return None
        scheme, _, token = header.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not 0 < len(token) <= 256:
            return None
        return token

    async def _authorise(self, file_id: str, token: str) -> None:
        try:
            record = await self.uploads.files.authorise_upload(
                file_id, token, self.length, lambda: self.rejected or self.finished
            )
        except UploadDeniedError as denied:
            self.reject(denied.status, denied.message, denied.code, denied.headers or None)
            return
        if record is None or self.rejected or self.finished:
            return
        self.limit = record.file_size
        if self.received > self.limit:
            self.reject(413, "Body larger than the declared file size", "too_large")
            return
        self._resume("authorising")
        channel = getattr(self.request, "channel", None)
        if self.expects_continue and channel is not None and channel.transport is not None:
            channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.authorised.callback(record)

    def write(self, data: bytes) -> None:
        """One chunk of body: count it, refuse it if it passes the limit, else queue it for the disk."""
        if self.rejected or self.spool is None:
            return
        self.received += len(data)
        if self.received > self.limit:
            self.reject(413, "Body larger than the declared file size", "too_large")
            return
        self.spool.write(data)

    def _disk_failed(self, failure: Any) -> None:
        """A write failed (the spool logged it and removes the file): refuse the rest of the body."""
        self.reject(500, "The upload could not be stored", "internal")

    def reject(self, status: int, message: str, code: Code, headers: dict[str, str] | None = None) -> None:
        """Answer now, close the connection and forget the partial file."""
        if self.rejected or self.finished:
            return
        self.rejected = True
        self._discard()
        refuse_now(self.request, status, message, code, headers)
        if not self.authorised.called:
            self.authorised.errback(UploadRefusedError(message))
            self.authorised.addErrback(lambda f: f.trap(UploadRefusedError))

    def connection_lost(self) -> None:
        """The client went away mid-upload: drop the partial file (the token stays spent)."""
        if not self.finished and not self.rejected:
            self.rejected = True
            self._discard()
            if not self.authorised.called:
                self.authorised.errback(UploadRefusedError("connection lost"))
                self.authorised.addErrback(lambda f: f.trap(UploadRefusedError))

    def _crashed(self, failure: Any) -> None:
        log.failure("Error authorising an upload", failure)
        self.reject(500, "Internal server error", "internal")

    def _pause(self, reason: str) -> None:
        """Stop reading the body until every reason to has gone; once it is whole there is nothing to stop.

        (After the body the channel pauses and resumes the transport itself, around the response.)
        """
        channel = getattr(self.request, "channel", None)
        if self.body_done or channel is None or channel.transport is None:
            return
        if not self._pauses:
            channel.transport.pauseProducing()
        self._pauses.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        channel = getattr(self.request, "channel", None)
        if not self._pauses and not self.body_done and channel is not None and channel.transport is not None:
            channel.transport.resumeProducing()

    def _discard(self) -> None:
        """Drop the queue; the spool closes and removes the partial file in a thread."""
        if self.spool is not None:
            self.spool.discard()
            self.spool = None

    # -- once the whole body is in -----------------------------------------

    async def complete(self) -> dict[str, Any]:
        """Wait for the last bytes to reach the file, check the size, move it into place by id, record it."""
        if self.rejected:
            raise UploadRefusedError("refused already")
        record = await self.authorised
        if self.rejected or self.spool is None:
            raise UploadRefusedError("refused already")
        spool, self.spool = self.spool, None
        self.finished = True
        try:
            await spool.finish()
        except Exception as failed:  # the spool logged it and removed the partial file
            raise HttpError(500, "The upload could not be stored", code="internal") from failed
        try:
            return await self.uploads.files.store_upload(record, spool.path, self.received)
        except OSError as failed:
            log.failure("Storing upload {file_id} failed", file_id=record.id)
            raise HttpError(500, "The upload could not be stored", code="internal") from failed


class UploadRequest(server.Request):
    """A `server.Request` that streams ``/api/upload/`` bodies through an `UploadReceiver`.

    Every other request is buffered as twisted.web always does, but only up
    to the largest body any other endpoint accepts: twisted.web by itself
    would spool a body of any size to a temporary file before a resource
    could say no.
    """

    def __init__(self, channel: Any, *args: Any, uploads: Uploads, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self._uploads = uploads
        self.receiver: UploadReceiver | None = None
        self._refused = False
        self._body_size = 0

    def gotLength(self, length: int | None) -> None:
        # Method and path are not on the request until the body is complete;
        # the HTTP/1.1 channel has parsed them already (HTTP/2 channels lack
        # these attributes, and their uploads are refused by the resource).
        command = getattr(self.channel, "_command", None)
        path = getattr(self.channel, "_path", None)
        if command in (b"PUT", b"POST") and isinstance(path, bytes) and path.startswith(UPLOAD_PREFIX):
            self.content = _EmptyBody()
            self.receiver = UploadReceiver(self._uploads, self, path, length)
            expect = self.requestHeaders.getRawHeaders(b"expect")
            if expect and expect[0].lower() == b"100-continue":
                # The channel would say "100 Continue" as soon as this returns;
                # the receiver says it only once the upload is authorised, so a
                # refused client never sends its body at all.
                self.requestHeaders.removeHeader(b"expect")
                self.receiver.expects_continue = getattr(self.channel, "_version", None) == b"HTTP/1.1"
            self.receiver.start()
        elif length is not None and length > self._uploads.other_body_limit:
            self.content = _EmptyBody()
            self._refuse_body()
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver.write(data)
        elif not self._refused:
            self._body_size += len(data)
            if self._body_size > self._uploads.other_body_limit:
                if self.content is not None:
                    self.content.close()
                self.content = _EmptyBody()
                self._refuse_body()
            else:
                super().handleContentChunk(data)

    def _refuse_body(self) -> None:
        self._refused = True
        refuse_now(self, 413, "Request body too large", "too_large")

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.receiver is not None:
            self.receiver.body_done = True
        if self._refused or (self.receiver is not None and self.receiver.rejected):
            return  # answered already; the connection is closing
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        if self.receiver is not None:
            self.receiver.connection_lost()
        super().connectionLost(reason)


def _private_headers(request: IRequest) -> None:
    """Never interpreted as anything but its type, never run, never kept by a shared cache."""
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Content-Security-Policy", b"default-src 'none'; sandbox")
    request.setHeader(b"Cache-Control", b"private, no-store")


class _EmptyBody:
    """``request.content`` for a streamed upload: the bytes went to disk, not here."""

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


class Uploads:
    """The two resources and the request factory, over the `FileManager` and `SessionManager`."""

    def __init__(
        self, files: FileManager, sessions: SessionManager, other_body_limit: int, admission: WriteAdmission
    ) -> None:
        self.files = files
        self.sessions = sessions
        #: Refuses uploads before their body is read while the node is overloaded.
        self.admission = admission
        #: The largest body any endpoint but uploads accepts (JSON API, Engine.IO polling).
        self.other_body_limit = other_body_limit

    def request_factory(self) -> Any:
        return functools.partial(UploadRequest, uploads=self)

    def resources(self) -> dict[bytes, resource.Resource]:
        """Children of ``/api/`` for `build_site`'s ``extra_api``."""
        return {
            b"upload": JsonResource({b"PUT": self._upload, b"POST": self._upload}),
            b"files": JsonResource({b"GET": self._download}),
            b"previews": JsonResource({b"GET": self._preview_image}),
        }

    async def _upload(self, request: IRequest) -> None:
        receiver = getattr(request, "receiver", None)
        if receiver is None:
            raise HttpError(400, "Uploads need HTTP/1.1 and the path /api/upload/<file_id>", code="invalid_argument")
        try:
            body = await receiver.complete()
        except UploadRefusedError:
            return
        write_json(request, 201, body)

    # -- downloads ----------------------------------------------------------

    async def _download(self, request: server.Request) -> None:
        """The file, or with ``/thumbnail`` after its id one of its thumbnails; the same access check."""
        user_id = await self._session_user(request)
        if user_id is None:
            raise HttpError(401, "Invalid or expired session", code="not_authenticated")
        not_found = HttpError(404, "Not found", code="not_found")
        postpath = request.postpath or []
        file_id = _file_id(postpath[0]) if len(postpath) in (1, 2) else None
        thumbnail = len(postpath) == 2
        if file_id is None or (thumbnail and postpath[1] != b"thumbnail"):
            raise not_found
        size = None
        if thumbnail:
            raw = (request.args or {}).get(b"size", [b"medium"])[0]
            size = raw.decode("latin-1")
            if size not in SIZES:
                raise HttpError(400, "Invalid 'size': expected small or medium", code="invalid_argument")
        record = await self.files.readable(file_id, user_id)
        if record is None:
            raise not_found
        if size is not None:
            await self._send_thumbnail(request, self.files.thumbnail_path(file_id, size))
            return
        opened = await self.files.open_file(file_id)
        if opened is None:
            log.error("File {file_id} is recorded but missing on disk", file_id=file_id)
            raise not_found
        handle, size_bytes = opened
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", record.file_type.encode("ascii"))
        request.setHeader(b"Content-Length", str(size_bytes).encode("ascii"))
        request.setHeader(b"Content-Disposition", content_disposition(record.file_name).encode("ascii"))
        _private_headers(request)
        streamer = self.files.streamer(handle)
        transfer = streamer.send(request)
        request.notifyFinish().addErrback(lambda _: streamer.stopProducing())
        try:
            await transfer
        except TransferStoppedError:  # the client went away mid-download
            return
        except Exception:  # noqa: BLE001 - a read failed: the client sees the body cut short
            log.failure("Reading file {file_id} failed mid-download", file_id=file_id)
            request.loseConnection()
            return
        finally:
            await self.files.close_file(handle)
        request.finish()

    async def _preview_image(self, request: server.Request) -> None:
        """UMOC's thumbnail of a link preview's image, to any signed-in user (it shows a public page)."""
        if await self._session_user(request) is None:
            raise HttpError(401, "Invalid or expired session", code="not_authenticated")
        postpath = request.postpath or []
        image_id = _file_id(postpath[0]) if len(postpath) == 1 else None
        if image_id is None:
            raise HttpError(404, "Not found", code="not_found")
        raw = (request.args or {}).get(b"size", [b"medium"])[0].decode("latin-1")
        if raw not in SIZES:
            raise HttpError(400, "Invalid 'size': expected small or medium", code="invalid_argument")
        await self._send_thumbnail(request, self.files.preview_image_path(image_id, raw))

    async def _send_thumbnail(self, request: server.Request, path: Path) -> None:
        """A few KB made by UMOC itself (its type from its own first bytes); 404 when the image has none."""
        data = await self.files.read_thumbnail(path)
        if data is None:
            raise HttpError(404, "Not found", code="not_found")
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", thumbnail_type(data).encode("ascii"))
        request.setHeader(b"Content-Length", str(len(data)).encode("ascii"))
        _private_headers(request)
        request.write(data)
        request.finish()

    async def _session_user(self, request: IRequest) -> int | None:
        """The user of a valid session given as query parameters or X-Session-* headers."""
        record = await request_session(self.sessions, request)
        return record.user_id if record is not None else None
