"""The real daemon: ``twistd -n umoc`` in a subprocess, as a sysadmin runs it."""

from __future__ import annotations

import os
import signal
import sys
import tempfile

import socketio
import treq
from twisted.internet import error, reactor
from twisted.trial import unittest

from tests.support.daemon import TWISTD, Daemon
from tests.support.deferreds import blocking, inline

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TwistdTests(unittest.TestCase):
    def spawn(self, *args: str) -> Daemon:
        work = tempfile.mkdtemp(prefix="umoc-twistd-")
        daemon = Daemon()
        argv = [sys.executable, "-c", TWISTD, "-n", "--pidfile", os.path.join(work, "twistd.pid"), "umoc", *args]
        self.process = reactor.spawnProcess(daemon, sys.executable, argv, env=dict(os.environ), path=ROOT)
        self.addCleanup(self._stop, daemon)
        self.work = work
        return daemon

    async def _stop(self, daemon: Daemon) -> None:
        if not daemon.ended.called:
            try:
                self.process.signalProcess(signal.SIGTERM)
            except error.ProcessExitedAlready:
                pass
            await daemon.ended

    @inline
    async def test_twistd_umoc_serves_auth_and_sockets_on_embedded_sqlite(self) -> None:
        data_dir = tempfile.mkdtemp(prefix="umoc-data-")
        daemon = self.spawn("--listen", "tcp:0:interface=127.0.0.1", "--data-dir", data_dir)
        port = await daemon.listening
        url = f"http://127.0.0.1:{port}"
        response = await treq.post(url + "/api/register", json={"username": "alice", "password": "long password"},
                                   persistent=False)
        self.assertEqual(response.code, 201)
        await response.content()
        response = await treq.post(url + "/api/login", json={"username": "alice", "password": "long password"},
                                   persistent=False)
        login = await response.json()
        client = socketio.Client(reconnection=False)
        hello: list = []
        client.on("connection_successful", hello.append)
        await blocking(client.connect, url, auth={"sessionID": login["sessionID"], "token": login["token"]},
                       transports=["websocket"], wait_timeout=10)
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
