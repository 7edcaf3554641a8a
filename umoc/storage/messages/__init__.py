"""Messages, reads and the chat list, for direct chats and groups alike: `MessageStore`.

By concern, as Synapse splits its event stores:

* ``rows``: `Message`, `ChatEntry`, `History`, the select lists and the mapping from rows;
* ``write``: posting and deleting, each one named write of the group commit
  (``messages.post``, ``messages.delete``; on PostgreSQL a batch's posts are
  one call of a function, ``post_batch_txn``, thread replies included);
* ``read``: the chat list, history pages, missed messages and their annotations;
* read receipts are ``umoc.storage.receipts``, beside ``umoc.storage.deliveries``.

`MessageStore` is the one object the domain holds; the names other stores
import are re-exported here.
"""

from __future__ import annotations

from twisted.internet import defer

from umoc.records import Actor
from umoc.records.messages import Deletion, NewMessage, ReadReceipt
from umoc.storage.batching import Together
from umoc.storage.database import Database, Dialect, Txn
from umoc.storage.messages.read import (
    READ_COUNT,
    annotate_txn,
    chat_list_txn,
    chat_ref_txn,
    history_txn,
    keyed_message_txn,
    missed_txn,
    read_count_params,
)
from umoc.storage.messages.rows import (
    MESSAGE_COLUMNS,
    UNKNOWN_CHAT,
    ChatEntry,
    History,
    Message,
    message_from_row,
)
from umoc.storage.messages.write import (
    INDEX_EVERY,
    Deleted,
    KeyTakenError,
    delete_txn,
    group_members_txn,
    index_pending_txn,
    post_batch_txn,
    post_each_txn,
    post_txn,
)
from umoc.storage.receipts import Read, read_txn
from umoc.storage.replica import ReadRouter

__all__ = [
    "INDEX_EVERY",
    "ChatEntry",
    "Deleted",
    "History",
    "KeyTakenError",
    "MESSAGE_COLUMNS",
    "Message",
    "MessageStore",
    "READ_COUNT",
    "UNKNOWN_CHAT",
    "annotate_txn",
    "group_members_txn",
    "index_pending_txn",
    "message_from_row",
    "post_together",
    "read_count_params",
]


def post_together(dialect: Dialect, new: NewMessage) -> Together | None:
    """The function writing a group-commit batch's posts like ``new`` in one call, where the dialect has one.

    PostgreSQL: migration 029's function, in one round trip, thread replies
    (``thread_id``, ``also_in_chat``) and ``extra`` included.  It stores no
    poll: such a message is written by `post_txn`, in the same batch (after
    or before the function's share: a batch's writes are concurrent sends,
    unordered anyway).  SQLite: every message through `post_each_txn`, which
    indexes the batch's text for search once enough waits (migration 027).
    """
    if dialect.batched_search_index:
        return post_each_txn
    return post_batch_txn if dialect.batch_functions and new.poll is None else None


def _chat_key(sender_id: int, new: NewMessage) -> int:
    """The group-commit lane key of a chat: the group, or the pair of a direct chat.

    The pair is hashed (Python's tuple hash of ints: the same in every
    process), not summed: ``31 * lo + hi`` is ``hi - lo`` modulo 4, so with
    the default four lanes every pair of neighbouring ids (users who signed
    up together, the bench's pairs) fell on one lane and PostgreSQL ran one
    batch at a time (issue 25).
    """
    if new.is_group:
        return new.recipient_id
    a, b = sender_id, new.recipient_id
    return hash((a, b) if a < b else (b, a))


class MessageStore:
    """Messages and per-user chat state."""

    def __init__(self, db: Database, reads: ReadRouter | None = None) -> None:
        self._db = db
        #: History and ``sync {since}`` may come from the replica (`ReadRouter`).
        self._reads = reads if reads is not None else ReadRouter(db)

    def post(
        self, sender: Actor, new: NewMessage, message_id: str, now: float, keys_since: float = 0.0
    ) -> defer.Deferred[tuple[Message, list[int]]]:
        """Check the sender may write, store, count: one write, ``messages.post``. ``(message, audience)``.

        ``new`` is a checked `NewMessage`: its ``reply_to`` must be a live
        message of the same chat and its ``mentions`` members of it.  Raises
        `RefusedError` when the chat is not writable by the sender or a reply
        target or mention is not right, and `KeyTakenError` (nothing stored) when
        the sender's ``new.client_msg_id`` is on a message stored at or after
        ``keys_since``: the unique index decides, also between nodes.
        """
        key = _chat_key(sender.uid, new)
        together = post_together(self._db.dialect, new)
        return self._db.write(
            "messages.post", key, post_txn, sender, new, message_id, now, keys_since, together=together
        )

    def by_client_msg_id(self, sender_id: int, client_msg_id: str) -> defer.Deferred[Message | None]:
        """The sender's message with this key (as `new_message` shows it), whenever it was stored; or None."""
        return self._db.read("messages.by_client_msg_id", keyed_message_txn, sender_id, client_msg_id)

    def delete(self, actor: Actor, deletion: Deletion, now: float) -> defer.Deferred[Deleted]:
        """Soft-delete the actor's own message (anybody's for an operator). Raises `RefusedError`."""
        return self._db.write("messages.delete", actor.user_id or 0, delete_txn, actor, deletion, now)

    def mark_read(self, reader_id: int, receipt: ReadReceipt, now: float) -> defer.Deferred[Read]:
        """Mark messages from ``receipt.sender_id`` to the reader (or the reader's groups) read.

        Raises `RefusedError`; returns the ids, without repeats, and the
        reader's state of each chat they are in (recorded as ``chat_read``).
        """
        return self._db.write(
            "messages.read", reader_id, read_txn, reader_id, receipt.sender_id, list(receipt.message_ids), now
        )

    def chat_list(self, user_id: int) -> defer.Deferred[list[ChatEntry]]:
        """Every chat of the user, newest activity first: three queries (chats, mentions, peer profiles)."""
        return self._db.read("messages.chat_list", chat_list_txn, user_id)

    def history(self, user_id: int, chat_id: int, is_group: bool, page: int, page_size: int) -> defer.Deferred[History]:
        """One page (1 = newest) of a chat the user is in. Raises `RefusedError` otherwise."""
        return self._reads.read("messages.history", user_id, history_txn, user_id, chat_id, is_group, page, page_size)

    def missed_since(
        self, user_id: int, since_epoch: float, limit: int, after_seq: int = 0
    ) -> defer.Deferred[list[Message]]:
        """Every live message in the user's chats after ``since_epoch``, oldest first.

        ``after_seq`` pages on: the next page starts after the last ``seq`` seen.
        """
        return self._reads.read("messages.missed_since", user_id, missed_txn, user_id, since_epoch, limit, after_seq)

    def has_direct_chat(self, user_id: int, peer_id: int) -> defer.Deferred[bool]:
        def txn_fn(txn: Txn) -> bool:
            return chat_ref_txn(txn, user_id, peer_id, False) is not None

        return self._db.read("messages.has_direct_chat", txn_fn)
