"""Deleting an account, and reading everything of one account for its export.

A deleted account keeps its ``users`` row (messages reference it, and stay
in other people's histories), scrubbed: the name becomes `tombstone` (which
frees the old name and can never be logged in with or looked up), the
password hash and profile are cleared, ``deleted_at`` and
``deactivated_at`` are set.  Everything else that was the user's goes in
the same transaction as the scrub: sessions, contacts (both directions),
group memberships (by the leave rules of ``umoc.storage.groups``), push
registrations, mutes, bot tokens, unread mentions, and the rows of the
files they uploaded (the caller removes the bytes once it has committed).

Erasing the content of the user's messages is done in bounded batches
(`AccountStore.erase_batch`), each its own transaction, before the
deletion (which erases, in its own transaction, the few sent meanwhile): a
long history must not hold one transaction past the database's deadline,
and an account is only ever reported deleted once everything asked for is
done.  An erased message keeps its id, chat,
sender and times; its ``type`` becomes ``"erased"`` and its content
``""`` (no client can send that type, so clients can tell), and the
content it had before edits goes too.  Replies show their target's
current type and content, so they follow.  The user's reactions go too, in
batches of their own (`AccountStore.unreact_batch`) and for the few put on
meanwhile in the deletion's transaction: each removal is a ``reaction``
change (action ``"removed"``) in the chat's feed, and the caller tells the
chat's members with ``reaction_updated``.

Erased words must not stay on disk either (issue 22, G11).  On SQLite the
erasing transactions run with ``PRAGMA secure_delete`` (freed space and
pages are zeroed), but an FTS5 ``'delete'`` only adds a tombstone: the words
stay in the index's segments until they are merged.  `AccountStore.scrub`
rewrites the index (``'optimize'``) and checkpoints the WAL into the file,
truncating it.  On PostgreSQL the old row versions stay in the table and
index files and in the WAL until VACUUM and WAL recycling (see the operator
guide); `scrub` does nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from twisted.internet import defer

from umoc.storage.changes import NewChange, record_txn
from umoc.storage.database import Database, Row, Txn, in_clause
from umoc.storage.groups import MembershipChange, remove_member_txn
from umoc.storage.reactions import Reaction, reactions_for_txn
from umoc.storage.replica import ReadRouter
from umoc.storage.targets import Target, target_by_seq_txn

__all__ = ["ERASED_TYPE", "AccountStore", "DeletedAccount", "RemovedReaction", "secure", "tombstone"]

T = TypeVar("T")

#: The ``type`` of a message whose content was erased with its sender's account.
ERASED_TYPE = "erased"


def tombstone(user_id: int) -> str:
    """The name a deleted account keeps: ``:`` is not allowed in usernames, so no live name collides."""
    return f"deleted:{user_id}"


@dataclass(frozen=True, slots=True)
class DeletedAccount:
    """What a deletion changed, for the caller to tell: whose sockets, which files on disk."""

    user_id: int
    #: The name the account had (for the log; it is free again now).
    former_username: str
    #: Sessions deleted: their sockets are closed on every node.
    sessions: list[str]
    #: Users who had the deleted user in their contact list: they get ``contact_removed``.
    contacts: list[int]
    #: ``(group id, change)`` for each group the user left.
    groups: list[tuple[int, MembershipChange]]
    #: Ids of the files the user uploaded (rows gone; the bytes are the caller's to remove).
    files: list[str]
    #: With erasing: the reactions put on since the last `AccountStore.unreact_batch`, now removed.
    reactions: list[RemovedReaction] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RemovedReaction:
    """One emoji of the deleted user taken off a live message, for ``reaction_updated``."""

    target: Target
    emoji: str
    #: The message's reactions after the removal.
    reactions: list[Reaction]


def _delete_txn(txn: Txn, user_id: int, now: float, erased_through: int | None) -> DeletedAccount | None:
    row = txn.execute(
        "SELECT username, deleted_at FROM users WHERE id = ?" + txn.dialect.for_update, (user_id,)
    ).fetchone()
    if row is None or row["deleted_at"] is not None:
        return None
    former = row["username"]
    sessions = [r["id"] for r in txn.execute("SELECT id FROM sessions WHERE user_id = ?", (user_id,)).fetchall()]
    txn.execute("DELETE FROM push_registrations WHERE user_id = ?", (user_id,))
    txn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
    contacts = [
        int(r["owner_id"])
        for r in txn.execute(
            "SELECT owner_id FROM contacts WHERE contact_id = ? ORDER BY owner_id", (user_id,)
        ).fetchall()
    ]
    txn.execute("DELETE FROM contacts WHERE owner_id = ? OR contact_id = ?", (user_id, user_id))
    # The feed: each former contact's stream records the contact_removed they are told live.
    if contacts:
        removed = {"event": "contact_removed", "status": None}
        record_txn(
            txn, *(NewChange("contact", now, user_id=owner, actor_id=user_id, data=removed) for owner in contacts)
        )
    group_ids = [
        int(r["chat_id"])
        for r in txn.execute(
            "SELECT uc.chat_id FROM user_chats uc JOIN chats c ON c.id = uc.chat_id"
            " WHERE uc.user_id = ? AND uc.is_group = 1 AND c.closed_at IS NULL ORDER BY uc.chat_id",
            (user_id,),
        ).fetchall()
    ]
    groups = [(group_id, remove_member_txn(txn, group_id, user_id, user_id, now)) for group_id in group_ids]
    # The user's own stream and profile changes go with them (a change that is also in a chat's
    # stream, as their removal from a group, stays there for the others), and their past memberships.
    txn.execute("DELETE FROM changes WHERE (user_id = ? AND chat_id IS NULL) OR profile_id = ?", (user_id, user_id))
    txn.execute("DELETE FROM changes WHERE kind = 'thread_follow' AND user_id IS NULL AND actor_id = ?", (user_id,))
    txn.execute("DELETE FROM left_chats WHERE user_id = ?", (user_id,))
    txn.execute("DELETE FROM chat_mutes WHERE user_id = ?", (user_id,))
    txn.execute("DELETE FROM bot_tokens WHERE user_id = ?", (user_id,))
    txn.execute("DELETE FROM unread_mentions WHERE user_id = ?", (user_id,))
    # Which options they voted for goes; the tallies keep their votes, as cast (a secret ballot's count).
    txn.execute("DELETE FROM poll_votes WHERE user_id = ?", (user_id,))
    # The threads they followed (the threads keep their counts and participants, as ids).
    txn.execute("DELETE FROM thread_follows WHERE user_id = ?", (user_id,))
    unreacted: list[RemovedReaction] = []
    if erased_through is not None:
        # What the batches before this did not reach: sent since (sending is rate limited, so few).
        _erase_txn(txn, user_id, erased_through, None)
        unreacted = _unreact_txn(txn, user_id, now, None)[0]
    files = [r["id"] for r in txn.execute("SELECT id FROM files WHERE uploader_id = ?", (user_id,)).fetchall()]
    txn.execute("DELETE FROM files WHERE uploader_id = ?", (user_id,))
    txn.execute(
        "UPDATE users SET username = ?, password_hash = '', display_name = NULL, status_text = NULL,"
        " avatar_file_id = NULL, extra = NULL, is_admin = 0, is_bot = 0, push_enabled = 0,"
        " deactivated_at = COALESCE(deactivated_at, ?), deleted_at = ? WHERE id = ?",
        (tombstone(user_id), now, now, user_id),
    )
    return DeletedAccount(user_id, former, sessions, contacts, groups, files, unreacted)


def _erase_txn(txn: Txn, user_id: int, after_seq: int, limit: int | None) -> tuple[int, int]:
    """Erase the user's next ``limit`` messages past ``after_seq`` (None: all of them); ``(how many, last seq)``.

    Keyset paging on ``messages_sender``: each batch starts where the last
    ended instead of skipping over what is erased already.
    """
    rows = txn.execute(
        "SELECT seq FROM messages WHERE sender_id = ? AND seq > ? AND type <> ? ORDER BY seq"
        + (" LIMIT ?" if limit is not None else ""),
        (user_id, after_seq, ERASED_TYPE, limit) if limit is not None else (user_id, after_seq, ERASED_TYPE),
    ).fetchall()
    if not rows:
        return 0, after_seq
    first, last = int(rows[0]["seq"]), int(rows[-1]["seq"])
    txn.execute(
        "DELETE FROM message_edits WHERE message_seq IN"
        " (SELECT seq FROM messages WHERE sender_id = ? AND seq BETWEEN ? AND ?)",
        (user_id, first, last),
    )
    # Their polls' options and votes go (before the type changes: the rows are found by it).
    polls = "(SELECT seq FROM messages WHERE sender_id = ? AND seq BETWEEN ? AND ? AND type = 'poll')"
    txn.execute("DELETE FROM poll_votes WHERE message_seq IN " + polls, (user_id, first, last))
    txn.execute("DELETE FROM polls WHERE message_seq IN " + polls, (user_id, first, last))
    txn.execute(
        "UPDATE messages SET type = ?, content = '', encrypted_content = NULL, mentions = NULL, extra = NULL"
        " WHERE sender_id = ? AND seq BETWEEN ? AND ? AND type <> ?",
        (ERASED_TYPE, user_id, first, last, ERASED_TYPE),
    )
    return len(rows), last


def _unreact_txn(txn: Txn, user_id: int, now: float, limit: int | None) -> tuple[list[RemovedReaction], int]:
    """Remove the user's reactions on their next ``limit`` messages (None: all); ``(live ones, messages)``.

    Keyset paging on ``message_reactions_user``: what a batch removes is gone,
    so each batch starts at the user's first remaining reaction.  Each removal
    is a ``reaction`` change in the chat's feed; removals from deleted messages
    are neither recorded nor returned (nobody sees those reactions).
    """
    rows = txn.execute(
        "SELECT DISTINCT message_seq FROM message_reactions WHERE user_id = ? ORDER BY message_seq"
        + (" LIMIT ?" if limit is not None else ""),
        (user_id, limit) if limit is not None else (user_id,),
    ).fetchall()
    seqs = [int(r["message_seq"]) for r in rows]
    if not seqs:
        return [], 0
    emojis = txn.execute(
        "SELECT message_seq, emoji FROM message_reactions WHERE user_id = ? AND message_seq IN "
        + in_clause(seqs)
        + " ORDER BY message_seq, created_at, emoji",
        (user_id, *seqs),
    ).fetchall()
    txn.execute(
        "DELETE FROM message_reactions WHERE user_id = ? AND message_seq IN " + in_clause(seqs), (user_id, *seqs)
    )
    after = reactions_for_txn(txn, seqs)
    targets = {seq: target_by_seq_txn(txn, seq) for seq in seqs}
    removed = [
        RemovedReaction(target, r["emoji"], after.get(target.seq, []))
        for r in emojis
        if (target := targets[int(r["message_seq"])]) is not None
    ]
    if removed:
        record_txn(
            txn,
            *(
                NewChange(
                    "reaction",
                    now,
                    chat_id=one.target.chat_id,
                    message_seq=one.target.seq,
                    actor_id=user_id,
                    data={"emoji": one.emoji, "action": "removed"},
                )
                for one in removed
            ),
        )
    return removed, len(seqs)


def secure(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` with SQLite's ``secure_delete`` on: what it deletes or overwrites is zeroed in the pages.

    Only for erasing (it costs a write of every freed byte); SQLite has one
    writing connection, so the pragma is set back before any other write runs.
    """

    def run(txn: Txn, *args: Any) -> T:
        if txn.dialect.name != "sqlite":
            return fn(txn, *args)
        txn.execute("PRAGMA secure_delete = ON")
        try:
            return fn(txn, *args)
        finally:
            txn.execute("PRAGMA secure_delete = OFF")

    return run


