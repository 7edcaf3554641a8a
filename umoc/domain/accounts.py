"""Deleting an account (by its owner or an administrator) and exporting one's data.

Both deletion paths share `Accounts.delete`: the storage transaction of
``umoc.storage.accounts`` (after erasing message content in bounded
batches when asked), then everyone concerned is told, in this order:

- each user who had them as a contact gets ``contact_removed {user_id}``;
- the members of each group they left get ``group_member_removed``, as for
  ``leave_group`` (an admin leaving last promotes the longest-standing
  member; the last member leaving closes the group);
- every socket of the user, on every node, gets ``account_deleted {}``;
- then `Accounts.finish` ends every session they had, on every node, with
  the usual ``session_status {valid: false}`` and disconnect, and removes
  the bytes of their uploads.

With ``erase``, the user's reactions go too, in batches after the
messages': each batch's removals reach the chats' members at once as
``reaction_updated`` (``action: "removed"``, ``user_id`` the deleted user),
as a ``remove_reaction`` would.  Once the account is gone, `Accounts` scrubs
the database in the background (`AccountStore.scrub`: SQLite's search index
rewritten and its WAL truncated, so no erased word stays on disk), one scrub
at a time, erasures meanwhile folded into one more run.

The owner's own path (``delete_account``) finishes one reactor turn later
(`Accounts.finish_later`), so its socket has the acknowledgement before it
is closed.

The export (`Accounts.export`) yields the JSON document in pieces: the
messages are read a page at a time, so memory stays bounded whatever the
user sent; the HTTP edge writes each piece as the client takes it.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.cluster.hub import Hub
from umoc.domain import notices
from umoc.domain.files import FileManager, download_url
from umoc.domain.notices import replay, shapes
from umoc.domain.sessions import SessionManager
from umoc.errors import UserError
from umoc.storage import Storage
from umoc.storage.accounts import DeletedAccount, RemovedReaction
from umoc.timefmt import iso, iso_or_none

__all__ = ["DELETED", "Accounts", "AccountNotFoundError"]

log = Logger()

#: What the sockets of a deleted account are told as their sessions end.
DELETED = "Your account has been deleted"


class AccountNotFoundError(UserError):
    """No such account, or it was deleted already."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_found")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Accounts:
    """Account deletion and export, for ``delete_account``, ``/api/admin/`` and ``umoc-admin``."""

    #: Messages erased per transaction: each batch stays well inside the database's deadline.
    ERASE_BATCH = 2000
    #: Rows the export reads per query.
    EXPORT_PAGE = 500

    def __init__(
        self, storage: Storage, sessions: SessionManager, hub: Hub, files: FileManager, clock: IReactorTime
    ) -> None:
        self._storage = storage
        self._sessions = sessions
        self._hub = hub
        self._files = files
        self._clock = clock
        #: The background scrub under way (None: none), and whether an erasure since asks for another.
        self._scrubbing: defer.Deferred[None] | None = None
        self._scrub_again = False

    # -- deletion ---------------------------------------------------------------------

    async def delete_own(self, user_id: int, password: str, erase: bool) -> DeletedAccount:
        """The owner deletes their account: the password is checked as at login (`InvalidCredentialsError`).

        The sessions are left for the caller to end, with `finish_later`,
        once it has answered the request.
        """
        await self._sessions.check_password(user_id, password)
        return await self.delete(user_id, erase, f"user {user_id}", finish=False)

    async def delete(self, user_id: int, erase: bool, actor: str, finish: bool = True) -> DeletedAccount:
        """Delete the account (see the module); `AccountNotFoundError` if it does not exist or is gone.

        Nothing is awaited between the commit and ``account_deleted``: a
        node's session sweep must not close the sockets before they hear it.
        ``finish`` then ends the sessions and removes the files' bytes.
        """
        if await self._storage.accounts.profile(user_id) is None:
            raise AccountNotFoundError("No such user")
        erased, through = 0, None
        if erase:
            through = 0
            while True:
                count, through = await self._storage.accounts.erase_batch(user_id, through, self.ERASE_BATCH)
                erased += count
                if count < self.ERASE_BATCH:
                    break
            while True:
                at = self._clock.seconds()
                removed, done = await self._storage.accounts.unreact_batch(user_id, at, self.ERASE_BATCH)
                self._unreacted(user_id, removed, at)
                if done < self.ERASE_BATCH:
                    break
        at = self._clock.seconds()
        deleted = await self._storage.accounts.delete(user_id, at, through)
        if deleted is None:
            raise AccountNotFoundError("No such user")
        self._sessions.will_end(deleted.sessions, DELETED)
        self._announce(deleted, at)
        if erase:
            self._unreacted(user_id, deleted.reactions, at)
            self.scrub()
        log.info(
            "Account {username} (id {user_id}) deleted by {actor}: {sessions} sessions, {groups} groups left,"
            " {files} files, {erased} messages erased",
            event="account_deleted",
            username=deleted.former_username,
            user_id=user_id,
            actor=actor,
            sessions=len(deleted.sessions),
            groups=len(deleted.groups),
            files=len(deleted.files),
            erased=erased if erase else "no",
        )
        if finish:
            await self.finish(deleted)
        return deleted

    async def finish(self, deleted: DeletedAccount) -> None:
        """End every session of the deleted account on every node, then remove its uploads' bytes."""
        self._sessions.end_all(deleted.sessions, DELETED)
        await self._files.remove(deleted.files)

    def finish_later(self, deleted: DeletedAccount) -> None:
        """`finish` one reactor turn from now: after the caller's answer has gone out."""

        def run() -> None:
            d = defer.ensureDeferred(self.finish(deleted))
            d.addErrback(
                lambda f: log.failure("Finishing the deletion of user {user_id} failed", f, user_id=deleted.user_id)
            )

        self._clock.callLater(0, run)

    def _unreacted(self, user_id: int, removed: list[RemovedReaction], at: float) -> None:
        """``reaction_updated`` (removed) for each of the deleted user's reactions, to the chat's members."""
        for one in removed:
            target = one.target
            key = replay.reaction(target.id, user_id, one.emoji, False, at)
            for users, chat_id in target.views():
                updated = shapes.reaction_updated(
                    (target.id, chat_id, target.is_group), user_id, one.emoji, False, one.reactions
                )
                self._hub.tell(users, notices.REACTION_UPDATED(updated), key=key)

    def scrub(self) -> defer.Deferred[None]:
        """Scrub the database in the background (see the module); fires when no scrub is left to run."""
        if self._scrubbing is not None:
            self._scrub_again = True
            return self.scrubbed()
        self._scrubbing = defer.ensureDeferred(self._scrub())
        return self.scrubbed()

    def scrubbed(self) -> defer.Deferred[None]:
        """Fires once no scrub is running (at once if none is)."""
        running = self._scrubbing
        if running is None:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()

        def passed(result: None) -> None:  # _scrub logs its failures: it never fails
            done.callback(None)

        running.addCallback(passed)
        return done

    async def _scrub(self) -> None:
        try:
            while True:
                self._scrub_again = False
                try:
                    outcome = await self._storage.accounts.scrub()
                except Exception:  # noqa: BLE001 - the erasure itself is done; log and go on
                    log.failure("Scrubbing the database after an erasure failed")
                else:
                    if outcome is not None and outcome[0]:
                        log.warn("The WAL checkpoint after an erasure was held back by a reader; the next one ends it")
                if not self._scrub_again:
                    break
        finally:
            self._scrubbing = None

    def _announce(self, deleted: DeletedAccount, at: float) -> None:
        """What the deletion's feed rows say, live; ``at`` is the time the store was given."""
        user_id = deleted.user_id
        hub = self._hub
        if deleted.contacts:
            key = replay.contact(user_id, "contact_removed", at)
            hub.tell(deleted.contacts, notices.CONTACT_REMOVED({"user_id": user_id}), key=key)
        for group_id, change in deleted.groups:
            hub.tell(
                [*change.members, user_id],
                notices.GROUP_MEMBER_REMOVED({"chat_id": group_id, "user_id": user_id}),
                key=replay.member("member_removed", group_id, user_id, at),
            )
            if change.promoted is not None:
                promoted = shapes.member_role_changed(group_id, change.promoted)
                key = replay.member_role(group_id, change.promoted.user_id, change.promoted.role, at)
                hub.tell(change.members, notices.MEMBER_ROLE_CHANGED(promoted), key=key)
        hub.tell([user_id], notices.ACCOUNT_DELETED({}))

    # -- export -----------------------------------------------------------------------

    async def export(self, user_id: int) -> AsyncIterator[str]:
        """The user's data as one JSON object, in pieces (`AccountNotFoundError` before the first if gone).

        ``{"exported_at", "profile", "contacts", "groups", "files", "messages"}``;
        files and messages are read a page at a time.
        """
        accounts = self._storage.accounts
        profile = await accounts.profile(user_id)
        if profile is None:
            raise AccountNotFoundError("No such user")
        return self._export_pieces(user_id, profile)

    async def _export_pieces(self, user_id: int, profile: dict[str, Any]) -> AsyncIterator[str]:
        accounts = self._storage.accounts
        head = {
            "exported_at": iso(self._clock.seconds()),
            "profile": {
                "user_id": int(profile["id"]),
                "username": profile["username"],
                "display_name": profile["display_name"],
                "status_text": profile["status_text"],
                "avatar_url": download_url(profile["avatar_file_id"]) if profile["avatar_file_id"] else None,
                "created_at": iso(float(profile["created_at"])),
                "last_seen": iso_or_none(profile["last_seen"]),
                "settings": {"send_delivery_receipts": bool(profile["send_delivery_receipts"])},
                **({"extra": json.loads(profile["extra"])} if profile["extra"] is not None else {}),
            },
        }
        yield _dumps(head)[:-1]
        contacts = [
            {
                "user_id": int(r["contact_id"]),
                "username": r["username"],
                "status": r["status"],
                "requester_id": int(r["requester_id"]),
                "created_at": iso(float(r["created_at"])),
                "updated_at": iso(float(r["updated_at"])),
            }
            for r in await accounts.contacts(user_id)
        ]
        yield ',"contacts":' + _dumps(contacts)
        groups = [
            {
                "chat_id": int(r["id"]),
                "name": r["name"],
                "description": r["description"],
                "created_at": iso(float(r["created_at"])),
                "joined_at": iso(float(r["joined_at"])),
                "role": r["role"],
            }
            for r in await accounts.groups(user_id)
        ]
        yield ',"groups":' + _dumps(groups)
        yield ',"files":['
        after, first = "", True
        while True:
            rows = await accounts.files_page(user_id, after, self.EXPORT_PAGE)
            if not rows:
                break
            items = [
                _dumps(
                    {
                        "file_id": r["id"],
                        "chat_id": int(r["chat_id"]),
                        "is_group": bool(r["is_group"]),
                        "file_name": r["file_name"],
                        "file_type": r["file_type"],
                        "file_size": int(r["file_size"]),
                        "created_at": iso(float(r["created_at"])),
                        "completed_at": iso_or_none(r["completed_at"]),
                        "message_id": r["message_id"],
                    }
                )
                for r in rows
            ]
            yield ("" if first else ",") + ",".join(items)
            first, after = False, rows[-1]["id"]
        yield '],"messages":['
        after_seq, first = 0, True
        while True:
            rows = await accounts.messages_page(user_id, after_seq, self.EXPORT_PAGE)
            if not rows:
                break
            yield ("" if first else ",") + ",".join(_dumps(_exported_message(r)) for r in rows)
            first, after_seq = False, int(rows[-1]["seq"])
        yield "]}"


def _exported_message(row: Any) -> dict[str, Any]:
    item = {
        "message_id": row["id"],
        "chat_id": int(row["recipient_id"]),
        "is_group": bool(row["is_group"]),
        "type": row["type"],
        "content": row["content"],
        "timestamp": iso(float(row["created_at"])),
        "edited_at": iso_or_none(row["edited_at"]),
        "reply_to": row["reply_to"],
    }
    if row["encrypted_content"] is not None:
        item["encrypted_content"] = row["encrypted_content"]
    if row["extra"] is not None:
        item["extra"] = json.loads(row["extra"])
    if row["thread_id"] is not None:
        item["thread_id"] = row["thread_id"]
        item["also_in_chat"] = bool(row["also_in_chat"])
    return item
