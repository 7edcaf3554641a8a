"""End to end: sockets that connect with a token from an identity provider whose key set is served over HTTP.

A twisted.web server on 127.0.0.1 publishes the provider's JWKS; the node
fetches it through its outbound agent.  python-socketio connects with
``auth={"token": ...}`` over a real WebSocket; the refusals are read from
raw CONNECT answers, and each must leave no user and no session behind.
"""

from __future__ import annotations

import time
from typing import Any

import socketio

from tests.support.databases import for_each_backend
from tests.support.deferreds import blocking, inline
from tests.support.identity import ISSUER, JwksServer, SigningKey, hs256_with, unsigned
from tests.support.server import ServerTestCase, test_config
from umoc.config import Config

HMAC_SECRET = "a-shared-secret-of-at-least-32-characters"


def claims(subject: str = "u-1001", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": "umoc",
        "sub": subject,
        "iat": now,
        "exp": now + 300,
        "preferred_username": "alice",
        "name": "Alice Liddell",
        **extra,
    }


class TokenConnectTestsMixin:
    server: Any

    def setUp(self) -> Any:
        self.rsa = SigningKey.rsa("k1")
        self.ec = SigningKey.ec("k-ec")
        self.ed = SigningKey.ed25519("k-ed")
        self.jwks = JwksServer([self.rsa, self.ec, self.ed])
        self.addCleanup(self.jwks.stop)
        return super().setUp()

    def config_for_test(self, data_dir: str) -> Config:
        return test_config(
            data_dir,
            auth={
                "jwt": {
                    "enabled": True,
                    "jwks_url": self.jwks.url,
                    "hmac_secret": HMAC_SECRET,
                    "issuer": ISSUER,
                    "jwks_refresh": "10m",
                }
            },
        )

    async def refused(self, token: str) -> dict[str, Any]:
        """The CONNECT_ERROR payload a raw socket gets for ``token``."""
        sock = await self.open_websocket()
        await blocking(sock.send, '40{"token":"' + token + '"}')
        return await blocking(sock.recv_json_packet, "44")

    async def counts(self) -> tuple[int, int]:
        db = self.server.services.storage.db

        def txn(t: Any) -> tuple[int, int]:
            return t.scalar("SELECT COUNT(*) FROM users"), t.scalar("SELECT COUNT(*) FROM sessions")

        return await db.run("test.counts", txn)

    @inline
    async def test_token_connect_creates_the_user_once_and_names_the_subject(self) -> None:
        token = self.rsa.sign(claims())
        client = await self.connect({}, use_query=False, auth={"token": token})
        hello = await client.expect("connection_successful")
        self.assertEqual(hello["username"], "alice")
        self.assertEqual(hello["external_id"], "u-1001")
        profile = await self.server.services.storage.profiles.get(hello["user_id"], hello["user_id"])
        self.assertEqual(profile.display_name, "Alice Liddell")
        # Another token of the same subject (an EC key, then an Ed25519 one) is the same user.
        for key in (self.ec, self.ed):
            again = await self.connect({}, use_query=False, auth={"token": key.sign(claims())})
            self.assertEqual((await again.expect("connection_successful"))["user_id"], hello["user_id"])
        # An HS256 token signed with the configured secret works too.
        hs = hs256_with(HMAC_SECRET.encode(), claims())
        again = await self.connect({}, use_query=False, auth={"token": hs})
        self.assertEqual((await again.expect("connection_successful"))["user_id"], hello["user_id"])
        self.assertEqual((await self.counts())[0], 1)

    @inline
    async def test_a_taken_username_gets_a_unique_one(self) -> None:
        await self.server.register("alice")
        client = await self.connect({}, use_query=False, auth={"token": self.rsa.sign(claims())})
        hello = await client.expect("connection_successful")
        self.assertRegex(hello["username"], r"^alice_[0-9a-f]{7}$")

    @inline
    async def test_rotated_key_is_fetched_once_and_the_retired_one_refused(self) -> None:
        first = await self.connect({}, use_query=False, auth={"token": self.rsa.sign(claims())})
        await first.expect("connection_successful")
        fetched = self.jwks.requests
        rotated = SigningKey.rsa("k2")
        self.jwks.keys = [rotated]
        client = await self.connect({}, use_query=False, auth={"token": rotated.sign(claims())})
        await client.expect("connection_successful")
        self.assertEqual(self.jwks.requests, fetched + 1)
        # The old kid is gone from the set, and another refetch within jwks_refresh is not allowed.
        answer = await self.refused(self.rsa.sign(claims()))
        self.assertEqual(answer, {"message": "Unknown key id", "data": {"code": "not_authenticated"}})
        answer = await self.refused(SigningKey.rsa("k3").sign(claims()))
        self.assertEqual(answer["message"], "Unknown key id")
        self.assertEqual(self.jwks.requests, fetched + 1)

    @inline
    async def test_refusals_are_clear_and_create_nothing(self) -> None:
        now = int(time.time())
        public_pem = self.rsa.public_pem()
        cases = {
            "expired": (self.rsa.sign(claims(iat=now - 600, exp=now - 120)), "Token expired"),
            "not yet valid": (self.rsa.sign(claims(nbf=now + 600)), "Invalid token"),
            "issued in the future": (self.rsa.sign(claims(iat=now + 600, exp=now + 900)), "Invalid token"),
            "wrong audience": (self.rsa.sign(claims(aud="other-app")), "Invalid token"),
            "wrong issuer": (self.rsa.sign(claims(iss="https://evil.example")), "Invalid token"),
            "unknown kid": (SigningKey.rsa("nope").sign(claims()), "Unknown key id"),
            "alg none": (unsigned(claims()), "Invalid token"),
            "HS/RS key confusion": (hs256_with(public_pem, claims(), kid="k1"), "Invalid token"),
            "forged signature": (self.rsa.sign(claims())[:-4] + "AAAA", "Invalid token"),
            "no exp": (self.rsa.sign({k: v for k, v in claims().items() if k != "exp"}), "Invalid token"),
            "garbage": ("not.a.jwt", "Invalid token"),
        }
        before = await self.counts()
        for why, (token, message) in cases.items():
            answer = await self.refused(token)
            self.assertEqual(answer, {"message": message, "data": {"code": "not_authenticated"}}, why)
        self.assertEqual(await self.counts(), before)

    @inline
    async def test_revoked_users_earlier_token_is_refused(self) -> None:
        old = self.rsa.sign(claims(iat=int(time.time()) - 5))
        client = await self.connect({}, use_query=False, auth={"token": old})
        hello = await client.expect("connection_successful")
        services = self.server.services
        ended = await services.storage.identities.revoke(hello["user_id"], time.time())
        services.sessions.end_all(ended, "Your session was revoked")
        self.assertFalse((await client.expect("session_status"))["valid"])
        before = await self.counts()
        self.assertEqual((await self.refused(old))["message"], "Invalid token")
        self.assertEqual(await self.counts(), before)
        fresh = self.rsa.sign(claims(iat=int(time.time()) + 1))
        again = await self.connect({}, use_query=False, auth={"token": fresh})
        self.assertEqual((await again.expect("connection_successful"))["user_id"], hello["user_id"])

    @inline
    async def test_a_deactivated_users_token_is_refused(self) -> None:
        client = await self.connect({}, use_query=False, auth={"token": self.rsa.sign(claims())})
        hello = await client.expect("connection_successful")
        await self.server.services.storage.admin.deactivate(hello["user_id"], time.time())
        answer = await self.refused(self.ec.sign(claims()))
        self.assertEqual(answer, {"message": "This account has been deactivated", "data": {"code": "account_disabled"}})

    @inline
    async def test_token_exchanged_for_an_ordinary_session(self) -> None:
        code, body = await self.server.post("/api/token/session", {"token": self.ec.sign(claims())})
        self.assertEqual(code, 200, body)
        self.assertEqual(body["username"], "alice")
        self.assertEqual(body["external_id"], "u-1001")
        client = await self.connect(body)
        hello = await client.expect("connection_successful")
        self.assertEqual(hello["user_id"], body["user_id"])
        self.assertNotIn("external_id", hello)
        code, body = await self.server.post("/api/token/session", {"token": unsigned(claims())})
        self.assertEqual((code, body), (401, {"error": "Invalid token", "code": "not_authenticated"}))

    @inline
    async def test_python_socketio_sees_the_refusal_as_connect_error(self) -> None:
        token = self.rsa.sign(claims(aud="other-app"))
        with self.assertRaises(socketio.exceptions.ConnectionError):
            await self.connect({}, use_query=False, auth={"token": token})


for_each_backend(TokenConnectTestsMixin, ServerTestCase, globals())


class PasswordsOffTests(ServerTestCase):
    config_overrides = {"auth": {"password": {"enabled": False}}}

    @inline
    async def test_register_and_login_are_refused_when_passwords_are_off(self) -> None:
        refusal = {"error": "Password accounts are disabled on this server", "code": "forbidden"}
        body = {"username": "alice", "password": "correct horse battery"}
        self.assertEqual(await self.server.post("/api/register", body), (403, refusal))
        self.assertEqual(await self.server.post("/api/login", body), (403, refusal))
