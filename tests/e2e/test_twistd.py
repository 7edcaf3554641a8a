"""The real daemon: ``twistd -n umoc`` in a subprocess, as a sysadmin runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import sys
import tempfile
from typing import Any

import socketio
import treq
from twisted.internet import error, reactor
from twisted.trial import unittest

import umoc
from tests.support.daemon import TWISTD, Daemon
from tests.support.deferreds import blocking, inline
from umoc.storage.database import Database

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class DaemonCase(unittest.TestCase):
    """Runs ``twistd -n umoc`` in a subprocess, stopped at cleanup."""

    def spawn(self, *args: str) -> Daemon:
        work = tempfile.mkdtemp(prefix="umoc-twistd-")
        daemon = Daemon()
        argv = [sys.executable, "-c", TWISTD, "-n", "--pidfile", os.path.join(work, "twistd.pid"), "umoc", *args]
        self.process = reactor.spawnProcess(daemon, sys.executable, argv, env=dict(os.environ), path=ROOT)
        self.addCleanup(self._stop, daemon)
        self.work = work
        return daemon

    def client(self, url: str, login: dict[str, Any]) -> socketio.Client:
        """A python-socketio client of ``login``'s session over WebSocket (blocking: call it in a thread),
        disconnected at cleanup even if the daemon was killed under it."""
        sio = socketio.Client(reconnection=False)
        sio.connect(
            url,
            auth={"sessionID": login["sessionID"], "token": login["token"]},
            transports=["websocket"],
            wait_timeout=10,
        )
        self.addCleanup(blocking, _quietly_disconnect, sio)
        return sio

    async def _stop(self, daemon: Daemon) -> None:
        if not daemon.ended.called:
            try:
                self.process.signalProcess(signal.SIGTERM)
            except error.ProcessExitedAlready:
                pass
            await daemon.ended


class TwistdTests(DaemonCase):
    @inline
    async def test_twistd_umoc_serves_auth_and_sockets_on_embedded_sqlite(self) -> None:
        data_dir = tempfile.mkdtemp(prefix="umoc-data-")
        daemon = self.spawn("--listen", "tcp:0:interface=127.0.0.1", "--data-dir", data_dir)
        port = await daemon.listening
        url = f"http://127.0.0.1:{port}"
        response = await treq.post(
            url + "/api/register", json={"username": "alice", "password": "long password"}, persistent=False
        )
        self.assertEqual(response.code, 201)
        await response.content()
        response = await treq.post(
            url + "/api/login", json={"username": "alice", "password": "long password"}, persistent=False
        )
        login = await response.json()
        client = socketio.Client(reconnection=False)
        hello: list = []
        client.on("connection_successful", hello.append)
        await blocking(
            client.connect,
            url,
            auth={"sessionID": login["sessionID"], "token": login["token"]},
            transports=["websocket"],
            wait_timeout=10,
        )
        try:
            pong = await blocking(client.call, "ping", {"timestamp": 1}, timeout=10)
        finally:
            await blocking(client.disconnect)
        self.assertEqual(pong["timestamp"], 1)
        self.assertEqual(hello[0]["username"], "alice")
        self.assertTrue(os.path.exists(os.path.join(data_dir, "umoc.sqlite3")))
        self.process.signalProcess(signal.SIGTERM)
        await daemon.ended
        # twistd re-raises the signal after a clean shutdown, so the status is "killed by SIGTERM".
        self.assertIn(b"Server Shut Down.", daemon.output)

    @inline
    async def test_bad_config_stops_start_up_naming_the_key(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "umoc.yaml")
        with open(path, "w") as f:
            f.write("sessions:\n  ttl: forever\n")
        daemon = self.spawn("--config", path)
        daemon.listening.addErrback(lambda _: None)
        code = await daemon.ended
        self.assertNotEqual(code, 0)
        self.assertIn(b"Error in configuration at 'sessions.ttl'", daemon.output)


def _quietly_disconnect(client: socketio.Client) -> None:
    try:
        client.disconnect()
    except Exception:  # noqa: BLE001 - the server was killed under it
        pass


def _free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class StartFailureTests(DaemonCase):
    """Every start-up failure: one line naming the cause, no traceback, and a status systemd calls a failure."""

    async def fails_with(self, expected: bytes, *args: str) -> bytes:
        daemon = self.spawn(*args)
        daemon.listening.addErrback(lambda _: None)
        code = await daemon.ended
        self.assertNotEqual(code, 0, daemon.output.decode(errors="replace"))
        self.assertNotIn(b"Traceback", daemon.output)
        lines = [line for line in daemon.output.splitlines() if b"could not start" in line or b"Error in" in line]
        self.assertEqual(len(lines), 1, daemon.output.decode(errors="replace"))
        self.assertIn(expected, lines[0])
        return lines[0]

    def config(self, text: str) -> str:
        path = os.path.join(tempfile.mkdtemp(), "umoc.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    @inline
    async def test_port_in_use(self) -> None:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        line = await self.fails_with(
            b"Address already in use", "--listen", f"tcp:{port}:interface=127.0.0.1", "--data-dir", tempfile.mkdtemp()
        )
        self.assertIn(b"cannot listen on server.listen", line)

    @inline
    async def test_bad_listen_string(self) -> None:
        await self.fails_with(
            b"server.listen 'nonsense:1' is not a usable endpoint: Unknown endpoint type",
            "--listen",
            "nonsense:1",
            "--data-dir",
            tempfile.mkdtemp(),
        )

    @inline
    async def test_metrics_port_in_use_names_metrics_listen(self) -> None:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        path = self.config(f"metrics:\n  listen: tcp:{taken.getsockname()[1]}:interface=127.0.0.1\n")
        await self.fails_with(
            b"cannot listen on metrics.listen",
            "--config",
            path,
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--data-dir",
            tempfile.mkdtemp(),
        )

    @inline
    async def test_postgresql_down(self) -> None:
        path = self.config(f"database:\n  dsn: postgresql://postgres@127.0.0.1:{_free_port()}/umoc\n")
        await self.fails_with(
            b"cannot use the database: connection to server at",
            "--config",
            path,
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--data-dir",
            tempfile.mkdtemp(),  # its own: not ./umoc-data in the checkout, which other tests' nodes share
        )

    @inline
    async def test_postgresql_database_missing(self) -> None:
        dsn = os.environ.get("UMOC_TEST_POSTGRES")
        if not dsn:
            raise unittest.SkipTest("UMOC_TEST_POSTGRES is not set")
        missing = dsn.rsplit("/", 1)[0] + "/umoc_no_such_database"
        path = self.config(f"database:\n  dsn: {missing}\n")
        await self.fails_with(
            b'database "umoc_no_such_database" does not exist',
            "--config",
            path,
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--data-dir",
            tempfile.mkdtemp(),
        )

    @inline
    async def test_schema_newer_than_the_code(self) -> None:
        data_dir = tempfile.mkdtemp()
        db = sqlite3.connect(os.path.join(data_dir, "umoc.sqlite3"))
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
        db.execute("INSERT INTO schema_version VALUES (999, 0)")
        db.commit()
        db.close()
        await self.fails_with(
            b"the database's schema (version 999) needs code of schema version 999 or newer; this is UMOC",
            "--data-dir",
            data_dir,
            "--listen",
            "tcp:0:interface=127.0.0.1",
        )

    @inline
    async def test_a_schema_whose_compat_version_is_above_the_codes_is_refused_with_status_1(self) -> None:
        # What an older node meets after a newer release ran a contract migration: it must not start.
        data_dir = tempfile.mkdtemp()
        db = Database.sqlite(os.path.join(data_dir, "umoc.sqlite3"))
        version = await db.migrate()
        await db.run("test", lambda txn: txn.execute("UPDATE schema_compat_version SET compat_version = 999"))
        db.close()
        daemon = self.spawn("--data-dir", data_dir, "--listen", "tcp:0:interface=127.0.0.1")
        daemon.listening.addErrback(lambda _: None)
        self.assertEqual(await daemon.ended, 1)
        lines = [line for line in daemon.output.splitlines() if b"could not start" in line]
        self.assertEqual(len(lines), 1, daemon.output.decode(errors="replace"))
        self.assertIn(
            f"the database's schema (version {version}) needs code of schema version 999 or newer;"
            f" this is UMOC {umoc.__version__} (schema version {version})".encode(),
            lines[0],
        )
        self.assertNotIn(b"Traceback", daemon.output)

    @inline
    async def test_data_dir_that_cannot_be_made(self) -> None:
        await self.fails_with(
            b"cannot create /proc/umoc-nowhere",
            "--data-dir",
            "/proc/umoc-nowhere",
            "--listen",
            "tcp:0:interface=127.0.0.1",
        )

    @inline
    async def test_invalid_redis_url(self) -> None:
        path = self.config("redis:\n  url: redis://127.0.0.1:notaport/0\n")
        await self.fails_with(b"Error in configuration at 'redis.url'", "--config", path)


class JsonLogTests(DaemonCase):
    """``logging.format: json``: every line parses; auth events carry their fields and no secret."""

    @inline
    async def test_auth_events_as_json_lines_without_secrets(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "umoc.yaml")
        with open(path, "w") as f:
            f.write(
                "logging:\n  format: json\n  level: info\n"
                "server:\n  trusted_proxies: ['127.0.0.1']\n"
                # As in tests.support.server.test_config: a loaded machine is no reason to refuse the writes.
                "  overload_wait: 20s\n  overload_lag: 0s\n"
                "sessions:\n  max_per_user: 1\n"
            )
        daemon = self.spawn("--config", path, "--listen", "tcp:0:interface=127.0.0.1", "--data-dir", tempfile.mkdtemp())
        port = await daemon.listening
        url = f"http://127.0.0.1:{port}"
        password = "correct horse battery"
        via_proxy = {"X-Forwarded-For": "203.0.113.7"}

        async def post(path: str, body: dict) -> treq.response._Response:
            response = await treq.post(url + path, json=body, headers=via_proxy, persistent=False)
            await response.content()
            return response

        await post("/api/register", {"username": "alice", "password": password})
        self.assertEqual((await post("/api/login", {"username": "alice", "password": "wrong password"})).code, 401)
        first = await (
            await treq.post(
                url + "/api/login",
                json={"username": "alice", "password": password},
                headers=via_proxy,
                persistent=False,
            )
        ).json()
        second = await (
            await treq.post(
                url + "/api/login",
                json={"username": "alice", "password": password},
                headers=via_proxy,
                persistent=False,
            )
        ).json()
        client = socketio.Client(reconnection=False)
        await blocking(
            client.connect,
            url,
            auth={"sessionID": second["sessionID"], "token": second["token"]},
            transports=["websocket"],
            wait_timeout=10,
        )
        await blocking(client.disconnect)
        self.assertEqual(
            (await post("/api/logout", {"sessionID": second["sessionID"], "token": second["token"]})).code, 200
        )
        self.process.signalProcess(signal.SIGTERM)
        await daemon.ended

        records = [json.loads(line) for line in daemon.output.splitlines() if line.strip()]
        for record in records:
            self.assertEqual(list(record)[:4], ["time", "level", "namespace", "message"])
        by_event: dict[str, list[dict]] = {}
        for record in records:
            by_event.setdefault(record.get("event", ""), []).append(record)
        failed = by_event["login_failed"][0]
        self.assertEqual((failed["level"], failed["username"], failed["client"]), ("warn", "alice", "203.0.113.7"))
        self.assertEqual([r["client"] for r in by_event["login"]], ["203.0.113.7"] * 2)
        self.assertEqual(by_event["session_revoked"][0]["reason"], "newer_login")
        self.assertEqual(by_event["logout"][0]["username"], "alice")
        self.assertEqual(by_event["connect"][0]["username"], "alice")
        for secret in (password, "wrong password", first["token"], second["token"], first["sessionID"]):
            self.assertNotIn(secret.encode(), daemon.output)

    @inline
    async def test_level_warn_drops_info_lines(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "umoc.yaml")
        with open(path, "w") as f:
            f.write("logging:\n  format: json\n  level: warn\n")
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        daemon = self.spawn(
            "--config",
            path,
            "--listen",
            f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1",
            "--data-dir",
            tempfile.mkdtemp(),
        )
        daemon.listening.addErrback(lambda _: None)
        self.assertNotEqual(await daemon.ended, 0)
        records = [json.loads(line) for line in daemon.output.splitlines() if line.strip()]
        self.assertEqual([r["level"] for r in records], ["critical"])
        self.assertIn("Address already in use", records[0]["message"])
