"""CORS over real HTTP: headers for allowed origins on polling and the API, preflights, foreign origins refused."""

from __future__ import annotations

import treq

from tests.support.deferreds import inline
from tests.support.rawclient import Polling
from tests.support.server import ServerTestCase


class CorsTests(ServerTestCase):
    config_overrides = {"server": {"allowed_origins": ["https://chat.example"]}}

    @inline
    async def test_allowed_origin_gets_cors_headers_on_polling_and_api(self) -> None:
        origin = {"Origin": ["https://chat.example"]}
        polling = Polling(self.server.url)
        response = await polling.request("GET", headers=origin)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Origin"), ["https://chat.example"])
        self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Credentials"), ["true"])
        await response.text()
        await self.server.register("alice")
        response = await treq.post(
            self.server.url + "/api/login",
            headers=origin,
            persistent=False,
            json={"username": "alice", "password": "correct horse battery"},
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Origin"), ["https://chat.example"])
        await response.text()

    @inline
    async def test_preflight_is_answered_for_allowed_origins_only(self) -> None:
        asked = {
            "Origin": ["https://chat.example"],
            "Access-Control-Request-Method": ["POST"],
            "Access-Control-Request-Headers": ["content-type"],
        }
        for path in ("/socket.io/?EIO=4&transport=polling", "/api/login"):
            response = await treq.request("OPTIONS", self.server.url + path, headers=asked, persistent=False)
            self.assertEqual(response.code, 204, path)
            self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Origin"), ["https://chat.example"])
            self.assertIn("POST", response.headers.getRawHeaders("Access-Control-Allow-Methods")[0])
            self.assertEqual(response.headers.getRawHeaders("Access-Control-Allow-Headers"), ["content-type"])
            await response.text()
            evil = {**asked, "Origin": ["https://evil.example"]}
            response = await treq.request("OPTIONS", self.server.url + path, headers=evil, persistent=False)
            self.assertEqual(response.code, 403, path)
            self.assertIsNone(response.headers.getRawHeaders("Access-Control-Allow-Origin"))
            await response.text()

    @inline
    async def test_polling_handshake_from_a_foreign_origin_is_forbidden(self) -> None:
        response = await Polling(self.server.url).request("GET", headers={"Origin": ["https://evil.example"]})
        self.assertEqual(response.code, 403)
        self.assertEqual(await response.json(), {"code": 4, "message": "Forbidden"})
