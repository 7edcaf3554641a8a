"""Session expiry (driven by task.Clock) and the per-user session cap under racing logins."""

from __future__ import annotations

import tempfile
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from tests.support.databases import DatabaseTestCase, for_each_backend
from tests.support.deferreds import eventually, inline, sleep
from tests.support.fakes import FakeSocket
from tests.support.server import ServerTestCase, test_config
from umoc.credentials import token_digest
from umoc.records.sessions import NewSession
from umoc.service import UmocService, periodic_task


class ExpiryTestsMixin:
    @inline
    async def test_periodic_expiry_deletes_expired_sessions_and_closes_their_sockets(self) -> None:
        clock = Clock()
        clock.advance(1_700_000_000)
        config = test_config(tempfile.mkdtemp(prefix="umoc-srv-"), sessions={"cleanup_interval": "60s"})
        service = UmocService(config, clock, storage=self.storage)
        users = self.storage.users
        user = await users.create("alice", "x", clock.seconds())
        now = clock.seconds()
        await users.create_session(NewSession(user.id, "short", token_digest("t1"), now, now + 30), 3)
        await users.create_session(NewSession(user.id, "long", token_digest("t2"), now, now + 3600), 3)
        short, long_ = FakeSocket(user.id, "short"), FakeSocket(user.id, "long")
        service.node.services.hub.add(short)
        service.node.services.hub.add(long_)
        task = periodic_task(config.sessions.cleanup_interval, service.node.services.sessions.expire, clock)
        task.startService()  # runs now, before anything has expired, then every interval
        self.addCleanup(task.stopService)

        clock.advance(59)  # the first run is one interval after start
        await sleep(0.05)
        self.assertIsNone(short.disconnected)
        self.assertIsNotNone(await users.session("short"))

        clock.advance(1)
        await eventually(lambda: short.disconnected is not None)
        self.assertEqual(short.emitted, [("session_status", {"valid": False, "message": "Your session has expired"})])
        self.assertEqual(short.disconnected, "session ended")
        self.assertIsNone(await users.session("short"))
        self.assertIsNone(long_.disconnected)
        self.assertEqual(long_.emitted, [])
        self.assertIsNotNone(await users.session("long"))

    @inline
    async def test_failing_expiry_run_is_logged_and_the_next_run_still_happens(self) -> None:
        clock = Clock()
        runs = []

        async def flaky() -> None:
            runs.append(clock.seconds())
            if len(runs) == 1:
                raise RuntimeError("database went away")

        task = periodic_task(10, flaky, clock)
        task.startService()
        self.addCleanup(task.stopService)
        clock.advance(10)
        self.assertEqual(runs, [0, 10])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @inline
    async def test_a_sweep_before_the_revoking_command_ends_the_session_lets_the_command_say_why(self) -> None:
        """The sweep may read a session gone between an administrator's commit and the command's `end`."""
        clock = Clock()
        clock.advance(1_700_000_000)
        service = UmocService(test_config(tempfile.mkdtemp(prefix="umoc-srv-")), clock, storage=self.storage)
        sessions, hub = service.node.services.sessions, service.node.services.hub
        user = await self.storage.users.create("alice", "x", clock.seconds())
        now = clock.seconds()
        for session_id in ("revoked", "unexplained"):
            await self.storage.users.create_session(
                NewSession(user.id, session_id, token_digest(session_id), now, now + 3600), 3
            )
        revoked, unexplained = FakeSocket(user.id, "revoked"), FakeSocket(user.id, "unexplained")
        hub.add(revoked)
        hub.add(unexplained)
        await self.storage.users.delete_session("revoked")
        await self.storage.users.delete_session("unexplained")

        self.assertEqual(await sessions.sweep(), 2)
        self.assertEqual((revoked.emitted, unexplained.emitted), ([], []), "nothing said before the grace")
        sessions.end_all(["revoked"], "Your session was ended by an administrator")
        clock.advance(sessions.UNEXPLAINED_GRACE)
        self.assertEqual(
            revoked.emitted,
            [("session_status", {"valid": False, "message": "Your session was ended by an administrator"})],
        )
        self.assertEqual(
            unexplained.emitted, [("session_status", {"valid": False, "message": sessions.ENDED_ELSEWHERE})]
        )
        self.assertEqual((revoked.disconnected, unexplained.disconnected), ("session ended", "session ended"))

    @inline
    async def test_a_session_ended_while_the_sweep_reads_is_left_alone(self) -> None:
        """The sweep's list of sessions is taken before its query: one ended meanwhile leaves no grace timer."""
        clock = Clock()
        clock.advance(1_700_000_000)
        service = UmocService(test_config(tempfile.mkdtemp(prefix="umoc-srv-")), clock, storage=self.storage)
        sessions, hub = service.node.services.sessions, service.node.services.hub
        user = await self.storage.users.create("alice", "x", clock.seconds())
        now = clock.seconds()
        await self.storage.users.create_session(NewSession(user.id, "deleted", token_digest("t"), now, now + 3600), 3)
        socket = FakeSocket(user.id, "deleted")
        hub.add(socket)
        await self.storage.users.delete_session("deleted")
        reading = defer.ensureDeferred(sessions.sweep())
        self.assertFalse(reading.called, "the sweep waits for its query")
        # Its end is told (an account deletion's `end_all`, say) and the socket closes before the query answers.
        sessions.end_all(["deleted"], "Your account has been deleted")
        hub.remove(socket)
        self.assertEqual(await reading, 0)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(
            socket.emitted, [("session_status", {"valid": False, "message": "Your account has been deleted"})]
        )


