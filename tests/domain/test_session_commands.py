"""The login and logout commands, called as any sign-in edge would call them (no HTTP in between).

`umoc.domain.commands.sessions` holds the login limits that ``POST
/api/login`` used to keep to itself, so another edge gets them by calling
it: these tests call it directly on a real node over its real database.
"""

from __future__ import annotations

from typing import Any

from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from umoc.domain.commands import account, sessions
from umoc.domain.sessions import InvalidCredentialsError, InvalidSessionError
from umoc.records.account import NewAccount
from umoc.records.sessions import LoginAttempt, SessionCredentials

PASSWORD = "correct horse battery"
BURST = 10  # the default ratelimits.login_account bucket


class SessionCommandTests(NodeTestCase):
    use_clock = False  # the password hashes report back from their threads
    config_overrides: dict[str, dict[str, Any]] = {}

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        await account.register(self.services, sessions.client_actor("198.51.100.7"), NewAccount("alice", PASSWORD))

    @inline
    async def test_login_answers_a_session_and_a_device_token_and_logout_ends_it(self) -> None:
        answer = await sessions.login(
            self.services, sessions.client_actor("198.51.100.7"), LoginAttempt("alice", PASSWORD)
        )
        self.assertEqual(answer["username"], "alice")
        self.assertRegex(answer["device_token"], r"^[A-Za-z0-9_-]{43}$")
        actor = sessions.client_actor("198.51.100.7")
        credentials = SessionCredentials(answer["sessionID"], answer["token"])
        record = await sessions.logout(self.services, actor, credentials)
        self.assertEqual(record.username, "alice")
        with self.assertRaises(InvalidSessionError):
            await sessions.logout(self.services, actor, credentials)  # ended: the same credentials open nothing

    @inline
    async def test_strangers_share_one_bucket_per_account_and_the_owners_device_is_exempt(self) -> None:
        owner = await sessions.login(
            self.services, sessions.client_actor("198.51.100.7"), LoginAttempt("alice", PASSWORD)
        )
        for n in range(BURST - 1):  # the owner's first login, from an unknown client, took one
            with self.assertRaises(InvalidCredentialsError):
                await sessions.login(
                    self.services, sessions.client_actor(f"10.0.{n}.1"), LoginAttempt("alice", "wrong")
                )
        with self.assertRaises(sessions.RateLimitedError) as refused:
            await sessions.login(self.services, sessions.client_actor("10.1.0.1"), LoginAttempt("alice", PASSWORD))
        self.assertEqual(refused.exception.status, 429)
        self.assertGreaterEqual(int(refused.exception.headers["Retry-After"]), 1)
        # The owner's client, from an address never seen, is known by the token it kept.
        again = await sessions.login(
            self.services,
            sessions.client_actor("203.0.113.9"),
            LoginAttempt("alice", PASSWORD, device_token=owner["device_token"]),
        )
        self.assertEqual(again["device_token"], owner["device_token"])

    @inline
    async def test_a_device_token_of_a_foreign_form_is_ignored_not_trusted(self) -> None:
        answer = await sessions.login(
            self.services, sessions.client_actor("198.51.100.7"), LoginAttempt("alice", PASSWORD, device_token="x")
        )
        self.assertNotEqual(answer["device_token"], "x")
