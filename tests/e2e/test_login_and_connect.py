"""End to end: register, log in, connect, verify_session, ping and log out, on both databases."""

from __future__ import annotations

import uuid

import socketio

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.server import ServerTestCase


class FoundationTestsMixin:
    @inline
    async def test_register_login_connect_receives_connection_successful(self) -> None:
        login = await self.server.user("alice")
        self.assertEqual(set(login), {"sessionID", "token", "user_id", "username", "expires_at", "device_token"})
        self.assertIsInstance(login["user_id"], int)
        uuid.UUID(login["sessionID"])
        client = await self.connect(login)
        hello = await client.expect("connection_successful")
        self.assertEqual(
            hello,
            {
                "user_id": login["user_id"],
                "username": "alice",
                "session_expires": login["expires_at"],
                "cursor": hello["cursor"],
            },
        )
        self.assertIsInstance(hello["cursor"], str)  # where the change feed stands: sync {cursor} starts there

    @inline
    async def test_connect_with_auth_payload_instead_of_query(self) -> None:
        login = await self.server.user("alice")
        client = await self.connect(
            login, use_query=False, auth={"sessionID": login["sessionID"], "token": login["token"]}
        )
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
