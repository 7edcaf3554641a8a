"""File sharing rules, for both edges: what may be uploaded, by whom, and who may read it.

The Socket.IO edge prepares an upload (``upload_file_prepare``) and turns a
whole one into a message (``upload_file_complete``); the HTTP edge streams
the bytes in (``PUT /api/upload/<id>``, authorised here) and out (``GET
/api/files/<id>``, to chat members only).  Files live under the uploads
directory by id, never by the client's name; a periodic purge removes
uploads nobody completed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from umoc.config import UploadsConfig
from umoc.credentials import new_token, token_digest, token_matches
from umoc.domain.access import require_writable_chat
from umoc.domain.thumbnails import SIZES, ImageInfo, Thumbnailer
from umoc.errors import Code, UserError
from umoc.records.files import FileOffer, FileShare
from umoc.storage import Storage
from umoc.storage.files import FileRecord

__all__ = [
    "AVATAR_CHAT",
    "FileManager",
    "FileStreamer",
    "TransferStoppedError",
    "UploadDeniedError",
    "UploadSpool",
    "UploadStoreError",
    "check_file_name",
    "download_url",
    "message_type_for",
    "normalise_type",
    "thumbnail_url",
]

log = Logger()

#: The chat an avatar upload is recorded with: none (chat ids start at 1), so it is no chat's file.
AVATAR_CHAT = 0
#: Separators of any platform a client may save the file on, and NUL.
_SEPARATORS = frozenset("/\\:\x00")
#: Bidirectional overrides and isolates: they make "gpj.exe" display as "exe.jpg".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def check_file_name(name: str, max_length: int) -> str:
    """The client's file name if it is a plain name: no path, no control or bidi characters.

    The name is only ever shown and offered back in Content-Disposition (files
    are stored by id), but clients save files under it, so it must not be able
    to climb directories or disguise its extension.
    """
    if not 1 <= len(name) <= max_length:
        raise UserError(f"Invalid 'file_name': expected 1 to {max_length} characters", code="invalid_argument")
    for char in name:
        if char in _SEPARATORS or char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise UserError(
                "Invalid 'file_name': no path separators or control characters allowed", code="invalid_argument"
            )
    if not name.strip(" ."):
        raise UserError("Invalid 'file_name': not a file name", code="invalid_argument")
    return name


def normalise_type(file_type: str) -> str:
    """MIME types compare case-insensitively; parameters (``; charset=``) are not part of the type."""
    return file_type.split(";", 1)[0].strip().lower()


def message_type_for(file_type: str, config: UploadsConfig) -> str | None:
    """``image``/``video``/``audio``/``file``: the allow-list the type is in, or None if in none."""
    if not _MIME.fullmatch(file_type):
        return None
    for kind, types in config.allowed_types.items():
        if file_type in types:
            return kind
    return None


def download_url(file_id: str) -> str:
    return f"/api/files/{file_id}"


def thumbnail_url(file_id: str) -> str:
    """The medium thumbnail; ``?size=small`` asks for the small one."""
    return f"/api/files/{file_id}/thumbnail?size=medium"


class UploadStoreError(OSError):
    """The bytes of an upload could not be written whole to disk (full disk, I/O error, a short file)."""


class UploadDeniedError(UserError):
    """An upload request that may not proceed; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str, code: Code, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class SharedFile:
    """A whole upload claimed for sharing: the message to post for it."""

    record: FileRecord
    message_type: str
    content: str


