"""The previous release's server runs the core flows on a database this release migrated.

That is what a rolling upgrade needs (an old node keeps serving while the
first node on the new release has migrated the shared database) and what a
rollback needs (the old release started again on it).  The previous
releases are the commits in ``tests/compat/PREVIOUS_RELEASE`` (one line each:
commit and release name), taken from this repository's history with ``git
archive``; for each, the test migrates a fresh
PostgreSQL database with this tree's code, starts the old tree's
``twistd -n umoc`` on it in a subprocess (``PYTHONPATH`` and the working
directory on the old tree, so ``umoc`` and ``twisted.plugins.umoc_plugin``
both come from there), and drives it with python-socketio: register and
log in two users, make them contacts, send a message with an ack, receive
it, read the history; then this tree's storage records a change of a kind
the old release does not know (a thread followed), and the old node's ``sync
{cursor}`` still answers (operator guide, "Upgrades and migrations": rows
count as much as columns).
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import socketio
import treq
from twisted.internet import error, reactor
from twisted.trial import unittest

from tests.support.daemon import TWISTD, Daemon
from tests.support.databases import NO_POSTGRES, POSTGRES_DSN
from tests.support.deferreds import blocking, eventually, inline
from umoc.storage.database import Database
from umoc.storage.threads import ThreadStore

ROOT = Path(__file__).resolve().parents[2]
#: (commit, release) of every earlier release this one must stay compatible with (CHANGELOG, "Compatibility").
PREVIOUS_RELEASES = [
    (line.split()[0], line.split()[1])
    for line in Path(__file__).with_name("PREVIOUS_RELEASE").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
]
PASSWORD = "a long enough password"


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=60)


def _previous_tree(commit: str) -> str:
    """An earlier release's ``umoc`` and ``twisted/plugins`` in a temporary folder; SkipTest without the history."""
    try:
        found = _git("cat-file", "-e", f"{commit}^{{commit}}")
    except (OSError, subprocess.SubprocessError) as exc:
        raise unittest.SkipTest(f"git is not usable here ({exc}): cannot take the previous release") from None
    if found.returncode != 0:
        raise unittest.SkipTest(
            f"commit {commit} (tests/compat/PREVIOUS_RELEASE) is not in this clone's history"
            " (a shallow clone?): fetch it to run this test"
        )
    archive = _git("archive", "--format=tar", commit, "umoc", "twisted")
    if archive.returncode != 0:
        raise RuntimeError(archive.stderr.decode(errors="replace"))
    folder = tempfile.mkdtemp(prefix="umoc-previous-")
    atexit.register(shutil.rmtree, folder, True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def _admin(statement: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE) on the test server."""
    import psycopg2

    conn = psycopg2.connect(POSTGRES_DSN)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


class PreviousReleaseMixin:
    """One earlier release (``commit``, ``release``) on this tree's schema; a class per release below."""

    commit: str
    release: str

    timeout = 120

    async def database(self) -> str:
        """A new PostgreSQL database migrated by this tree's code; its DSN."""
        name = "umoc_compat_" + uuid.uuid4().hex[:12]
        _admin(f"CREATE DATABASE {name}")
        self.addCleanup(_admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        dsn = POSTGRES_DSN.rsplit("/", 1)[0] + "/" + name
        db = Database.postgres(dsn, 1, 1)
        try:
            await db.migrate()
        finally:
            db.close()
        return dsn

    def spawn_previous(self, tree: str, dsn: str) -> Daemon:
        work = tempfile.mkdtemp(prefix="umoc-previous-run-")
        self.addCleanup(shutil.rmtree, work, True)
        config = os.path.join(work, "umoc.yaml")
        with open(config, "w") as f:
            f.write(f"database:\n  dsn: {dsn}\n")
        env = {**os.environ, "PYTHONPATH": tree}
        argv = [sys.executable, "-c", TWISTD, "-n", "--pidfile", os.path.join(work, "twistd.pid"), "umoc"]
        argv += ["--config", config, "--listen", "tcp:0:interface=127.0.0.1", "--data-dir", os.path.join(work, "d")]
        daemon = Daemon()
        process = reactor.spawnProcess(daemon, sys.executable, argv, env=env, path=tree)

        async def stop() -> None:
            if not daemon.ended.called:
                try:
                    process.signalProcess(signal.SIGTERM)
                except error.ProcessExitedAlready:
                    pass
                await daemon.ended

        self.addCleanup(stop)
        return daemon

    async def login(self, url: str, username: str) -> dict[str, Any]:
        for path in ("/api/register", "/api/login"):
            response = await treq.post(url + path, json={"username": username, "password": PASSWORD}, persistent=False)
            body = await response.json()
            self.assertIn(response.code, (200, 201), body)
        return body

    def connect(self, url: str, login: dict[str, Any], connected: list[Any] | None = None) -> socketio.Client:
        client = socketio.Client(reconnection=False)
        if connected is not None:
            client.on("connection_successful", connected.append)
        client.connect(
            url,
            auth={"sessionID": login["sessionID"], "token": login["token"]},
            transports=["websocket"],
            wait_timeout=10,
        )
        return client

    @inline
    async def test_the_previous_release_serves_the_core_flows_on_this_releases_schema(self) -> None:
        tree = _previous_tree(self.commit)
        dsn = await self.database()
        daemon = self.spawn_previous(tree, dsn)
        port = await daemon.listening
        url = f"http://127.0.0.1:{port}"

        # The old code answers, not this tree's: its /healthz names its own release (0.1.0 named none).
        response = await treq.get(url + "/healthz", persistent=False)
        self.assertEqual((await response.json()).get("version"), None if self.release == "0.1.0" else self.release)

        alice, bob = await self.login(url, "alice"), await self.login(url, "bob")
        alice_connected: list[dict[str, Any]] = []
        alice_socket = await blocking(self.connect, url, alice, alice_connected)
        self.addCleanup(blocking, alice_socket.disconnect)
        bob_socket = await blocking(self.connect, url, bob)
        self.addCleanup(blocking, bob_socket.disconnect)
        received: list[dict[str, Any]] = []
        bob_socket.on("new_message", received.append)

        await blocking(alice_socket.call, "add_contact", {"contact_username": "bob"}, timeout=10)
        accepted = await blocking(bob_socket.call, "accept_contact", {"contact_id": alice["user_id"]}, timeout=10)
        self.assertEqual(accepted["status"], "FRIEND")
        sent = await blocking(
            alice_socket.call,
            "send_message",
            {"recipient_id": bob["user_id"], "content": "hello across releases", "client_msg_id": "compat-1"},
            timeout=10,
        )
        self.assertEqual(sent["content"], "hello across releases")
        await eventually(lambda: len(received), 1)
        self.assertEqual(received[0]["message_id"], sent["message_id"])
        history = await blocking(bob_socket.call, "get_chat_history", {"chat_id": alice["user_id"]}, timeout=10)
        self.assertEqual([m["message_id"] for m in history["messages"]], [sent["message_id"]])

        # A change this release writes that the old one cannot show (a thread followed) stays out of what it
        # reads: alice's sync from her connection's cursor answers, with what it knows.
        db = Database.postgres(dsn, 1, 1)
        try:
            _, changed = await ThreadStore(db).follow(alice["user_id"], sent["message_id"], True, time.time())
        finally:
            db.close()
        self.assertTrue(changed)
        await eventually(lambda: len(alice_connected), 1)
        synced = await blocking(alice_socket.call, "sync", {"cursor": alice_connected[0]["cursor"]}, timeout=10)
        self.assertNotIn("error", synced)
        self.assertIn("message", [c["kind"] for c in synced["changes"]])
        self.assertNotIn(b"Traceback", daemon.output)


for _commit, _release in PREVIOUS_RELEASES:
    _name = "Release" + _release.replace(".", "_") + "Tests"
    globals()[_name] = type(
        _name,
        (PreviousReleaseMixin, unittest.TestCase),
        {"commit": _commit, "release": _release, "skip": None if POSTGRES_DSN else NO_POSTGRES},
    )
