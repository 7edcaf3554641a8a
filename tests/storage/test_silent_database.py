"""A PostgreSQL server gone silent never wedges the node (issue 22, G3).

The partition is real: `SilentProxy` sits between the pool and the test
PostgreSQL on loopback, and once setup is done it keeps every connection
open and forwards nothing (bytes dropped, as a partition drops them).
Without a guard libpq's ``poll()`` waits forever: the caller is answered
at the deadline but the pool thread never returns, and once every thread
is taken the node answers 503 for good.  With it, the deadline shuts the
connection's socket down, the thread returns, the connection is replaced,
and the pool works again as soon as the proxy forwards again.  Health
reports a pool whose every thread stays stuck.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, reactor
from twisted.trial import unittest

import umoc
from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, postgres_schema
from tests.support.deferreds import inline, sleep
from tests.support.server import test_config
from tests.support.silentproxy import SilentProxy
from tests.support.web import request
from umoc.storage import Storage
from umoc.storage.database import Database, DatabaseUnavailableError, Deadline, Keepalives
from umoc.wiring import build_node

DEADLINE = 1.0
STUCK = 1.0


def select_one(txn: Any) -> int:
    return txn.scalar("SELECT 1")


def proxy_to_postgres() -> SilentProxy:
    target = urlsplit(POSTGRES_DSN)
    return SilentProxy(target.hostname or "127.0.0.1", target.port or 5432)


async def until(check: Any, seconds: float, step: float = 0.05) -> bool:
    """Whether ``check()`` became true within ``seconds`` of real time."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        await sleep(step)
    return bool(check())


class SilentDatabaseTests(unittest.TestCase):
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    @inline
    async def setUp(self) -> None:
        self.schema = await postgres_schema(self)
        self.proxy = proxy_to_postgres()
        self.db = Database.postgres(
            self.proxy.dsn(POSTGRES_DSN),
            1,
            2,
            schema=self.schema,
            deadline=Deadline(reactor, DEADLINE, DEADLINE, STUCK),
        )
        self.addCleanup(self.db.close)
        # Before closing the pool (cleanups run last first): a thread still stuck gets EOF and returns.
        self.addCleanup(self.proxy.stop)
        # Both pool threads open their connection now, while the proxy still forwards.
        warm = [self.db.run("warm", lambda txn: txn.scalar("SELECT 1 FROM pg_sleep(0.2)")) for _ in range(2)]
        self.assertEqual(await defer.gatherResults(warm), [1, 1])
        self.assertEqual(len(self.db._pool.connections), 2)

    def busy_threads(self) -> int:
        return len(self.db._pool.threadpool.working)

    @inline
    async def test_a_query_on_a_silent_connection_returns_its_thread(self) -> None:
        self.proxy.silent = True
        started = time.monotonic()
        await self.assertFailure(self.db.run("silent", select_one), DatabaseUnavailableError)
        self.assertLess(time.monotonic() - started, DEADLINE + 0.5, "the caller is answered at the deadline")
        # The alternative is for ever: a bound of seconds, not one, so a loaded machine's slow thread is not it.
        returned = await until(lambda: self.busy_threads() == 0, 10.0)
        self.assertTrue(returned, "the pool thread returned instead of waiting in poll() for ever")

    @inline
    async def test_the_pool_recovers_once_the_proxy_forwards_again(self) -> None:
        self.proxy.silent = True
        attempts = [self.db.run("silent", select_one) for _ in range(4)]  # more than the pool's 2 threads
        for attempt in attempts:
            await self.assertFailure(attempt, DatabaseUnavailableError)
        await until(lambda: self.busy_threads() == 0, 10.0)
        self.assertFalse(self.db.watch().wedged)
        self.proxy.silent = False
        answered = None
        end = time.monotonic() + 10
        while answered is None and time.monotonic() < end:
            try:
                answered = await self.db.run("after", select_one)
            except DatabaseUnavailableError:
                await sleep(0.1)
        self.assertEqual(answered, 1, "new connections replaced the silent ones")
        both = await defer.gatherResults([self.db.run("after", select_one) for _ in range(2)])
        self.assertEqual(both, [1, 1], "every pool thread works again")

    @inline
    async def test_health_reports_threads_stuck_past_the_deadline(self) -> None:
        """A thread busy outside the network (no socket to shut down) stays stuck: the watchdog says so."""
        release = threading.Event()
        self.addCleanup(release.set)

        def blocked(txn: Any) -> int:
            release.wait(30)
            return txn.scalar("SELECT 1")

        attempts = [self.db.run("blocked", blocked) for _ in range(2)]
        for attempt in attempts:
            await self.assertFailure(attempt, DatabaseUnavailableError)
        self.assertEqual(self.db.watch().stuck, 0, "past the deadline but not yet the stuck bound")
        self.assertTrue(await until(lambda: self.db.watch().wedged, DEADLINE + STUCK + 1))
        self.assertEqual((self.db.watch().threads, self.db.watch().stuck), (2, 2))
        release.set()
        self.assertTrue(await until(lambda: self.db.watch().busy == 0, 2.0))
        self.assertFalse(self.db.watch().wedged)
        self.assertEqual(await self.db.run("after", select_one), 1)