class FileManager:
    """Prepare, authorise, store, share, read and purge uploads."""

    PURGE_BATCH = 500

    def __init__(
        self, storage: Storage, clock: IReactorTime, config: UploadsConfig, root: Path, threads_reactor: Any = None
    ) -> None:
        self._storage = storage
        self._clock = clock
        self.config = config
        self.root = root
        self.temp_dir = root / "tmp"
        self.thumbnailer = Thumbnailer(threads_reactor or clock, config.thumbnail_threads, config.max_image_pixels)

    def now(self) -> float:
        return self._clock.seconds()

    # -- where bytes live -------------------------------------------------------

    def path_for(self, file_id: str) -> Path:
        """Files are named by id only, spread over 256 directories."""
        return self.root / file_id[:2] / file_id

    def preview_image_path(self, image_id: str, size: str) -> Path:
        """UMOC's thumbnails of link preview images: ``<uploads>/previews/<first two>/<image_id>.<size>``."""
        return self.root / "previews" / image_id[:2] / f"{image_id}.{size}"

    def thumbnail_path(self, file_id: str, size: str) -> Path:
        """Beside the file: ``<file_id>.small`` and ``<file_id>.medium``."""
        return self.root / file_id[:2] / f"{file_id}.{size}"

    def temp_path(self, file_id: str) -> Path:
        """A fresh name for an upload in progress; the directory is made on first use."""
        self.temp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._temp_name(file_id)

    def _temp_name(self, file_id: str) -> Path:
        return self.temp_dir / f"{file_id}.{secrets.token_hex(8)}.part"

    def spool(
        self,
        file_id: str,
        full: Callable[[], None],
        drained: Callable[[], None],
        failed: Callable[[Failure], None],
    ) -> UploadSpool:
        """A new temporary file for an upload's body, written in the file I/O threads (see `UploadSpool`)."""
        return UploadSpool(self.thumbnailer.io, self._temp_name(file_id), full, drained, failed)

    def open_file(self, file_id: str) -> defer.Deferred[tuple[BinaryIO, int] | None]:
        """The stored file opened for reading and its size, opened in a thread; None when it is missing."""
        return self.thumbnailer.io(_open_if_there, self.path_for(file_id))

    def streamer(self, handle: BinaryIO) -> FileStreamer:
        """Sends an opened file to a consumer, each read in a thread (see `FileStreamer`)."""
        return FileStreamer(self.thumbnailer.io, handle)

    def close_file(self, handle: BinaryIO) -> defer.Deferred[None]:
        """Close a file `open_file` opened, in a thread."""
        return self.thumbnailer.io(handle.close)

    def read_thumbnail(self, path: Path) -> defer.Deferred[bytes | None]:
        """A thumbnail's bytes (None when the image has none), read in a thread."""
        return self.thumbnailer.io(_read_if_there, path)

    # -- Socket.IO: prepare and complete ------------------------------------------

    async def prepare(self, user_id: int, offer: FileOffer) -> dict[str, Any]:
        """Validate the file and the chat, record the upload, answer with its URL and one-time token."""
        file_name = check_file_name(offer.file_name, self.config.max_file_name)
        if offer.file_size > self.config.max_size:
            raise UserError(f"File too large: at most {self.config.max_size} bytes", code="too_large")
        file_type = normalise_type(offer.file_type)
        if message_type_for(file_type, self.config) is None:
            raise UserError(f"File type '{file_type[:100]}' is not allowed", code="invalid_argument")
        await require_writable_chat(self._storage, user_id, offer.chat_id, offer.is_group)
        return await self._record(
            user_id, FileOffer(offer.chat_id, offer.is_group, file_name, offer.file_size, file_type)
        )

    async def prepare_avatar(self, user_id: int, file_name: str, file_size: int, file_type: str) -> dict[str, Any]:
        """An image upload for `update_profile`'s ``avatar_file_id``, tied to no chat.

        Recorded with chat `AVATAR_CHAT` (no chat has id 0), so it can never
        be shared as a message (`claim_for_sharing` wants the chat it was
        prepared for) and no chat's members may read it; only its use as an
        avatar makes it readable (to whoever may see the profile).  Until then
        it is an abandoned upload like any other, purged when it expires.
        """
        file_name = check_file_name(file_name, self.config.max_file_name)
        if file_size > self.config.max_size:
            raise UserError(f"File too large: at most {self.config.max_size} bytes", code="too_large")
        file_type = normalise_type(file_type)
        if message_type_for(file_type, self.config) != "image":
            raise UserError(
                f"An avatar must be an image: '{file_type[:100]}' is not an allowed image type", code="invalid_argument"
            )
        return await self._record(user_id, FileOffer(AVATAR_CHAT, False, file_name, file_size, file_type))

    async def _record(self, user_id: int, offer: FileOffer) -> dict[str, Any]:
        """Record a checked offer (its name and type normalised) as an upload waiting for its bytes."""
        file_id, token, now = str(uuid.uuid4()), new_token(), self.now()
        await self._storage.files.create(
            file_id,
            user_id,
            offer,
            token_digest(token),
            now,
            now + self.config.expires_in,
        )
        return {
            "file_id": file_id,
            "upload_url": f"/api/upload/{file_id}",
            "upload_token": token,
            "expires_in": int(self.config.expires_in),
        }

    async def claim_for_sharing(self, user_id: int, share: FileShare) -> SharedFile:
        """Check a whole upload may be shared, once, in the chat it was prepared for; claim it.

        The caller posts the message and then calls `shared` (or `unclaim`
        when posting failed), so a file becomes at most one message.
        """
        files, file_id = self._storage.files, share.file_id
        record = await files.get(file_id)
        if record is None or record.uploader_id != user_id:
            raise UserError("Unknown file", code="not_found")
        if record.chat_id != share.chat_id or record.is_group != share.is_group:
            raise UserError("The file was prepared for another chat", code="invalid_argument")
        if record.file_name != share.file_name or record.file_type != normalise_type(share.file_type):
            raise UserError(
                "'file_name' and 'file_type' must be those given to upload_file_prepare", code="invalid_argument"
            )
        if record.completed_at is not None:
            raise UserError("File already shared", code="conflict")
        if record.uploaded_at is None:
            raise UserError("The file has not arrived whole yet", code="conflict")
        await require_writable_chat(self._storage, user_id, record.chat_id, record.is_group)
        if not await files.claim_completion(file_id, user_id, self.now()):
            raise UserError("File already shared", code="conflict")
        message_type = message_type_for(record.file_type, self.config) or "file"
        metadata: dict[str, Any] = {
            "file_id": file_id,
            "file_name": record.file_name,
            "file_size": record.file_size,
            "file_type": record.file_type,
            "url": download_url(file_id),
        }
        if message_type == "image":
            try:
                image = await self.thumbnails(file_id)
            except BaseException:
                await files.release_completion(file_id)
                raise
            if image is not None:
                metadata.update(width=image.width, height=image.height, thumbnail_url=thumbnail_url(file_id))
        content = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
        return SharedFile(record, message_type, content)

    def thumbnails(self, file_id: str) -> defer.Deferred[ImageInfo | None]:
        """Make the file's thumbnails off the reactor; its displayed size, or None if it has none.

        Only Pillow's sniffing of the bytes decides the format (the declared
        type merely says an image is expected); see `umoc.domain.thumbnails`.
        """
        return self.thumbnailer.run(self.path_for(file_id), lambda size: self.thumbnail_path(file_id, size))

    def unclaim(self, file_id: str) -> defer.Deferred[None]:
        return self._storage.files.release_completion(file_id)

    def shared(self, file_id: str, message_id: str) -> defer.Deferred[None]:
        return self._storage.files.set_message(file_id, message_id)

    # -- HTTP: the bytes in ------------------------------------------------------------

    async def authorise_upload(
        self, file_id: str, token: str, length: int | None, abandoned: Callable[[], bool] = lambda: False
    ) -> FileRecord | None:
        """The upload's record, its token now spent; `UploadDeniedError` says why not.

        None when ``abandoned()`` says the request was answered meanwhile:
        its token is then left unspent.
        """
        files = self._storage.files
        record = await files.get(file_id)
        if abandoned():
            return None
        if record is None or not token_matches(token, record.token_hash):
            # A missing upload and someone else's get the same answer: without
            # its token nobody learns whether an upload id exists.
            raise UploadDeniedError(401, "Invalid upload token", "not_authenticated", {"WWW-Authenticate": "Bearer"})
        if record.uploaded_at is not None:
            raise UploadDeniedError(409, "File already uploaded", "conflict")
        if record.token_used_at is not None:
            raise UploadDeniedError(403, "Upload token already used", "forbidden")
        if record.expires_at <= self.now():
            raise UploadDeniedError(403, "Upload token expired", "forbidden")
        if length is not None and length > record.file_size:
            raise UploadDeniedError(413, "Body larger than the declared file size", "too_large")
        if length is not None and length < record.file_size:
            raise UploadDeniedError(400, "Content-Length must equal the declared file size", "invalid_argument")
        if not await files.spend_token(file_id, self.now()):
            raise UploadDeniedError(403, "Upload token already used or expired", "forbidden")
        return record

    async def store_upload(self, record: FileRecord, temp_path: Path, received: int) -> dict[str, Any]:
        """Move a whole upload into place by id and record it; `UploadDeniedError` if it is not whole.

        ``received`` is what the edge counted; the file on disk must hold exactly as many bytes
        before it is moved (else `UploadStoreError`, and the partial file is gone).
        """
        if received != record.file_size:
            await self.thumbnailer.io(temp_path.unlink, True)
            raise UploadDeniedError(
                400, f"Upload incomplete: {received} of {record.file_size} bytes arrived", "invalid_argument"
            )
        final = self.path_for(record.id)
        await self.thumbnailer.io(_move_into_place, temp_path, final, received)
        if not await self._storage.files.mark_uploaded(record.id, self.now()):
            await self.thumbnailer.io(final.unlink, True)
            raise UploadDeniedError(404, "Unknown upload", "not_found")
        return {"file_id": record.id, "file_size": record.file_size}

    # -- HTTP: the bytes out -------------------------------------------------------------

    async def readable(self, file_id: str, user_id: int) -> FileRecord | None:
        """The shared file's record if ``user_id`` may read it; None for missing and forbidden alike."""
        record = await self._storage.files.get(file_id)
        if record is None or record.completed_at is None or not await self.may_read(record, user_id):
            return None
        return record

    async def may_read(self, record: FileRecord, user_id: int) -> bool:
        """Members of the chat the file was shared in; for an avatar, also whoever may see its profile."""
        if record.is_group:
            if await self._storage.groups.is_member(record.chat_id, user_id):
                return True
        elif user_id in (record.uploader_id, record.chat_id):
            return True
        return bool(await self._storage.profiles.avatar_readable(record.id, user_id))

    # -- housekeeping -----------------------------------------------------------------------

    async def purge_expired(self) -> int:
        """Remove uploads never completed: rows and bytes; returns how many.

        A row is kept for one more ``expires_in`` after its token expires, so
        an upload that started in time can still finish and be completed.
        """
        removed = 0
        cutoff = self.now() - self.config.expires_in
        while True:
            ids = await self._storage.files.purge_expired(cutoff, self.PURGE_BATCH)
            await self._in_thread(self._remove_files, ids)
            removed += len(ids)
            if len(ids) < self.PURGE_BATCH:
                break
        # Temporary files nobody has written to for a whole extra window are
        # leftovers of a crash (uploads in progress touch theirs constantly).
        await self._in_thread(self._sweep_temp, cutoff - self.config.expires_in)
        return removed

    def remove(self, file_ids: list[str]) -> defer.Deferred[None]:
        """Remove these uploads' bytes (and any partial upload) from disk; their rows are already gone."""
        return self._in_thread(self._remove_files, file_ids)

    def _in_thread(self, fn: Any, *args: Any) -> defer.Deferred[None]:
        """Unlinking large files may take a while: not on the reactor thread."""
        return self.thumbnailer.io(fn, *args)

    def _remove_files(self, file_ids: list[str]) -> None:
        for file_id in file_ids:
            self.path_for(file_id).unlink(missing_ok=True)
            for size in SIZES:
                self.thumbnail_path(file_id, size).unlink(missing_ok=True)
            for temp in self.temp_dir.glob(f"{file_id}.*.part"):
                temp.unlink(missing_ok=True)

    def _sweep_temp(self, idle_before: float) -> None:
        if not self.temp_dir.is_dir():
            return
        for temp in self.temp_dir.glob("*.part"):
            try:
                if temp.stat().st_mtime < idle_before:
                    temp.unlink()
            except FileNotFoundError:
                continue


