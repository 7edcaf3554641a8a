"""The server API end to end: a key from ``umoc-admin create-server-key``, users upserted, UMOC-signed tokens
used over the wire by python-socketio, and revocation, on one node and across two nodes sharing Redis."""

from __future__ import annotations

import json
from typing import Any

import treq

from tests.support.admin import AdminCase
from tests.support.client import Client
from tests.support.cluster import ClusterTestCase
from tests.support.databases import for_each_backend
from tests.support.deferreds import blocking, eventually, inline
from tests.support.rawclient import RawWebSocket
from tests.support.server import Server
from umoc.domain.commands import serverapi
from umoc.records import Actor
from umoc.records.identity import NewServerKey


async def call(server: Server, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    response = await treq.request(method, server.url + path, json=body, headers=headers, persistent=False)
    text = await response.text()
    return response.code, (json.loads(text) if text else None)


class ServerApiMixin:
    @inline
    async def setUp(self) -> None:
        await super().setUp()  # type: ignore[misc]
        self.key = (await self.cli_ok("create-server-key", "backend")).strip()

    async def refused(self, token: str) -> dict[str, Any]:
        sock = await self.open_websocket()
        await blocking(sock.send, '40{"token":"' + token + '"}')
        return await blocking(sock.recv_json_packet, "44")

    @inline
    async def test_only_a_stored_key_opens_the_api_and_only_its_digest_is_kept(self) -> None:
        for key in (None, "nope", self.key + "x", self.key.replace("umoc_sk.", "umoc_sk.00")):
            code, body = await call(self.server, "PUT", "/api/server/users/u-1", key, {})
            self.assertEqual(code, 401, key)
            self.assertEqual(body["code"], "not_authenticated")

        def stored(txn: Any) -> list[Any]:
            return [tuple(r) for r in txn.execute("SELECT id, name, key_hash FROM server_keys").fetchall()]

        rows = await self.server.services.storage.db.run("test", stored)
        self.assertEqual(len(rows), 1)
        self.assertNotIn(self.key.rsplit(".", 1)[1], json.dumps(rows))
        code, _, err = await self.cli("create-server-key", "backend")
        self.assertEqual(code, 1)  # the name is taken
        self.assertIn("exists already", err)
        await self.cli_ok("delete-server-key", "backend")
        code, _ = await call(self.server, "PUT", "/api/server/users/u-1", self.key, {})
        self.assertEqual(code, 401)

    @inline
    async def test_upsert_mint_connect_exchange_and_revoke(self) -> None:
        code, made = await call(
            self.server,
            "PUT",
            "/api/server/users/u%2F42",
            self.key,
            {"username": "carol", "display_name": "Carol", "extra": {"plan": "pro"}},
        )
        self.assertEqual(code, 200, made)
        code, again = await call(self.server, "PUT", "/api/server/users/u%2F42", self.key, {"display_name": "Caro"})
        self.assertEqual((code, again), (200, made))
        profile = await self.server.services.storage.profiles.get(made["user_id"], made["user_id"])
        self.assertEqual((profile.username, profile.display_name), ("carol", "Caro"))
        code, body = await call(self.server, "PUT", "/api/server/users/other", self.key, {"username": "CAROL"})
        self.assertEqual((code, body["code"]), (409, "conflict"))
        code, body = await call(self.server, "POST", "/api/server/tokens", self.key, {"external_id": "x", "ttl": 300})
        self.assertEqual((code, body["code"]), (404, "not_found"))
        code, body = await call(self.server, "POST", "/api/server/tokens", self.key, {"external_id": "u/42", "ttl": 5})
        self.assertEqual((code, body["code"]), (400, "invalid_argument"))

        code, minted = await call(
            self.server, "POST", "/api/server/tokens", self.key, {"external_id": "u/42", "ttl": 300}
        )
        self.assertEqual(code, 200, minted)
        client = await self.connect({}, use_query=False, auth={"token": minted["token"]})
        hello = await client.expect("connection_successful")
        self.assertEqual(
            (hello["user_id"], hello["username"], hello["external_id"]), (made["user_id"], "carol", "u/42")
        )
        code, session = await self.server.post("/api/token/session", {"token": minted["token"]})
        self.assertEqual((code, session["user_id"]), (200, made["user_id"]))

        code, revoked = await call(self.server, "POST", "/api/server/users/u%2F42/revoke", self.key)
        self.assertEqual((code, revoked), (200, {"user_id": made["user_id"], "sessions_ended": 2}))
        await self.closed(client, "Your session was revoked")
        self.assertEqual((await self.refused(minted["token"]))["message"], "Invalid token")
        code, _ = await self.server.post("/api/token/session", {"token": minted["token"]})
        self.assertEqual(code, 401)
        code, fresh = await call(
            self.server, "POST", "/api/server/tokens", self.key, {"external_id": "u/42", "ttl": 300}
        )
        again = await self.connect({}, use_query=False, auth={"token": fresh["token"]})
        self.assertEqual((await again.expect("connection_successful"))["user_id"], made["user_id"])


for_each_backend(ServerApiMixin, AdminCase, globals())


class RevocationAcrossNodesTests(ClusterTestCase):
    @inline
    async def test_a_revocation_through_one_node_ends_the_users_sockets_on_both(self) -> None:
        a = await self.start_node(self.node_config())
        b = await self.start_node(self.node_config())
        key = await serverapi.create_server_key(a.services, Actor.operator("test", "cli"), NewServerKey("backend"))
        code, made = await call(a, "PUT", "/api/server/users/u-7", key, {"username": "dora"})
        self.assertEqual(code, 200)
        code, minted = await call(a, "POST", "/api/server/tokens", key, {"external_id": "u-7", "ttl": 600})
        sockets = []
        for node in (a, b):
            client = await self._token_client(node, minted["token"])
            sockets.append(client)
        self.assertTrue(a.services.hub.is_local(made["user_id"]) and b.services.hub.is_local(made["user_id"]))
        code, revoked = await call(b, "POST", "/api/server/users/u-7/revoke", key)
        self.assertEqual((code, revoked["sessions_ended"]), (200, 1))
        for client in sockets:
            self.assertEqual(
                await client.expect("session_status"), {"valid": False, "message": "Your session was revoked"}
            )
            await eventually(lambda c=client: not c.sio.connected)
        self.assertFalse(a.services.hub.is_local(made["user_id"]) or b.services.hub.is_local(made["user_id"]))
        # The token from before the revocation is refused on both nodes, and opens no session.
        sessions = await self._sessions(a)
        for node in (a, b):
            sock = await blocking(RawWebSocket, node.ws_url())
            self.addCleanup(blocking, sock.close)
            await blocking(sock.read_open)
            await blocking(sock.send, '40{"token":"' + minted["token"] + '"}')
            answer = await blocking(sock.recv_json_packet, "44")
            self.assertEqual(answer, {"message": "Invalid token", "data": {"code": "not_authenticated"}})
        self.assertEqual(await self._sessions(a), sessions)

    async def _sessions(self, node: Server) -> int:
        def count(txn: Any) -> int:
            return int(txn.scalar("SELECT COUNT(*) FROM sessions"))

        return await node.services.storage.db.run("test.sessions", count)

    async def _token_client(self, node: Server, token: str) -> Client:
        client = Client(node.url, {})
        self.clients.append(client)
        await blocking(client.connect, use_query=False, auth={"token": token})
        await client.expect("connection_successful")
        return client