for_each_backend(ExpiryTestsMixin, DatabaseTestCase, globals())


class RacingLoginTestsMixin:
    config_overrides = {
        "ratelimits": {name: {"rate": 100, "per": "1s", "burst": 100} for name in ("login", "login_name")}
    }

    @inline
    async def test_ten_concurrent_logins_leave_at_most_max_per_user_sessions(self) -> None:
        body = await self.server.register("alice")
        logins = await defer.gatherResults([defer.ensureDeferred(self.server.login("alice")) for _ in range(10)])
        self.assertEqual(len({login["sessionID"] for login in logins}), 10)

        def count(txn: Any) -> int:
            return txn.execute("SELECT COUNT(*) FROM sessions WHERE user_id = ?", (body["user_id"],)).fetchone()[0]

        self.assertEqual(await self.server.services.storage.db.run("test", count), 3)
        alive = [login for login in logins if await self.server.services.storage.users.session(login["sessionID"])]
        self.assertEqual(len(alive), 3)


for_each_backend(RacingLoginTestsMixin, ServerTestCase, globals())


class SessionCacheTestsMixin:
    """An authenticated connect costs no database round trip, and no ended session is ever served from memory."""

    async def manager_with_lookups(self) -> tuple[Any, Clock, list[str]]:
        clock = Clock()
        clock.advance(1_700_000_000)
        config = test_config(tempfile.mkdtemp(prefix="umoc-srv-"))
        service = UmocService(config, clock, storage=self.storage)
        sessions = service.node.services.sessions
        lookups: list[str] = []
        real = self.storage.users.session

        def counted(session_id: str) -> Any:
            lookups.append(session_id)
            return real(session_id)

        self.storage.users.session = counted  # the real query, counted
        user = await self.storage.users.create("alice", "x", clock.seconds())
        now = clock.seconds()
        await self.storage.users.create_session(NewSession(user.id, "s1", token_digest("t1"), now, now + 3600), 3)
        return sessions, clock, lookups

    @inline
    async def test_a_second_check_is_answered_from_memory_and_still_checks_the_token(self) -> None:
        sessions, _, lookups = await self.manager_with_lookups()
        self.assertEqual((await sessions.check("s1", "t1")).id, "s1")
        self.assertEqual((await sessions.check("s1", "t1")).id, "s1")
        self.assertEqual(lookups, ["s1"])
        self.assertIsNone(await sessions.authenticate("s1", "wrong token"))

    @inline
    async def test_an_ended_session_is_forgotten_at_once(self) -> None:
        sessions, _, lookups = await self.manager_with_lookups()
        await sessions.check("s1", "t1")
        await self.storage.users.delete_session("s1")
        sessions.end("s1", "revoked")  # as every path that ends a session does, here or through the bus
        self.assertIsNone(await sessions.authenticate("s1", "t1"))
        self.assertEqual(lookups, ["s1", "s1"])

    @inline
    async def test_an_entry_is_trusted_for_check_interval_at_most(self) -> None:
        sessions, clock, lookups = await self.manager_with_lookups()
        await sessions.check("s1", "t1")
        clock.advance(11)  # sessions.check_interval is 10s: an end this node never heard of shows by then
        await sessions.check("s1", "t1")
        self.assertEqual(lookups, ["s1", "s1"])


for_each_backend(SessionCacheTestsMixin, DatabaseTestCase, globals())