class UploadSpool:
    """One upload's body on its way to a temporary file, written in the file I/O threads, in order.

    The HTTP edge hands over each piece of the body as it arrives (`write`)
    and the reactor thread never touches the file: creating it, writing,
    closing and removing it all run through `Thumbnailer.io` (at most
    `Thumbnailer.IO_THREADS` file operations at once on the node).  One
    upload has at most one operation under way; pieces arriving meanwhile
    wait in a queue and go down together in the next write, so the bytes
    land in the order they came and a fast network costs one thread hop per
    batch, not per TCP read::

        write(a) write(b) write(c)     reactor: queue [a] -> [b] -> [b, c]
          |  open, then a  |  b + c    I/O thread: one operation at a time
        finish() -> waits for the queue, closes the file -> the edge answers 201

    The queue is bounded: past `QUEUE_BYTES` waiting, ``full()`` is called
    (the edge stops reading the body: TCP pushes back on the client), and
    ``drained()`` once it is down to half.  So a slow disk slows the
    upload instead of filling memory.  A failed create or write is kept:
    `failure` is set, the partial file removed, later writes ignored, and
    `finish` raises it; the edge learns of it at once from ``failed(failure)``.
    """

    #: Bytes waiting for the disk past which the edge is asked to stop reading the body.
    QUEUE_BYTES = 1024 * 1024

    def __init__(
        self,
        io: Callable[..., defer.Deferred[Any]],
        path: Path,
        full: Callable[[], None],
        drained: Callable[[], None],
        failed: Callable[[Failure], None],
    ) -> None:
        self.path = path
        self._io = io
        self._full = full
        self._drained = drained
        #: Called once with the failure when creating or writing the file fails.
        self._failed = failed
        self.failure: Failure | None = None
        #: Bytes handed over and not yet written.
        self.queued = 0
        #: Bytes written to the file.
        self.written = 0
        self._queue: list[bytes] = []
        self._file: BinaryIO | None = None
        self._busy = True  # the file is being created
        self._throttled = False
        self._closing = False
        self._discarded = False
        self._idle: list[defer.Deferred[None]] = []
        io(_create_temp, path).addCallbacks(self._created, self._broke)

    def write(self, data: bytes) -> None:
        """Queue ``data`` after everything before it; ask the edge to stop reading when the queue is full."""
        if self._closing or self.failure is not None or not data:
            return
        self._queue.append(data)
        self.queued += len(data)
        if not self._throttled and self.queued > self.QUEUE_BYTES:
            self._throttled = True
            self._full()
        self._pump()

    async def finish(self) -> int:
        """Wait until every byte handed over is written, then close the file; the size written.

        Raises the failure of a create, write or close that failed (the partial file is removed then).
        """
        self._closing = True
        await self._until_idle()
        if self.failure is not None:
            self.failure.raiseException()
        handle, self._file = self._file, None
        if handle is not None:
            await self._io(_close_or_remove, handle, self.path)
        return self.written

    def discard(self) -> defer.Deferred[None]:
        """Forget the queue; once the operation under way is over, close and remove the file."""
        self._closing = True
        self._queue.clear()
        self.queued = 0
        if self._discarded:
            return defer.succeed(None)
        self._discarded = True
        return defer.ensureDeferred(self._remove())

    async def _remove(self) -> None:
        await self._until_idle()
        handle, self._file = self._file, None
        if handle is not None:
            try:
                await self._io(_close_and_remove, handle, self.path)
            except Exception:  # noqa: BLE001 - nobody waits for a discard; the purge sweeps what is left
                log.failure("Removing the partial upload {path} failed", path=str(self.path))

    def _until_idle(self) -> defer.Deferred[None]:
        if not self._busy and (not self._queue or self.failure is not None):
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        return d

    def _pump(self) -> None:
        if self._busy or self.failure is not None or not self._queue or self._file is None:
            return
        batch, self._queue = self._queue, []
        size = sum(map(len, batch))
        self._busy = True
        self._io(self._file.writelines, batch).addCallbacks(self._written, self._broke, callbackArgs=(size,))

    def _created(self, handle: BinaryIO) -> None:
        self._file = handle
        self._next()

    def _written(self, _: object, size: int) -> None:
        self.written += size
        self.queued -= size
        if self._throttled and self.queued <= self.QUEUE_BYTES // 2:
            self._throttled = False
            self._drained()
        self._next()

    def _next(self) -> None:
        self._busy = False
        self._pump()
        if not self._busy:
            self._wake()

    def _broke(self, failure: Failure) -> None:
        self._busy = False
        self.failure = failure
        log.failure("Writing an upload to {path} failed", failure, path=str(self.path))
        self.discard()
        self._wake()
        self._failed(failure)

    def _wake(self) -> None:
        waiting, self._idle = self._idle, []
        for d in waiting:
            d.callback(None)


