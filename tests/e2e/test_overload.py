"""A real server whose database falls behind refuses a burst of writes fast, and loses nothing (issue 25).

The real server on 127.0.0.1 with python-socketio clients; the database's
writer is held by another transaction (SQLite: its one writing connection;
PostgreSQL: a ``SHARE`` lock on ``messages``), so the first ``send_message``
waits in the group commit.  Once it has waited past ``server.overload_wait``
a burst of sends from two sockets (one with that send still running, one
idle) is answered ``overloaded`` while the writer is still held, that is,
without waiting for the database; uploads and the bot API answer 503 with
``Retry-After``.  Released, the held send is acknowledged, the stored
messages are exactly the acknowledged ones, and writes are admitted again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import treq

from tests.support.chat import ChatCase, Person
from tests.support.databases import for_each_backend, hold_writer
from tests.support.deferreds import eventually, inline
from tests.support.server import test_config
from umoc.config import Config
from umoc.domain.overload import OVERLOADED

BOUND = 0.2
BURST = 10


class Acks:
    """Acknowledgements of events emitted without waiting, with how long each took."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: dict[str, tuple[Any, float]] = {}

    def emit(self, person: Person, content: str) -> None:
        sent = time.monotonic()

        def answered(answer: Any) -> None:
            with self.lock:
                self.answers[content] = (answer, time.monotonic() - sent)

        payload = person.client.with_session(recipient_id=0, content=content, type="text")
        person.client.sio.emit("send_message", payload, callback=answered)

    def count(self) -> int:
        with self.lock:
            return len(self.answers)


class OverloadedServerMixin:
    def config_for_test(self, data_dir: str) -> Config:
        server = {"overload_wait": f"{BOUND}s", "overload_lag": f"{BOUND}s"}
        return test_config(data_dir, ratelimits={"enabled": False}, server=server)

    async def hold_writer(self) -> threading.Event:
        # Released within database.timeout.
        release, self.holding = await hold_writer(self, self.server.services.storage.db, self.backend == "postgres", 4)
        return release

    @inline
    async def test_a_burst_is_refused_fast_while_the_database_is_behind_and_only_the_acked_are_stored(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        ready = await alice.call(
            "upload_file_prepare",
            file_name="a.txt",
            file_size=3,
            file_type="text/plain",
            recipient_id=bob.id,
            is_group=False,
        )
        self.assertIn("upload_url", ready)
        writer = self.server.services.storage.db.writer
        acks = Acks()

        release = await self.hold_writer()
        first = alice.call("send_message", recipient_id=bob.id, content="first", type="text")
        self.assertTrue(await eventually(lambda: writer.oldest_wait() > BOUND, tries=200))
        for i in range(BURST):
            # alice's socket still runs "first": hers are answered on arrival; bob's socket is idle.
            acks.emit(alice, f"alice-{i}")
            acks.emit(bob, f"bob-{i}")
        self.assertEqual(await eventually(acks.count, 2 * BURST, tries=100, interval=0.01), 2 * BURST)
        put = await treq.put(
            self.server.url + ready["upload_url"],
            data=b"abc",
            headers={"Authorization": f"Bearer {ready['upload_token']}"},
            persistent=False,
        )
        put_body = await put.json()
        bot = await treq.post(self.server.url + "/api/bot/messages", json={}, persistent=False)
        await bot.content()
        self.assertFalse(self.holding.called, "all of that was answered while the writer was still held")

        answers = dict(acks.answers)
        self.assertEqual(
            {answer["code"] for answer, _ in answers.values()}, {"overloaded"}, f"every send refused: {answers}"
        )
        for answer, seconds in answers.values():
            self.assertEqual(answer["error"], OVERLOADED)
            self.assertGreaterEqual(answer["retry_after"], BOUND)
            self.assertLess(seconds, 1.0, "answered without waiting for the database")
        # Whole seconds, at least 1 (more when a loaded machine's reactor runs late as well).
        self.assertEqual(put.code, 503)
        self.assertGreaterEqual(int(put.headers.getRawHeaders("Retry-After")[0]), 1)
        self.assertEqual(put_body, {"error": OVERLOADED, "code": "overloaded"})
        self.assertEqual(bot.code, 503)
        self.assertGreaterEqual(int(bot.headers.getRawHeaders("Retry-After")[0]), 1)

        release.set()
        sent = await first
        self.assertIn("message_id", sent)
        await eventually(lambda: writer.oldest_wait() == 0)
        after = await bob.call("send_message", recipient_id=alice.id, content="after", type="text")
        self.assertIn("message_id", after, "admitted again once the backlog drained")
        rows = await self.rows("SELECT id, content FROM messages ORDER BY seq")
        self.assertEqual(
            [(str(r["id"]), r["content"]) for r in rows],
            [(sent["message_id"], "first"), (after["message_id"], "after")],
        )
        # The refused upload spent nothing: the same request now succeeds.
        put = await treq.put(
            self.server.url + ready["upload_url"],
            data=b"abc",
            headers={"Authorization": f"Bearer {ready['upload_token']}"},
            persistent=False,
        )
        await put.content()
        self.assertEqual(put.code, 201)

    @inline
    async def test_a_reactor_running_late_refuses_writes_until_it_catches_up(self) -> None:
        """The backlog in the node's own core, not the database's: a send read after a long pass is refused."""
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        acks = Acks()
        acks.emit(alice, "late")  # sent by the client's thread now; the reactor reads it after the pass below
        time.sleep(3 * BOUND)  # a pass over busy connections that takes longer than the bound
        self.assertEqual(await eventually(acks.count, 1, tries=100, interval=0.01), 1)
        answer, _ = acks.answers["late"]
        self.assertEqual((answer["code"], answer["error"]), ("overloaded", OVERLOADED))
        self.assertGreaterEqual(answer["retry_after"], BOUND)
        # The reactor is on time again: writes are admitted, and only they are stored.
        lag = self.server.service.node.lag
        self.assertTrue(await eventually(lambda: lag.lag() < BOUND, tries=100, interval=0.02))
        sent = await alice.call("send_message", recipient_id=bob.id, content="on time", type="text")
        self.assertIn("message_id", sent)
        rows = await self.rows("SELECT id, content FROM messages ORDER BY seq")
        self.assertEqual([(str(r["id"]), r["content"]) for r in rows], [(sent["message_id"], "on time")])


for_each_backend(OverloadedServerMixin, ChatCase, globals())
