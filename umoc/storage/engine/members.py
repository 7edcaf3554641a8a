"""A group's members as last read, kept by the node beside the version they came with (migration 030).

Every group-commit batch that posts to a group needs its members: to check
the sender and the mentions, to know each member's standing (role, mute),
and to tell the hub who the message is for.  Reading them is a row per
member (the chat's index, then the table for the role and mute): on SQLite
about 1.5 ms for a group of 1,000, which at eight messages a batch was
about a third of the writer's time per message.

``chats.members_version`` changes in the same transaction as any change of
a group's membership (triggers, so every writer keeps it: this node, an
older one, ``umoc-admin``).  The batch reads it with the chat's row, which
it reads and locks anyway, and reads the members again only when the
version differs from the one kept: the rows read per batch no longer grow
with the group.  Correct on several nodes for the same reason: the version
lives in the database, and it is read under the chat row's lock that every
membership change also takes.  Versions are unique, never counted up (a
rolled-back change cannot hand its number to another membership), so a
kept entry is either exactly what the database holds for that version or
never looked up again.

Bounded: at most `MAX_MEMBERS` member ids kept in all, the least recently
used groups dropped first; a group larger than that is not kept.  Shared
by the database's threads (PostgreSQL's lanes), so guarded by a lock held
only for a dictionary operation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_MEMBERS", "GroupMembers", "MemberCache"]

#: Member ids kept at most, over all groups (about 40 bytes each: a few MB).
MAX_MEMBERS = 100_000


@dataclass(frozen=True, slots=True)
class GroupMembers:
    """A group's members at one ``members_version``: their ids, and the standing of those not plain members."""

    version: int
    members: tuple[int, ...]
    #: user id -> (role, muted_until) for every member whose role is not "member" or who has a mute set;
    #: None when read without them (PostgreSQL's batch function checks the sender's standing itself).
    standing: dict[int, tuple[str, Any]] | None


class MemberCache:
    """Groups' members by group id, each valid for the ``members_version`` it was read at."""

    def __init__(self, max_members: int = MAX_MEMBERS) -> None:
        self.max_members = max_members
        self._groups: OrderedDict[int, GroupMembers] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, group_id: int, version: int) -> GroupMembers | None:
        """The group's members if they were kept at this version, else None."""
        with self._lock:
            kept = self._groups.get(group_id)
            if kept is None or kept.version != version:
                return None
            self._groups.move_to_end(group_id)
            return kept

    def peek(self, group_id: int) -> GroupMembers | None:
        """The group's kept members at whatever version (for the caller to name it), else None."""
        with self._lock:
            return self._groups.get(group_id)

    def put(self, group_id: int, kept: GroupMembers) -> None:
        """Keep ``kept`` for its group (replacing an older version), dropping the least recently used past the bound."""
        if len(kept.members) > self.max_members:
            return
        with self._lock:
            old = self._groups.pop(group_id, None)
            if old is not None:
                self._size -= len(old.members)
            self._groups[group_id] = kept
            self._size += len(kept.members)
            while self._size > self.max_members:
                _, dropped = self._groups.popitem(last=False)
                self._size -= len(dropped.members)

    def __len__(self) -> int:
        return len(self._groups)
