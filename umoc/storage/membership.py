"""A group's members as an event's audience, read through the node's kept members (migration 030).

A reaction, an edit, a deletion, a pin, a vote or a typing indicator in a
group goes to its members.  Reading them was a row per member for every
such event; `members_at_txn` takes them from `umoc.storage.engine.members`
when the chat's ``members_version``, which the caller reads with the chat's
row, is the one they were kept at.
"""

from __future__ import annotations

from umoc.storage.database import Txn
from umoc.storage.engine.members import GroupMembers

__all__ = ["kept_members_txn", "members_at_txn"]


def members_at_txn(txn: Txn, group_id: int, version: int) -> tuple[int, ...]:
    """The group's members at ``version`` (its ``chats.members_version``, read by the caller in this
    transaction): the node's kept ones (`MemberCache`) when they are of that version, else read and kept.

    For an event's audience (a reaction, an edit, typing): the members as of
    the version read, however the transaction reads, since a version names
    one membership.  Kept without standings (`group_members_txn` reads those).
    Without the chat row's lock a membership committed between the caller's
    read of the version and this read can be kept under the older version:
    only a reader that read that version, concurrently with the change, is
    ever given it, as it could have read the members so without the cache.
    """
    return kept_members_txn(txn, group_id, version, standings=False).members


def kept_members_txn(txn: Txn, group_id: int, version: int, standings: bool) -> GroupMembers:
    """The group's `GroupMembers` at ``version``: kept, else read and kept; with their standings if asked.

    ``standings``: each member's role and mute too (a send checks its
    sender's), so an entry kept without them is read again.
    """
    cache = txn.members
    kept = cache.get(group_id, version) if cache is not None else None
    if kept is not None and (kept.standing is not None or not standings):
        return kept
    if standings:
        rows = txn.execute(
            "SELECT user_id, role, muted_until FROM user_chats WHERE chat_id = ?", (group_id,)
        ).fetchall()
        kept = GroupMembers(
            version,
            tuple(int(r["user_id"]) for r in rows),
            # Each member's standing other than a plain member's, read with the members (no query of its own).
            {
                int(r["user_id"]): (r["role"], r["muted_until"])
                for r in rows
                if r["role"] != "member" or r["muted_until"]
            },
        )
    else:
        rows = txn.execute("SELECT user_id FROM user_chats WHERE chat_id = ?", (group_id,)).fetchall()
        kept = GroupMembers(version, tuple(int(r[0]) for r in rows), None)
    if cache is not None:
        cache.put(group_id, kept)
    return kept