def _optimize_txn(txn: Txn) -> None:
    """Rewrite the FTS5 index as one segment: the words of deleted rows go with their tombstones."""
    txn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")


def _checkpoint_txn(txn: Txn) -> tuple[int, int, int]:
    """Copy the WAL into the database file and truncate it to zero bytes; ``(busy, frames, checkpointed)``.

    A PRAGMA opens no transaction in sqlite3's default mode, and a checkpoint
    must run outside one.
    """
    row = txn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert row is not None  # the pragma always answers one row
    return int(row[0]), int(row[1]), int(row[2])


# -- export ------------------------------------------------------------------------


def _profile_txn(txn: Txn, user_id: int) -> dict[str, Any] | None:
    row = txn.execute(
        "SELECT id, username, display_name, status_text, avatar_file_id, created_at, last_seen,"
        " send_delivery_receipts, extra FROM users WHERE id = ? AND deleted_at IS NULL",
        (user_id,),
    ).fetchone()
    return None if row is None else dict(zip(row.keys(), tuple(row), strict=True))


def _contacts_txn(txn: Txn, user_id: int) -> list[Row]:
    return txn.execute(
        "SELECT c.contact_id, u.username, c.status, c.requester_id, c.created_at, c.updated_at"
        " FROM contacts c JOIN users u ON u.id = c.contact_id WHERE c.owner_id = ? ORDER BY c.contact_id",
        (user_id,),
    ).fetchall()


