"""OIDC sign-in end to end: an OpenID provider on 127.0.0.1 (discovery, PKCE, a JWKS), the browser's redirects
followed by hand, the session from the callback's fragment used by python-socketio over the wire."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import treq

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.identity import OpenIdProvider
from tests.support.server import ServerTestCase, test_config
from umoc.config import Config

CALLBACK = "https://chat.example.test/api/oidc/callback"
#: With characters client_secret_basic must form-urlencode before base64 (RFC 6749 section 2.3.1).
SECRET = "client:secret+1 %/é"


class OidcTestsMixin:
    server: Any

    def setUp(self) -> Any:
        self.op = OpenIdProvider("umoc-web", SECRET, CALLBACK)
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
                    "client_secret": SECRET,
                    "redirect_url": CALLBACK,
                }
            },
            # A sign-in is two requests (login, callback) against ratelimits.login; some tests make six.
            ratelimits={"login": {"rate": 100, "per": "60s", "burst": 100}},
        )

    async def get(self, url: str, cookie: str | None = None) -> Any:
        headers = {"Cookie": cookie} if cookie else {}
        return await treq.get(url, headers=headers, allow_redirects=False, persistent=False)

    async def sign_in(self, tamper_state: bool = False, keep_cookie: bool = True, iss: str | None = None) -> str:
        """The browser's way through: login, the provider, the callback; the final Location.  ``iss``: the
        callback's ``iss`` instead of the provider's (``""``: none at all)."""
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
        given = {"code": query["code"][0], "state": state}
        if iss is None and "iss" in query:
            given["iss"] = query["iss"][0]
        elif iss:
            given["iss"] = iss
        callback = f"{self.server.url}/api/oidc/callback?{urlencode(given)}"
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
        # No token_endpoint_auth_methods_supported in the discovery document: OIDC Discovery's default, Basic.
        self.assertEqual(self.op.auth_used, ["client_secret_basic", "client_secret_basic"])
        self.assertEqual(self.op.userinfo_requests, 0)  # the names were in the ID token

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

        self.assertEqual(await self.users(), 0)

    async def users(self) -> int:
        def count(txn: Any) -> int:
            return int(txn.scalar("SELECT COUNT(*) FROM users"))

        return await self.server.services.storage.db.run("test.users", count)

    def session(self, location: str) -> dict[str, Any]:
        self.assertTrue(location.startswith("/#oidc="), unquote(location))
        blob = location.split("=", 1)[1]
        return json.loads(base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4)))

    async def display_name(self, user_id: int) -> str | None:
        profile = await self.server.services.storage.profiles.get(user_id, user_id)
        return profile.display_name

    @inline
    async def test_client_secret_post_when_the_provider_lists_it_alone_or_it_is_configured(self) -> None:
        self.op.auth_methods = ["client_secret_post", "private_key_jwt"]
        self.session(await self.sign_in())
        self.op.auth_methods = ["client_secret_basic", "client_secret_post"]
        oidc = self.server.services.oidc
        oidc._discovered_at = -1e12  # read the document again now
        self.session(await self.sign_in())
        oidc._config = replace(oidc._config, token_endpoint_auth_method="client_secret_post")
        self.session(await self.sign_in())
        self.assertEqual(self.op.auth_used, ["client_secret_post", "client_secret_basic", "client_secret_post"])

    @inline
    async def test_the_callbacks_iss_must_be_the_issuer_and_present_when_advertised(self) -> None:
        # Not advertised: an iss is still checked when the callback has one.
        location = await self.sign_in(iss="https://evil.example.test")
        self.assertEqual(
            unquote(location), "/#oidc_error=The sign-in did not come back from this server's provider; sign in again"
        )
        self.session(await self.sign_in(iss=self.op.issuer))
        self.assertEqual(len(self.op.auth_used), 1)
        self.op.iss_parameter = True
        self.server.services.oidc._discovered_at = -1e12
        for iss in ("", self.op.issuer + "/", "https://evil.example.test"):
            location = await self.sign_in(iss=iss)
            self.assertEqual(
                unquote(location),
                "/#oidc_error=The sign-in did not come back from this server's provider; sign in again",
                iss,
            )
        # The refused codes never reached the token endpoint.
        self.assertEqual(len(self.op.auth_used), 1)
        self.assertEqual(await self.users(), 1)
        self.session(await self.sign_in())  # the provider's own iss
        self.assertEqual(len(self.op.auth_used), 2)

    @inline
    async def test_names_missing_from_the_id_token_come_from_userinfo(self) -> None:
        self.op.names_in_id_token = False
        session = self.session(await self.sign_in())
        self.assertEqual(session["username"], "olive")
        self.assertEqual(await self.display_name(session["user_id"]), "Olive Oyl")
        self.assertEqual(self.op.userinfo_requests, 1)

    @inline
    async def test_a_userinfo_about_another_subject_signs_nobody_in(self) -> None:
        self.op.names_in_id_token = False
        self.op.userinfo_sub = "op-user-2"
        location = await self.sign_in()
        self.assertEqual(
            unquote(location), "/#oidc_error=The sign-in provider's answer could not be verified; sign in again"
        )
        self.assertEqual((self.op.userinfo_requests, await self.users()), (1, 0))

    @inline
    async def test_userinfo_failing_signs_in_with_the_id_tokens_names(self) -> None:
        self.op.names_in_id_token = False
        self.op.userinfo_code = 503
        session = self.session(await self.sign_in())
        self.assertTrue(session["username"].startswith("op-user-1_"), session["username"])
        self.assertIsNone(await self.display_name(session["user_id"]))


for_each_backend(OidcTestsMixin, ServerTestCase, globals())
