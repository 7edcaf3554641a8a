"""What a socket's connect and disconnect need from the database, each in one transaction.

A connect of a cached session used to cost two reads (the change feed's
position for ``connection_successful.cursor``, then the user's friends for
the ``online`` announcement), and a user's last disconnect a write and a
read (``last_seen``, then the friends for ``offline``): four thread hops and,
on PostgreSQL, four round trips per connect and close, most of what a
connect cost the node beyond the WebSocket itself.  Here each side is one:
`arrive` reads the position and the friends of a burst of connecting users
in one read; `depart` writes ``last_seen`` through group commit and reads
the user's friends in that same transaction.
"""

from __future__ import annotations

from twisted.internet import defer

from umoc.storage.contacts import friend_ids_of_txn
from umoc.storage.database import Database, Txn
from umoc.storage.feed import position_txn
from umoc.storage.users import set_last_seen_txn

__all__ = ["ArrivalStore"]


def _arrive_txn(txn: Txn, user_ids: list[int]) -> tuple[str, dict[int, list[int]]]:
    return position_txn(txn), friend_ids_of_txn(txn, user_ids)


def _depart_txn(txn: Txn, user_id: int, when: float) -> list[int]:
    set_last_seen_txn(txn, user_id, when)
    return friend_ids_of_txn(txn, [user_id])[user_id]


class ArrivalStore:
    """The connect's read and the last disconnect's write, one transaction each."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def arrive(self, user_ids: list[int]) -> defer.Deferred[tuple[str, dict[int, list[int]]]]:
        """A feed cursor at the latest change committed (as `FeedStore.position`) and each user's friends.

        One read, whatever the number of users: the position is read
        before any of their sockets joins the hub, so a client syncing from
        it misses nothing; the friends are those the ``online`` announcement
        goes to.
        """
        return self._db.read("arrivals.arrive", _arrive_txn, user_ids)

    def depart(self, user_id: int, when: float) -> defer.Deferred[list[int]]:
        """``last_seen`` set through group commit (every user leaving at that moment shares the commit), and
        the user's friends (the ``offline`` announcement's audience) read in the same transaction."""
        return self._db.write("users.last_seen", user_id, _depart_txn, user_id, when)
