"""The purge job: messages older than their chat's retention go, with their files (issue 31).

Run by a periodic task of every node (``retention.purge_interval``), off
the send path: each batch is one chat's transaction of at most
``retention.batch`` messages (`umoc.storage.retention`), and the files of
a batch leave the disk once it has committed, in the reactor's thread pool.
Several nodes purging at once is harmless: each transaction checks again
what is still due.  A stopping node ends its run after the batch in hand
(`Purger.close`), so a long first run never holds up a shutdown.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from umoc.config import RetentionConfig
from umoc.domain.files import FileManager
from umoc.storage import Storage
from umoc.storage.retention import Purged

__all__ = ["Purger"]

log = Logger()


class Purger:
    """One run purges everything due, a bounded batch per transaction."""

    def __init__(self, storage: Storage, files: FileManager, clock: IReactorTime, config: RetentionConfig) -> None:
        self._store = storage.retention
        self._files = files
        self._clock = clock
        self._config = config
        self._closed = False

    def close(self) -> None:
        """Stop after the batch in hand (the node is stopping); the next node to run carries on."""
        self._closed = True

    async def run(self) -> int:
        """Purge what is due now; how many messages went."""
        now = self._clock.seconds()
        default, batch = float(self._config.messages), self._config.batch
        purged = 0
        for chat_id in await self._store.own_policies():
            while not self._closed:
                done = await self._store.purge_oldest(chat_id, default, now, batch)
                purged += await self._removed(done)
                if done.messages < batch or self._closed:
                    break
        if default > 0:
            while not self._closed:
                start, reached, found, more = await self._store.walk(now - default, batch)
                for chat_id, seqs in found.items():
                    purged += await self._removed(await self._store.purge(chat_id, seqs, default, now))
                if reached > start:
                    await self._store.advance(start, reached)
                if not more:
                    break
        if purged:
            log.info("Retention: {count} messages purged", count=purged)
        return purged

    async def _removed(self, done: Purged) -> int:
        if done.files:
            await self._files.remove(done.files)
        return done.messages