def _groups_txn(txn: Txn, user_id: int) -> list[Row]:
    return txn.execute(
        "SELECT c.id, c.name, c.description, c.created_at, uc.role, uc.joined_at"
        " FROM user_chats uc JOIN chats c ON c.id = uc.chat_id"
        " WHERE uc.user_id = ? AND uc.is_group = 1 AND c.closed_at IS NULL ORDER BY c.id",
        (user_id,),
    ).fetchall()


def _files_txn(txn: Txn, user_id: int, after: str, limit: int) -> list[Row]:
    return txn.execute(
        "SELECT id, chat_id, is_group, file_name, file_type, file_size, created_at, completed_at, message_id"
        " FROM files WHERE uploader_id = ? AND id > ? ORDER BY id LIMIT ?",
        (user_id, after, limit),
    ).fetchall()


def _messages_txn(txn: Txn, user_id: int, after_seq: int, limit: int) -> list[Row]:
    """A page of the user's live messages by seq; ``chat_id`` as clients know it (the peer, or the group)."""
    return txn.execute(
        "SELECT m.seq, m.id, m.recipient_id, m.is_group, m.type, m.content, m.encrypted_content, m.created_at,"
        " m.edited_at, t.id AS reply_to, m.extra, m.thread_id, m.also_in_chat"
        " FROM messages m LEFT JOIN messages t ON t.seq = m.reply_to_seq"
        " WHERE m.sender_id = ? AND m.seq > ? AND m.deleted_at IS NULL ORDER BY m.seq LIMIT ?",
        (user_id, after_seq, limit),
    ).fetchall()


