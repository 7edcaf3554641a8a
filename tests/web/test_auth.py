"""``/api/register``, ``/api/login`` and ``/api/logout``; ``/readyz`` and ``/healthz``."""

from __future__ import annotations

import base64
import hashlib
import os

import umoc
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from tests.support.node import NodeTestCase
from tests.support.web import Response, request


class HttpAuthTests(InProcessChatCase):
    """The HTTP edge through the node's real HTTP channel, in-process."""

    @inline
    async def test_register_rejects_taken_and_invalid_names(self) -> None:
        await self.server.register("alice")
        code, body = await self.server.post("/api/register", {"username": "ALICE", "password": "long enough pw"})
        self.assertEqual((code, body), (409, {"error": "Username already taken", "code": "conflict"}))
        code, body = await self.server.post("/api/register", {"username": "a/b", "password": "long enough pw"})
        self.assertEqual(code, 400)
        code, body = await self.server.post("/api/register", {"username": "bob", "password": "short"})
        self.assertEqual(code, 400)
        code, body = await self.server.post("/api/register", {"username": 5, "password": "long enough pw"})
        self.assertEqual(code, 400)

    @inline
    async def test_login_with_bad_password_is_401(self) -> None:
        await self.server.register("alice")
        code, body = await self.server.post("/api/login", {"username": "alice", "password": "wrong password"})
        self.assertEqual((code, body), (401, {"error": "Invalid username or password", "code": "not_authenticated"}))
        code, body = await self.server.post("/api/login", {"username": "nobody", "password": "wrong password"})
        self.assertEqual(code, 401)

    @inline
    async def test_passwords_and_tokens_are_not_stored_in_clear(self) -> None:
        login = await self.server.user("alice")
        db = self.server.services.storage.db
        row = await db.run("test", lambda t: t.execute("SELECT password_hash FROM users").fetchone())
        self.assertTrue(row[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$"), row[0])
        row = await db.run("test", lambda t: t.execute("SELECT token_hash FROM sessions").fetchone())
        self.assertNotEqual(row[0], login["token"])

    @inline
    async def test_an_old_scrypt_hash_verifies_and_is_replaced_by_argon2id_at_login(self) -> None:
        salt = os.urandom(16)
        digest = hashlib.scrypt(b"correct horse battery", salt=salt, n=2**14, r=8, p=1, dklen=32)
        old = f"scrypt$16384$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
        await self.server.services.storage.users.create("alice", old, 0.0)
        code, _ = await self.server.post("/api/login", {"username": "alice", "password": "wrong password"})
        self.assertEqual(code, 401)
        stored = await self.server.services.storage.users.credentials("alice")
        self.assertEqual(stored[2], old, "a failed login changes nothing")
        await self.server.login("alice")
        stored = await self.server.services.storage.users.credentials("alice")
        self.assertTrue(stored[2].startswith("$argon2id$"), stored[2])
        await self.server.login("alice")

    @inline
    async def test_non_json_body_is_400_json_error(self) -> None:
        response = await self.server.http("POST", "/api/login", b"\xff\xfe not json")
        self.assertEqual(response.code, 400)
        self.assertIn("error", response.json())

    @inline
    async def test_readyz_reports_database_and_healthz_only_liveness(self) -> None:
        response = await self.server.http("GET", "/readyz")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json(), {"database": True, "status": "ok"})
        response = await self.server.http("GET", "/healthz")
        self.assertEqual((response.code, response.json()), (200, {"status": "ok", "version": umoc.__version__}))

    @inline
    async def test_readyz_is_503_when_the_database_is_gone(self) -> None:
        self.server.services.storage.close()
        response = await self.server.http("GET", "/readyz")
        self.assertEqual((response.code, response.json()["status"]), (503, "unready"))
        response = await self.server.http("GET", "/healthz")
        self.assertEqual(response.code, 200)


class AuthResourceTests(NodeTestCase):
    """The three endpoints rendered in-process through the node's Site, over a real SQLite database."""

    use_clock = False

    async def post(self, path: str, body: object) -> Response:
        return await request(self.node.site, "POST", path, body)

    @inline
    async def test_register_then_login_then_logout(self) -> None:
        created = await self.post("/api/register", {"username": "alice", "password": "correct horse battery"})
        self.assertEqual(created.code, 201)
        self.assertEqual(set(created.json()), {"user_id", "username"})
        login = await self.post("/api/login", {"username": "alice", "password": "correct horse battery"})
        self.assertEqual(login.code, 200)
        body = login.json()
        self.assertEqual(set(body), {"sessionID", "token", "user_id", "username", "expires_at", "device_token"})
        self.assertIsNotNone(await self.storage.users.session(body["sessionID"]))
        logout = await self.post("/api/logout", {"sessionID": body["sessionID"], "token": body["token"]})
        self.assertEqual((logout.code, logout.json()), (200, {"ok": True}))
        self.assertIsNone(await self.storage.users.session(body["sessionID"]))
        again = await self.post("/api/logout", {"sessionID": body["sessionID"], "token": body["token"]})
        self.assertEqual((again.code, again.json()), (401, {"error": "Invalid session", "code": "not_authenticated"}))

    @inline
    async def test_bad_bodies_are_400_and_wrong_passwords_401(self) -> None:
        for body in (b"not json", b"[1]", {"username": "alice"}, {"username": 5, "password": "long enough pw"}):
            response = await self.post("/api/register", body)
            self.assertEqual(response.code, 400, body)
            self.assertIn("error", response.json())
        await self.post("/api/register", {"username": "alice", "password": "correct horse battery"})
        taken = await self.post("/api/register", {"username": "ALICE", "password": "correct horse battery"})
        self.assertEqual((taken.code, taken.json()), (409, {"error": "Username already taken", "code": "conflict"}))
        wrong = await self.post("/api/login", {"username": "alice", "password": "wrong password"})
        self.assertEqual(
            (wrong.code, wrong.json()), (401, {"error": "Invalid username or password", "code": "not_authenticated"})
        )
