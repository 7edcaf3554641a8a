"""OIDC sign-in end to end: an OpenID provider on 127.0.0.1 (discovery, PKCE, a JWKS), the browser's redirects
followed by hand, the session from the callback's fragment used by python-socketio over the wire."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import treq

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.identity import OpenIdProvider
from tests.support.server import ServerTestCase, test_config
from umoc.config import Config

CALLBACK = "https://chat.example.test/api/oidc/callback"


class OidcTestsMixin:
    server: Any

    def setUp(self) -> Any:
        self.op = OpenIdProvider("umoc-web", "client-secret-1", CALLBACK)
        self.addCleanup(self.op.stop)
        return super().setUp()

    def config_for_test(self, data_dir: str) -> Config:
        return test_config(
            data_dir,
            auth={
                "oidc": {
                    "enabled": True,
                    "issuer": self.op.issuer,
                    "client_id": "umoc-web",
                    "client_secret": "client-secret-1",
                    "redirect_url": CALLBACK,
                }
            },
        )

    async def get(self, url: str, cookie: str | None = None) -> Any:
        headers = {"Cookie": cookie} if cookie else {}
        return await treq.get(url, headers=headers, allow_redirects=False, persistent=False)

    async def sign_in(self, tamper_state: bool = False, keep_cookie: bool = True) -> str:
        """The browser's way through: login, the provider, the callback; the final Location."""
        start = await self.get(self.server.url + "/api/oidc/login")
        self.assertEqual(start.code, 302)
        location = start.headers.getRawHeaders("location")[0]
        cookie = start.headers.getRawHeaders("set-cookie")[0]
        self.assertIn("HttpOnly; SameSite=Lax", cookie)
        self.assertIn("code_challenge_method=S256", location)
        at_provider = await self.get(location)
        self.assertEqual(at_provider.code, 302)
        back = urlsplit(at_provider.headers.getRawHeaders("location")[0])
        self.assertEqual(f"{back.scheme}://{back.netloc}{back.path}", CALLBACK)
        query = parse_qs(back.query)
        state = query["state"][0] + ("x" if tamper_state else "")
        callback = f"{self.server.url}/api/oidc/callback?code={query['code'][0]}&state={state}"
        done = await self.get(callback, cookie.split(";")[0] if keep_cookie else None)
        self.assertEqual(done.code, 302)
        return done.headers.getRawHeaders("location")[0]

    @inline
    async def test_code_flow_with_pkce_gives_a_session_the_socket_uses(self) -> None:
        response = await treq.get(self.server.url + "/api/oidc/config", persistent=False)
        self.assertEqual(json.loads(await response.text()), {"enabled": True, "provider": "127.0.0.1"})
        location = await self.sign_in()
        self.assertTrue(location.startswith("/#oidc="), location)
        blob = location.split("=", 1)[1]
        session = json.loads(base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4)))
        self.assertEqual(session["username"], "olive")
        client = await self.connect(session)
        hello = await client.expect("connection_successful")
        self.assertEqual(hello["user_id"], session["user_id"])
        # Signing in again is the same user.
        again = await self.sign_in()
        blob = again.split("=", 1)[1]
        self.assertEqual(
            json.loads(base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4)))["user_id"], hello["user_id"]
        )

    @inline
    async def test_a_wrong_state_a_lost_cookie_or_a_wrong_nonce_signs_nobody_in(self) -> None:
        for location in (await self.sign_in(tamper_state=True), await self.sign_in(keep_cookie=False)):
            self.assertEqual(
                unquote(location), "/#oidc_error=The sign-in expired or was started elsewhere; sign in again"
            )
        self.op.forced_nonce = "replayed"
        location = await self.sign_in()
        self.assertTrue(unquote(location).startswith("/#oidc_error=The sign-in provider's answer could not"))

        def users(txn: Any) -> int:
            return int(txn.scalar("SELECT COUNT(*) FROM users"))

        self.assertEqual(await self.server.services.storage.db.run("test", users), 0)


for_each_backend(OidcTestsMixin, ServerTestCase, globals())
