"""Acknowledged means stored: ``kill -9`` of a real ``twistd umoc`` in the middle of a send storm loses nothing acked.

Messages are written in shared batches (group commit) and each sender is
answered only after its batch commits; this test sends a burst of
``send_message`` with acks, kills the process without warning while many
are still in flight, starts it again on the same data directory, and checks
that every acknowledged message id is stored (unacknowledged ones may or may
not be).  A process kill keeps what reached the OS; SQLite's default
``synchronous=FULL`` is what carries that to a power loss.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import tempfile
import threading
import time

import treq

from tests.e2e.test_twistd import DaemonCase
from tests.support.deferreds import blocking, inline, sleep

#: Within the router's per-socket queue (64): a socket's events run one after another.
BURST = 60


class KillNineTests(DaemonCase):
    async def start(self, data_dir: str) -> str:
        config = os.path.join(data_dir, "umoc.yaml")
        with open(config, "w") as f:
            # The storm is the point, not the limiter, nor the overload rule or the event deadline: a socket's
            # events run one after another, and on a loaded machine the storm's tail waited past overload_wait's
            # 0.5 s (refused) or database.timeout's 5 s (timed out), leaving fewer acked than the test needs.  Nor
            # the reactor's lag (overload_lag) on a machine where the test's own clients share the cores.
            f.write(
                "ratelimits: {enabled: false}\n"
                "server: {overload_wait: 60s, overload_lag: 0s}\n"
                "database: {timeout: 60s}\n"
            )
        daemon = self.spawn("--config", config, "--listen", "tcp:0:interface=127.0.0.1", "--data-dir", data_dir)
        self.daemon = daemon
        return f"http://127.0.0.1:{await daemon.listening}"

    async def login(self, url: str, name: str) -> dict:
        body = {"username": name, "password": "long password"}
        response = await treq.post(url + "/api/register", json=body, persistent=False)
        await response.content()
        response = await treq.post(url + "/api/login", json=body, persistent=False)
        return await response.json()

    @inline
    async def test_every_acknowledged_message_survives_kill_9(self) -> None:
        data_dir = tempfile.mkdtemp(prefix="umoc-kill9-")
        url = await self.start(data_dir)
        alice, bob = await self.login(url, "alice"), await self.login(url, "bob")
        a = await blocking(self.client, url, alice)
        b = await blocking(self.client, url, bob)
        await blocking(a.call, "add_contact", {"contact_username": "bob"}, timeout=10)
        await blocking(b.call, "accept_contact", {"contact_id": alice["user_id"]}, timeout=10)

        acked: list[str] = []
        lock = threading.Lock()

        def on_ack(answer: dict) -> None:
            if isinstance(answer, dict) and "message_id" in answer:
                with lock:
                    acked.append(answer["message_id"])

        def storm() -> None:
            for i in range(BURST):
                a.emit(
                    "send_message",
                    {"recipient_id": bob["user_id"], "content": f"m{i}", "type": "text"},
                    callback=on_ack,
                )

        await blocking(storm)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= BURST // 3:
                    break
            await sleep(0.01)
        self.process.signalProcess(signal.SIGKILL)
        await self.daemon.ended
        with lock:
            survivors_needed = set(acked)
        self.assertGreaterEqual(len(survivors_needed), BURST // 3)
        self.assertLess(len(survivors_needed), BURST, "killed while messages were still in flight")

        await self.start(data_dir)  # starts again on the same files: nothing is corrupt
        db = sqlite3.connect(os.path.join(data_dir, "umoc.sqlite3"))
        try:
            stored = {row[0] for row in db.execute("SELECT id FROM messages")}
        finally:
            db.close()
        self.assertEqual(survivors_needed - stored, set(), "acknowledged messages lost")