class TransferStoppedError(Exception):
    """The consumer went away before the whole file was sent."""


@implementer(IPushProducer)
class FileStreamer:
    """A file to a consumer (an HTTP response), every read in the file I/O threads.

    Twisted's `FileSender` reads each chunk on the reactor thread; this reads
    `CHUNK_SIZE` bytes through ``io`` (`Thumbnailer.io`), writes them, and
    reads the next, one read at a time and none while the consumer has
    paused it (a slow client holds at most one chunk beyond the transport's
    buffer).  `send`'s Deferred fires once the last byte is written, or fails
    when the consumer stops it; never while a read is still under way, so
    the caller may close the file then.
    """

    CHUNK_SIZE = 64 * 1024

    def __init__(self, io: Callable[..., defer.Deferred[Any]], handle: BinaryIO) -> None:
        self._io = io
        self._handle = handle
        self._consumer: IConsumer | None = None
        self._paused = False
        self._reading = False
        self._stopped = False
        self._done: defer.Deferred[None] = defer.Deferred()

    def send(self, consumer: IConsumer) -> defer.Deferred[None]:
        self._consumer = consumer
        consumer.registerProducer(self, True)
        self._read()
        return self._done

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._read()

    def stopProducing(self) -> None:
        self._stopped = True
        if not self._reading and not self._done.called:
            self._done.errback(TransferStoppedError())

    def _read(self) -> None:
        if self._paused or self._reading or self._stopped or self._done.called:
            return
        self._reading = True
        self._io(self._handle.read, self.CHUNK_SIZE).addCallbacks(self._got, self._failed)

    def _got(self, data: bytes) -> None:
        self._reading = False
        consumer = self._consumer
        if self._stopped or consumer is None:
            if not self._done.called:
                self._done.errback(TransferStoppedError())
            return
        if not data:
            consumer.unregisterProducer()
            self._done.callback(None)
            return
        consumer.write(data)
        self._read()

    def _failed(self, failure: Failure) -> None:
        self._reading = False
        if self._done.called:
            return
        if not self._stopped and self._consumer is not None:
            self._consumer.unregisterProducer()
        self._done.errback(failure)


