"""Files shared in chats: the upload a client announces, and the finished upload it shares as a message.

The file's own rules (allowed types, sizes, names) are the configuration's
and live in `umoc.domain.files.FileManager`, which takes these records.
"""

from __future__ import annotations

from dataclasses import dataclass

from umoc.records.messages import client_msg_id

__all__ = ["FileOffer", "FileRecord", "FileShare"]


@dataclass(frozen=True, slots=True)
class FileOffer:
    """A file a user is about to upload to a chat (``upload_file_prepare``)."""

    chat_id: int
    is_group: bool
    file_name: str
    file_size: int
    file_type: str


@dataclass(frozen=True, slots=True)
class FileShare:
    """A whole upload to share in the chat it was prepared for (``upload_file_complete``).

    ``file_name`` and ``file_type`` must be those the upload was prepared with;
    ``client_msg_id`` is the sender's key for the message, as `NewMessage`'s.
    """

    file_id: str
    chat_id: int
    is_group: bool
    file_name: str
    file_type: str
    client_msg_id: str | None = None
    #: As `NewMessage`'s: the file is a reply in this thread (checked when the message is).
    thread_id: str | None = None
    also_in_chat: bool = False

    def __post_init__(self) -> None:
        client_msg_id(self.client_msg_id)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """An upload as stored: who offered it for which chat, its declared name and type, where it stands."""

    id: str
    uploader_id: int
    chat_id: int
    is_group: bool
    file_name: str
    file_type: str
    file_size: int
    token_hash: str
    created_at: float
    expires_at: float
    token_used_at: float | None
    uploaded_at: float | None
    completed_at: float | None