class KeepaliveTests(unittest.TestCase):
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    @inline
    async def test_every_connection_has_tcp_keepalives_and_a_user_timeout(self) -> None:
        db = Database.postgres(
            POSTGRES_DSN, 1, 1, deadline=Deadline(reactor, 5, 5), keepalives=Keepalives(7, 3, 4, 6.5)
        )
        self.addCleanup(db.close)
        self.assertEqual(await db.run("warm", select_one), 1)
        [raw] = db._pool.connections.values()
        sock = socket.socket(fileno=os.dup(raw.fileno()))
        self.addCleanup(sock.close)
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise unittest.SkipTest("UMOC_TEST_POSTGRES is a Unix-domain socket: no TCP options")
        options = [
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0,
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        ]
        self.assertEqual(options, [True, 7, 3, 4, 6500])


class WedgedHealthTests(unittest.TestCase):
    """``/healthz`` and ``/readyz`` of a node over the proxied database, rendered through its Site."""

    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    @inline
    async def setUp(self) -> None:
        schema = await postgres_schema(self)
        self.proxy = proxy_to_postgres()
        self.db = Database.postgres(
            self.proxy.dsn(POSTGRES_DSN), 1, 2, schema=schema, deadline=Deadline(reactor, DEADLINE, DEADLINE, STUCK)
        )
        self.addCleanup(self.db.close)
        self.addCleanup(self.proxy.stop)
        self.node = build_node(test_config(self.mktemp()), reactor, Storage(self.db))

    async def health(self) -> tuple[tuple[int, Any], tuple[int, Any]]:
        live = await request(self.node.site, "GET", "/healthz")
        ready = await request(self.node.site, "GET", "/readyz")
        return (live.code, live.json()), (ready.code, ready.json())

    @inline
    async def test_a_silent_database_is_unready_but_alive_and_a_wedged_pool_is_neither(self) -> None:
        self.assertEqual(
            await self.health(),
            ((200, {"status": "ok", "version": umoc.__version__}), (200, {"database": True, "status": "ok"})),
        )
        self.proxy.silent = True
        live, ready = await self.health()
        self.assertEqual(
            live, (200, {"status": "ok", "version": umoc.__version__}), "an outage alone never gets the node restarted"
        )
        self.assertEqual(ready, (503, {"database": False, "status": "unready"}))
        self.proxy.silent = False
        self.assertTrue(await until(lambda: self.busy() == 0, 2.0))

        release = threading.Event()
        self.addCleanup(release.set)
        attempts = [self.db.run("blocked", lambda txn: release.wait(30)) for _ in range(2)]
        for attempt in attempts:
            await self.assertFailure(attempt, DatabaseUnavailableError)
        self.assertTrue(await until(lambda: self.db.watch().wedged, DEADLINE + STUCK + 1))
        live, ready = await self.health()
        reason = "every database connection is stuck; the node needs a restart"
        self.assertEqual(
            live, (503, {"status": "wedged", "reason": reason, "database_stuck": 2, "version": umoc.__version__})
        )
        self.assertEqual(ready, (503, {"database": False, "database_stuck": 2, "reason": reason, "status": "unready"}))
        release.set()
        self.assertTrue(await until(lambda: self.busy() == 0, 2.0))
        ready_again = None
        for _ in range(50):
            live, ready_again = await self.health()
            if ready_again[0] == 200:
                break
            await sleep(0.1)
        self.assertEqual(
            (live, ready_again),
            ((200, {"status": "ok", "version": umoc.__version__}), (200, {"database": True, "status": "ok"})),
        )

    def busy(self) -> int:
        return self.db.watch().busy
