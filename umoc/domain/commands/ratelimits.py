"""Rate-limit commands: empty buckets kept in Redis (``umoc-admin ratelimit reset``; administrators only).

A bucket is the Redis key `umoc.ratelimit.bucket_key` spells,
``<prefix>rl:<class>:<subject>``, where the subject is what the edge keyed
it by: ``ip:<address>`` (``login``, ``register``, ``connect``),
``user:<id>`` (the socket event classes, ``export``), the lower-cased
username (``login_account``) or ``<username>|<address>`` (``login_name``).
Deleting the key is a reset: the next action finds no bucket and starts a
full one, exactly as for a client never seen.

Buckets in a node's memory (no ``redis.url``, or a node that fell back to
memory while Redis was away) are out of reach of another process: they
refill by themselves, and a restart of the node empties them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from umoc.domain.commands.account import require_admin
from umoc.ratelimit import bucket_key
from umoc.records import Actor

__all__ = ["BucketSelection", "reset"]

log = Logger()

#: Keys asked for per SCAN round trip: a pass over a large keyspace in few calls, none of them long.
SCAN_COUNT = 1000


class CommandClient(Protocol):
    """What a reset needs of a Redis client (``umoc.cluster.redisclient.RedisClient``)."""

    def call(self, command: str, *args: Any) -> defer.Deferred[Any]: ...


@dataclass(frozen=True)
class BucketSelection:
    """Which buckets to empty: those keyed by this address, this account, or both, in these classes."""

    classes: tuple[str, ...]
    address: str | None = None
    #: The account's id (its per-user buckets) and lower-cased name (its login buckets).
    user_id: int | None = None
    account: str | None = None

    def subjects(self) -> set[str]:
        """Subjects a bucket may be keyed by exactly."""
        found: set[str] = set()
        if self.address is not None:
            found.add(f"ip:{self.address}")
        if self.user_id is not None:
            found.add(f"user:{self.user_id}")
        if self.account is not None:
            found.add(self.account)
        if self.address is not None and self.account is not None:
            found.add(f"{self.account}|{self.address}")
        return found

    def selects(self, subject: str) -> bool:
        """Whether a bucket keyed by ``subject`` is one to empty (a pair matches either half when one is given)."""
        if subject in self.subjects():
            return True
        if "|" not in subject or (self.address is not None and self.account is not None):
            return False
        account, _, address = subject.partition("|")
        return account == self.account or address == self.address


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN ``MATCH`` pattern."""
    return "".join(f"\\{c}" if c in "\\*?[]" else c for c in text)


async def reset(redis: CommandClient, prefix: str, actor: Actor, selection: BucketSelection) -> list[str]:
    """Delete the selected buckets under ``redis.prefix``; the keys deleted (without the prefix), sorted.

    One SCAN pass over the prefix's bucket keys, filtered here: SCAN never
    blocks Redis the way KEYS would, and the nodes keep working meanwhile.
    """
    require_admin(actor)
    head = bucket_key(prefix, "", "")[:-1]  # "<prefix>rl:"
    pattern = _glob_escape(head) + "*"
    chosen: list[str] = []
    cursor: Any = 0
    while True:
        cursor, keys = await redis.call("scan", cursor, pattern, SCAN_COUNT)
        for raw in keys:
            key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            kind, _, subject = key[len(head) :].partition(":")
            if kind in selection.classes and selection.selects(subject):
                chosen.append(key)
        if int(cursor) == 0:
            break
    for start in range(0, len(chosen), SCAN_COUNT):
        await redis.call("delete", chosen[start : start + SCAN_COUNT])
    done = sorted(key[len(prefix) :] for key in set(chosen))
    log.info(
        "Rate-limit buckets reset by {actor}: {count} ({buckets})",
        actor=actor.name,
        count=len(done),
        buckets=", ".join(done) or "none held",
        event="ratelimit_reset",
    )
    return done
