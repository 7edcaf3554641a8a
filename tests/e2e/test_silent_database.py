"""The real daemon over a PostgreSQL that goes silent, then comes back (issue 22, G3).

``twistd -n umoc`` in a subprocess reaches the test PostgreSQL through a
`SilentProxy`.  During the partition (connections kept open, nothing
forwarded) requests get 503 within the deadline and ``/healthz`` stays 200
(an outage alone must not get the node restarted); once the proxy forwards
again the node serves logins by itself, which before the fix it never did:
every pool thread stayed in libpq's ``poll()``.
"""

from __future__ import annotations

import os
import time
from urllib.parse import quote, urlsplit

import treq
from twisted.internet import defer

import umoc
from tests.e2e.test_twistd import DaemonCase
from tests.support.databases import NO_POSTGRES, POSTGRES_DSN, postgres_schema
from tests.support.deferreds import inline, sleep
from tests.support.silentproxy import SilentProxy

PASSWORD = "correct horse battery"


class SilentDatabaseDaemonTests(DaemonCase):
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    async def get(self, path: str) -> tuple[int, object]:
        response = await treq.get(self.url + path, persistent=False)
        return response.code, await response.json()

    async def login(self) -> int:
        response = await treq.post(
            self.url + "/api/login", json={"username": "alice", "password": PASSWORD}, persistent=False
        )
        await response.content()
        return response.code

    @inline
    async def test_the_node_serves_again_once_a_silent_database_answers(self) -> None:
        schema = await postgres_schema(self)
        target = urlsplit(POSTGRES_DSN)
        proxy = SilentProxy(target.hostname or "127.0.0.1", target.port or 5432)
        self.addCleanup(proxy.stop)
        dsn = proxy.dsn(POSTGRES_DSN) + "?options=" + quote(f"-c search_path={schema}")
        path = os.path.abspath(self.mktemp() + "-config.yaml")
        with open(path, "w") as f:
            f.write(
                "database:\n"
                f"  dsn: {dsn}\n"
                "  pool_min: 2\n  pool_max: 2\n  timeout: 1s\n  connect_timeout: 1s\n  stuck_timeout: 5s\n"
                "ratelimits:\n  enabled: false\n"
                # Refusals here are the database's deadlines, not the overload rules (off as in test_config).
                "server:\n  overload_wait: 20s\n  overload_lag: 0s\n"
            )
        daemon = self.spawn("--config", path, "--listen", "tcp:0:interface=127.0.0.1", "--data-dir", path + ".data")
        self.url = f"http://127.0.0.1:{await daemon.listening}"
        response = await treq.post(
            self.url + "/api/register", json={"username": "alice", "password": PASSWORD}, persistent=False
        )
        self.assertEqual(response.code, 201, await response.text())
        # Busy enough that both pool threads hold a connection through the proxy.
        readiness = await defer.gatherResults([defer.ensureDeferred(self.get("/readyz")) for _ in range(6)])
        self.assertEqual({code for code, _ in readiness}, {200})

        proxy.silent = True
        started = time.monotonic()
        codes = await defer.gatherResults([defer.ensureDeferred(self.login()) for _ in range(4)])
        self.assertEqual(codes, [503] * 4)
        self.assertLess(time.monotonic() - started, 8, "answered within the deadlines, not hung")
        self.assertEqual((await self.get("/readyz"))[0], 503)
        self.assertEqual(await self.get("/healthz"), (200, {"status": "ok", "version": umoc.__version__}))
        await sleep(3)  # the partition lasts

        proxy.silent = False
        end = time.monotonic() + 15
        code = None
        while time.monotonic() < end:
            code = await self.login()
            if code == 200:
                break
            await sleep(0.2)
        self.assertEqual(code, 200, daemon.output.decode(errors="replace")[-2000:])
        self.assertEqual(await self.get("/readyz"), (200, {"database": True, "status": "ok"}))
        self.assertNotIn(b"Traceback", daemon.output)