class AccountStore:
    """Account deletion and the export's reads."""

    def __init__(self, db: Database, reads: ReadRouter | None = None) -> None:
        self._db = db
        #: The export's reads may come from the replica (`ReadRouter`).
        self._reads = reads if reads is not None else ReadRouter(db)

    def delete(self, user_id: int, now: float, erased_through: int | None) -> defer.Deferred[DeletedAccount | None]:
        """Scrub the account and remove what was its own (see the module); None if unknown or deleted already.

        ``erased_through``: the last seq `erase_batch` reached; the user's
        messages after it are erased in the same transaction (None: no erasing).
        """
        fn = _delete_txn if erased_through is None else secure(_delete_txn)
        return self._db.run("accounts.delete", fn, user_id, now, erased_through)

    def erase_batch(self, user_id: int, after_seq: int, limit: int) -> defer.Deferred[tuple[int, int]]:
        """Erase the content of the user's next ``limit`` messages after ``after_seq``; ``(how many, last seq)``."""
        return self._db.run("accounts.erase_batch", secure(_erase_txn), user_id, after_seq, limit)

    def unreact_batch(self, user_id: int, now: float, limit: int) -> defer.Deferred[tuple[list[RemovedReaction], int]]:
        """Remove the user's reactions on ``limit`` messages; ``(the live ones removed, messages done)``.

        Fewer messages than ``limit`` done: none are left.
        """
        return self._db.run("accounts.unreact_batch", secure(_unreact_txn), user_id, now, limit)

    async def scrub(self) -> tuple[int, int, int] | None:
        """After an erasure, leave no erased word in the SQLite file or WAL; None on PostgreSQL.

        ``'optimize'`` rewrites the whole FTS5 index in one write transaction
        (time and bytes in proportion to the index: every writer waits for it,
        and past ``database.timeout`` it is rolled back), with ``secure_delete``
        on so the old segments' pages are zeroed; then the WAL is checkpointed
        into the file and truncated.  Answers the checkpoint's ``(busy, frames,
        checkpointed)``: busy 1 means a reader held it back (the WAL keeps its
        frames until the next checkpoint).
        """
        if self._db.dialect.name != "sqlite":
            return None
        await self._db.run("accounts.scrub", secure(_optimize_txn))
        return await self._db.run("accounts.checkpoint", _checkpoint_txn)

    def profile(self, user_id: int) -> defer.Deferred[dict[str, Any] | None]:
        """The user's own row as the export shows it (None once deleted)."""
        return self._reads.read("accounts.profile", user_id, _profile_txn, user_id)

    def contacts(self, user_id: int) -> defer.Deferred[list[Row]]:
        return self._reads.read("accounts.contacts", user_id, _contacts_txn, user_id)

    def groups(self, user_id: int) -> defer.Deferred[list[Row]]:
        """Open groups the user is a member of, with their role."""
        return self._reads.read("accounts.groups", user_id, _groups_txn, user_id)

    def files_page(self, user_id: int, after: str, limit: int) -> defer.Deferred[list[Row]]:
        """Files the user uploaded with ids after ``after``, by id."""
        return self._reads.read("accounts.files_page", user_id, _files_txn, user_id, after, limit)

    def messages_page(self, user_id: int, after_seq: int, limit: int) -> defer.Deferred[list[Row]]:
        """The user's live messages with seq after ``after_seq``, oldest first (keyset paging on their index)."""
        return self._reads.read("accounts.messages_page", user_id, _messages_txn, user_id, after_seq, limit)
