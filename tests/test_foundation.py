"""End to end: HTTP auth, Socket.IO connect, verify_session and ping, on both databases."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid

import socketio

from tests.support import ServerTestCase, for_each_backend, inline


class FoundationTestsMixin:
    @inline
    async def test_register_login_connect_receives_connection_successful(self) -> None:
        login = await self.server.user("alice")
        self.assertEqual(set(login), {"sessionID", "token", "user_id", "username", "expires_at"})
        self.assertIsInstance(login["user_id"], int)
        uuid.UUID(login["sessionID"])
        client = await self.connect(login)
        hello = await client.expect("connection_successful")
        self.assertEqual(hello, {"user_id": login["user_id"], "username": "alice",
                                 "session_expires": login["expires_at"]})

    @inline
    async def test_connect_with_auth_payload_instead_of_query(self) -> None:
        login = await self.server.user("alice")
        client = await self.connect(login, use_query=False,
                                    auth={"sessionID": login["sessionID"], "token": login["token"]})
        hello = await client.expect("connection_successful")
        self.assertEqual(hello["user_id"], login["user_id"])

    @inline
    async def test_wrong_token_gets_connect_error(self) -> None:
        login = await self.server.user("alice")
        login = {**login, "token": "x" * 43}
        with self.assertRaises(socketio.exceptions.ConnectionError):
            await self.connect(login)

    @inline
    async def test_verify_session_and_ping_answer_spec_payloads(self) -> None:
        login, client = await self.connected_user("alice")
        status = await client.call("verify_session", client.with_session(token=login["token"]))
        self.assertEqual(status, {"valid": True, "expires_at": login["expires_at"]})
        self.assertEqual(await client.expect("session_status"), status)
        pong = await client.call("ping", client.with_session(timestamp=1636750000000))
        self.assertEqual(set(pong), {"timestamp", "server_time", "latency"})
        self.assertEqual(pong["timestamp"], 1636750000000)
        self.assertEqual(pong["latency"], pong["server_time"] - 1636750000000)

    @inline
    async def test_verify_session_with_wrong_token_is_invalid(self) -> None:
        _, client = await self.connected_user("alice")
        status = await client.call("verify_session", client.with_session(token="nope"))
        self.assertEqual(status, {"valid": False, "message": "Your session has expired or is invalid"})

    @inline
    async def test_unknown_event_and_bad_payload_get_error_and_connection_lives(self) -> None:
        _, client = await self.connected_user("alice")
        await client.emit("no_such_event", {})
        self.assertIn("Unknown event", (await client.expect("error"))["message"])
        await client.emit("ping", {"timestamp": "soon"})
        self.assertIn("timestamp", (await client.expect("error"))["message"])
        await client.emit("ping", ["not", "an", "object"])
        self.assertIn("payload", (await client.expect("error"))["message"])
        answer = await client.call("ping", {"sessionID": str(uuid.uuid4()), "timestamp": 1})
        self.assertIn("sessionID", answer["error"])
        pong = await client.call("ping", {"timestamp": 5})
        self.assertEqual(pong["timestamp"], 5)

    @inline
    async def test_logout_invalidates_session_and_closes_socket(self) -> None:
        login, client = await self.connected_user("alice")
        code, _ = await self.server.post("/api/logout", {"sessionID": login["sessionID"], "token": login["token"]})
        self.assertEqual(code, 200)
        status = await client.expect("session_status")
        self.assertEqual(status["valid"], False)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            await self.connect(login)

    @inline
    async def test_fourth_login_revokes_the_oldest_session(self) -> None:
        await self.server.register("alice")
        first = await self.server.login("alice")
        client = await self.connect(first)
        await client.expect("connection_successful")
        for _ in range(3):
            await self.server.login("alice")
        status = await client.expect("session_status")
        self.assertFalse(status["valid"])
        with self.assertRaises(socketio.exceptions.ConnectionError):
            await self.connect(first)


for_each_backend(FoundationTestsMixin, ServerTestCase, globals())


class HttpAuthTests(ServerTestCase):
    @inline
    async def test_register_rejects_taken_and_invalid_names(self) -> None:
        await self.server.register("alice")
        code, body = await self.server.post("/api/register", {"username": "ALICE", "password": "long enough pw"})
        self.assertEqual((code, body), (409, {"error": "Username already taken"}))
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
        self.assertEqual((code, body), (401, {"error": "Invalid username or password"}))
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
        import treq
        response = await treq.post(self.server.url + "/api/login", data=b"\xff\xfe not json", persistent=False)
        self.assertEqual(response.code, 400)
        self.assertIn("error", await response.json())

    @inline
    async def test_readyz_reports_database_and_healthz_only_liveness(self) -> None:
        import treq
        response = await treq.get(self.server.url + "/readyz", persistent=False)
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.json(), {"database": True, "status": "ok"})
        response = await treq.get(self.server.url + "/healthz", persistent=False)
        self.assertEqual((response.code, await response.json()), (200, {"status": "ok"}))

    @inline
    async def test_readyz_is_503_when_the_database_is_gone(self) -> None:
        import treq
        self.server.services.storage.close()
        response = await treq.get(self.server.url + "/readyz", persistent=False)
        self.assertEqual((response.code, (await response.json())["status"]), (503, "unready"))
        response = await treq.get(self.server.url + "/healthz", persistent=False)
        self.assertEqual(response.code, 200)