def _create_temp(path: Path) -> BinaryIO:
    """A new file only this process may read, never one that is there already."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _close_or_remove(handle: BinaryIO, path: Path) -> None:
    """Close (the last buffered bytes go down now); a failure to do so leaves no partial file."""
    try:
        handle.close()
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _close_and_remove(handle: BinaryIO, path: Path) -> None:
    try:
        handle.close()
    finally:
        path.unlink(missing_ok=True)


def _open_if_there(path: Path) -> tuple[BinaryIO, int] | None:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the caller closes it when the transfer ends
    except FileNotFoundError:
        return None
    return handle, os.fstat(handle.fileno()).st_size


def _read_if_there(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _move_into_place(temp_path: Path, final: Path, size: int) -> None:
    """Rename the whole upload to its final name, once its size on disk is the size received.

    The bytes are flushed to the disk before the rename and the rename after
    it, so a file the database calls complete survives a power loss, as an
    acknowledged message does.
    """
    try:
        with open(temp_path, "rb") as written:
            on_disk = os.fstat(written.fileno()).st_size
            if on_disk != size:
                raise UploadStoreError(f"{temp_path.name}: {on_disk} bytes on disk, {size} received")
            os.fsync(written.fileno())
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(temp_path, final)
        _fsync_directory(final.parent)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def _fsync_directory(directory: Path) -> None:
    """Make a rename into ``directory`` durable (POSIX: the entry lives in the directory's own data)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
