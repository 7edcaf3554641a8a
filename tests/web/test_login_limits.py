"""Guessing one account from many addresses, and the bounded password queue (issue 22, G7).

``ratelimits.login_account`` bounds the guesses at one account from clients
it does not know (OWASP's "device cookies"); the owner's known address, or
the ``device_token`` their client kept, is never held back.  Password hashes
wait in a queue of ``sessions.password_queue`` at most: past it, 503 (or
``error`` with ``retry_after`` on a socket) at once.  The addresses are the
``X-Forwarded-For`` of a trusted proxy: nothing is sent anywhere.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

from twisted.internet import defer

from tests.support.deferreds import eventually, inline
from tests.support.node import NodeTestCase
from tests.support.web import Response, request
from umoc.domain import sessions as sessions_module

PASSWORD = "correct horse battery"
#: The owner's usual address (a known client once they have logged in from it).
OWNER = "198.51.100.7"
#: The default ``ratelimits.login_account`` bucket.
BURST = 10


def stranger(n: int) -> str:
    """A different address for every guess: the per-address buckets never fill."""
    return f"10.{n // 250}.{n % 250}.1"


class LoginCase(NodeTestCase):
    use_clock = False  # the password hashes report back from their threads
    config_overrides: dict[str, dict[str, Any]] = {"server": {"trusted_proxies": ["127.0.0.1"]}}

    async def post(self, path: str, address: str, body: dict[str, Any]) -> Response:
        return await request(self.node.site, "POST", path, body, headers={"X-Forwarded-For": address})

    async def login(self, address: str, password: str = PASSWORD, username: str = "alice", **extra: Any) -> Response:
        return await self.post("/api/login", address, {"username": username, "password": password, **extra})

    async def register(self, username: str = "alice") -> None:
        created = await self.post("/api/register", OWNER, {"username": username, "password": PASSWORD})
        self.assertEqual(created.code, 201, created.body)


class AccountGuessingTests(LoginCase):
    @inline
    async def test_guesses_from_many_addresses_are_bounded_per_account_and_the_owner_still_logs_in(self) -> None:
        await self.register()
        owner = await self.login(OWNER)  # the owner's client, before the attack
        self.assertEqual(owner.code, 200, owner.body)
        device_token = owner.json()["device_token"]

        guesses = await defer.gatherResults(
            [defer.ensureDeferred(self.login(stranger(n), f"wrong guess {n}")) for n in range(200)]
        )
        codes = Counter(response.code for response in guesses)
        self.assertLessEqual(codes[401], BURST, codes)  # checked, one from the bucket each
        self.assertEqual(codes[401] + codes[429], 200, codes)
        refused = next(response for response in guesses if response.code == 429)
        self.assertIn("this account", refused.json()["error"])
        self.assertTrue(1 <= int(refused.header("Retry-After") or 0) <= 300, refused.header("Retry-After"))

        # During the attack: the owner from their usual address, and from anywhere with their device token.
        self.assertEqual((await self.login(OWNER)).code, 200)
        self.assertEqual((await self.login("192.0.2.99", device_token=device_token)).code, 200)
        # A client the account does not know waits like the strangers, even with the right password.
        self.assertEqual((await self.login("192.0.2.100")).code, 429)
        self.assertEqual((await self.login(OWNER, "wrong guess")).code, 401, "known clients are checked, not held")

    @inline
    async def test_a_client_is_known_to_one_account_only(self) -> None:
        await self.register("alice")
        await self.register("bobby")
        alice = await self.login(OWNER)
        for n in range(BURST + 5):
            await self.login(stranger(n), "wrong guess", username="bobby")
        token = alice.json()["device_token"]
        self.assertEqual((await self.login(OWNER, username="bobby", device_token=token)).code, 429)
        self.assertEqual((await self.login(OWNER, username="alice", device_token=token)).code, 200)

    @inline
    async def test_the_device_token_is_issued_kept_and_checked(self) -> None:
        await self.register()
        first = (await self.login(OWNER)).json()["device_token"]
        self.assertRegex(first, r"^[A-Za-z0-9_-]{43}$")
        again = await self.login("192.0.2.1", device_token=first)
        self.assertEqual(again.json()["device_token"], first, "a client keeps its token")
        other = await self.login("192.0.2.1", device_token="made up by the client")
        self.assertNotEqual(
            other.json()["device_token"], "made up by the client", "only tokens of the issued form count"
        )
        wrong_type = await self.login("192.0.2.1", device_token=12345)
        self.assertEqual(
            (wrong_type.code, wrong_type.json()),
            (400, {"error": "'device_token' must be a string", "code": "invalid_argument"}),
        )

    @inline
    async def test_neither_the_password_nor_the_device_token_is_kept_in_clear(self) -> None:
        await self.register()
        token = (await self.login(OWNER)).json()["device_token"]
        limiter: Any = self.services.ratelimiter
        marks = " ".join(key for _, key in limiter._remembered)
        self.assertNotIn(token, marks)
        self.assertNotIn(PASSWORD, marks)
        self.assertTrue(re.search(r"alice\|dev:[0-9a-f]{64}", marks), marks)


class PasswordQueueTests(LoginCase):
    """Two hashes may wait; the pool's threads are held until the test lets them go."""

    config_overrides = {
        "server": {"trusted_proxies": ["127.0.0.1"]},
        "sessions": {"password_queue": 2},
        "ratelimits": {"enabled": False},
    }

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.release = threading.Event()
        self.addCleanup(self.release.set)  # before the pool is stopped (cleanups run last first)
        real_hash, real_verify = sessions_module.hash_password, sessions_module.verify_password

        def held_hash(password: str) -> str:
            self.release.wait(30)
            return real_hash(password)

        def held_verify(password: str, stored: str) -> bool:
            self.release.wait(30)
            return real_verify(password, stored)

        self.patch(sessions_module, "hash_password", held_hash)
        self.patch(sessions_module, "verify_password", held_verify)

    def fill_the_queue(self) -> list[defer.Deferred[str]]:
        return [defer.ensureDeferred(self.services.sessions.hash_new_password(f"long enough {n}")) for n in range(2)]

    async def answered_while_held(self, d: defer.Deferred[Any]) -> Any:
        """``d``'s result, which must come while the queued hashes are still held (not after them)."""
        answered = await eventually(lambda: d.called)
        self.release.set()
        self.assertTrue(answered, "the request waited in the queue instead of being refused")
        return await d

    @inline
    async def test_a_login_past_the_queue_is_503_with_retry_after(self) -> None:
        self.release.set()
        await self.register()
        self.release.clear()
        queued = self.fill_the_queue()
        response = await self.answered_while_held(defer.ensureDeferred(self.login(OWNER)))
        self.assertEqual(response.code, 503)
        self.assertEqual(response.header("Retry-After"), "1")
        self.assertIn("busy", response.json()["error"])
        await defer.gatherResults(queued)
        self.assertEqual((await self.login(OWNER)).code, 200, "the queue drained: logins go through again")

    @inline
    async def test_a_registration_past_the_queue_is_503(self) -> None:
        queued = self.fill_the_queue()
        response = await self.answered_while_held(
            defer.ensureDeferred(self.post("/api/register", OWNER, {"username": "carol", "password": PASSWORD}))
        )
        self.assertEqual(response.code, 503)
        await defer.gatherResults(queued)

    @inline
    async def test_delete_account_past_the_queue_is_an_error_with_retry_after(self) -> None:
        socket = await self.connected("alice")
        queued = self.fill_the_queue()
        answer = await self.answered_while_held(
            defer.ensureDeferred(self.call(socket, "delete_account", password=PASSWORD))
        )
        self.assertEqual(answer.get("retry_after"), 1, answer)
        self.assertIn("busy", answer["error"])
        await defer.gatherResults(queued)
