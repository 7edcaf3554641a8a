"""OIDC sign-in against a real OpenID provider: the certified `oidc-provider` npm package under Node.

tests/js/oidc_provider.mjs starts it on 127.0.0.1 port 0 with one client for
UMOC (code flow, PKCE required, ``client_secret_basic`` unless a case
registers ``client_secret_post`` or a public client) and its development
login and consent pages.  A small browser (`tests.support.oidcprovider`)
walks the whole way with one cookie jar: UMOC's ``/api/oidc/login``, the
provider's authorization endpoint, its login form, its consent form, back to
UMOC's callback, and the session in the final fragment, which
python-socketio then uses over a real WebSocket.

UMOC's public address is ``http://umoc.test`` (the redirect URL registered
at the provider, fixed before either server has a port); the browser maps
that name to where the test server listens, as DNS or a proxy would.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.oidcprovider import MISSING, Browser, NodeOpenIdProvider, Page
from tests.support.server import ServerTestCase, test_config
from umoc.config import Config

PUBLIC = "http://umoc.test"
CALLBACK = PUBLIC + "/api/oidc/callback"
#: With characters client_secret_basic must form-urlencode before base64 (RFC 6749 section 2.3.1).
CLIENT_ID, CLIENT_SECRET = "umoc-web", "a-client-secret:for the+tests%"


def fragment_session(location: str) -> dict[str, Any]:
    """The session in ``.../#oidc=<base64url JSON>``."""
    blob = urlsplit(location).fragment.removeprefix("oidc=")
    return json.loads(base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4)))


class RealProviderCase(ServerTestCase):
    """A server whose ``auth.oidc`` names oidc-provider, started first; a browser; the way through."""

    skip = MISSING
    #: Empty: a public client (PKCE alone, no secret at the token endpoint).
    client_secret = CLIENT_SECRET
    #: tests/js/oidc_provider.mjs's OPTIONS: how its client is registered, where the names travel.
    provider_options: dict[str, Any] = {}
    #: ``auth.oidc.token_endpoint_auth_method``.
    auth_method = "auto"

    @inline
    async def setUp(self) -> None:
        self.op = NodeOpenIdProvider(CLIENT_ID, self.client_secret, CALLBACK, self.provider_options)
        self.addCleanup(self.op.stop)
        await self.op.start()
        await super().setUp()
        self.browser = Browser({"umoc.test": f"127.0.0.1:{self.server.port}"})

    def config_for_test(self, data_dir: str) -> Config:
        return test_config(
            data_dir,
            auth={
                "oidc": {
                    "enabled": True,
                    "issuer": self.op.issuer,
                    "client_id": CLIENT_ID,
                    "client_secret": self.client_secret,
                    "redirect_url": CALLBACK,
                    "token_endpoint_auth_method": self.auth_method,
                }
            },
        )

    async def at_provider(self, page: Page, login: str, prompts: list[str], stop_at: str = PUBLIC + "/#") -> Page:
        """Fill in the provider's forms (login, then consent) until it sends the browser back to UMOC (to a URL
        under ``stop_at``, not followed)."""
        while page.location is None:
            self.assertEqual(page.code, 200, page.body[:500])
            action, fields = page.forms[0]
            prompts.append(fields["prompt"])
            if fields["prompt"] == "login":
                fields = {**fields, "login": login, "password": "anything: development interactions"}
            page = await self.browser.open(action, fields)
            page = await self.browser.follow(page.location or "", stop_at=stop_at)
        return page

    async def sign_in(self, login: str = "olive") -> tuple[str, list[str]]:
        """The whole way from UMOC's login link: the final Location (``/#oidc=`` or ``/#oidc_error=``), and the
        provider's pages on the way (``login``, ``consent``)."""
        prompts: list[str] = []
        page = await self.browser.follow(PUBLIC + "/api/oidc/login", stop_at=PUBLIC + "/#")
        page = await self.at_provider(page, login, prompts)
        assert page.location is not None
        return page.location, prompts

    async def users(self) -> int:
        def count(txn: Any) -> int:
            return int(txn.scalar("SELECT COUNT(*) FROM users"))

        return await self.server.services.storage.db.run("test.users", count)


class RealProviderTestsMixin:
    browser: Browser
    op: NodeOpenIdProvider
    server: Any

    @inline
    async def test_code_flow_with_pkce_at_oidc_provider_gives_a_session_a_socket_uses(self) -> None:
        location, prompts = await self.sign_in()
        self.assertEqual(prompts, ["login", "consent"])
        self.assertTrue(location.startswith(PUBLIC + "/#oidc="), unquote(location))
        self.assertNotIn("oidc_state", {cookie.name for cookie in self.browser.jar})  # the callback forgot it
        session = fragment_session(location)
        self.assertEqual(session["username"], "olive")
        profile = await self.server.services.storage.profiles.get(session["user_id"], session["user_id"])
        self.assertEqual(profile.display_name, "Olive")

        client = await self.connect(session)
        hello = await client.expect("connection_successful")
        self.assertEqual((hello["user_id"], hello["username"]), (session["user_id"], "olive"))
        pong = await client.call("ping", client.with_session(timestamp=1636750000000))
        self.assertEqual(pong["timestamp"], 1636750000000)
        # No UMOC password, so no TOTP here: a second factor is the provider's business.
        headers = {"X-Session-ID": session["sessionID"], "X-Session-Token": session["token"]}
        code, body = await self.server.post("/api/account/totp/setup", {}, headers=headers)
        self.assertEqual((code, body["code"]), (403, "forbidden"))

        # The provider remembers the browser and the consent: straight back, the same user, a new session.
        location, prompts = await self.sign_in()
        self.assertEqual(prompts, [])
        again = fragment_session(location)
        self.assertEqual(again["user_id"], session["user_id"])
        self.assertNotEqual(again["sessionID"], session["sessionID"])
        # Another account at the provider is another user.
        self.browser.jar.clear()
        other = fragment_session((await self.sign_in("popeye"))[0])
        self.assertEqual(other["username"], "popeye")
        self.assertEqual(await self.users(), 2)
        # The discovery document lists client_secret_basic: UMOC sends the secret in the Authorization header.
        expected = "client_secret_basic" if self.client_secret else "none"
        self.assertEqual(self.op.token_requests, [(expected, 200)] * 3)

    @inline
    async def test_the_provider_requires_pkce_and_umoc_sends_it(self) -> None:
        start = await self.browser.open(PUBLIC + "/api/oidc/login")
        assert start.location is not None
        query = parse_qs(urlsplit(start.location).query)
        self.assertEqual(query["code_challenge_method"], ["S256"])
        without = {key: values[0] for key, values in query.items() if not key.startswith("code_challenge")}
        refused = await self.browser.follow(
            start.location.split("?")[0] + "?" + urlencode(without), stop_at=PUBLIC + "/api/oidc/callback"
        )
        assert refused.location is not None
        answer = parse_qs(urlsplit(refused.location).query)
        self.assertEqual(answer["error"], ["invalid_request"])
        self.assertIn("requires PKCE", answer["error_description"][0])
        # The same request with UMOC's challenge goes on to the login page.
        page = await self.browser.follow(start.location, stop_at=PUBLIC)
        self.assertEqual(page.forms[0][1]["prompt"], "login")

    @inline
    async def test_declining_at_the_provider_signs_nobody_in(self) -> None:
        page = await self.browser.follow(PUBLIC + "/api/oidc/login", stop_at=PUBLIC + "/#")
        abort = [link for link in page.links if link.endswith("/abort")]
        page = await self.browser.follow(abort[0], stop_at=PUBLIC + "/#")
        self.assertEqual(
            unquote(page.location or ""), PUBLIC + "/#oidc_error=The sign-in provider answered: access_denied"
        )
        self.assertEqual(await self.users(), 0)

    @inline
    async def test_a_code_is_good_once(self) -> None:
        page = await self.browser.follow(PUBLIC + "/api/oidc/login", stop_at=PUBLIC + "/#")
        state_cookie = next(cookie for cookie in self.browser.jar if cookie.name == "oidc_state")
        page = await self.at_provider(page, "olive", [])
        callback = page.url  # the last URL followed: UMOC's callback with the provider's code
        self.assertTrue(callback.startswith(CALLBACK + "?"), callback)
        self.assertIn("code", parse_qs(urlsplit(callback).query))
        session = fragment_session(page.location or "")
        # The same callback again, with the state cookie put back: the provider refuses the spent code.
        self.browser.jar.set_cookie(state_cookie)
        replayed = await self.browser.open(callback)
        self.assertEqual(
            unquote(replayed.location or ""),
            PUBLIC + "/#oidc_error=The sign-in provider did not confirm the sign-in; sign in again",
        )
        self.assertEqual(await self.users(), 1)
        client = await self.connect(session)
        self.assertEqual((await client.expect("connection_successful"))["user_id"], session["user_id"])

    @inline
    async def test_a_callback_with_a_wrong_or_no_iss_is_refused_before_the_code_is_spent(self) -> None:
        page = await self.browser.follow(PUBLIC + "/api/oidc/login", stop_at=CALLBACK)
        state_cookie = next(cookie for cookie in self.browser.jar if cookie.name == "oidc_state")
        page = await self.at_provider(page, "olive", [], stop_at=CALLBACK)
        callback = page.location or ""
        query = {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}
        # oidc-provider advertises authorization_response_iss_parameter_supported and sends iss (RFC 9207).
        self.assertEqual(query["iss"], self.op.issuer)
        for iss in ("https://attacker.example.test", None):
            given = {key: value for key, value in query.items() if key != "iss"}
            if iss is not None:
                given["iss"] = iss
            self.browser.jar.set_cookie(state_cookie)
            refused = await self.browser.open(CALLBACK + "?" + urlencode(given))
            self.assertEqual(
                unquote(refused.location or ""),
                PUBLIC + "/#oidc_error=The sign-in did not come back from this server's provider; sign in again",
            )
        self.assertEqual(await self.users(), 0)
        # Neither refusal sent the code to a token endpoint: with the provider's own iss it is still good.
        self.browser.jar.set_cookie(state_cookie)
        done = await self.browser.open(callback)
        self.assertEqual(fragment_session(done.location or "")["username"], "olive")


for_each_backend(RealProviderTestsMixin, RealProviderCase, globals())


class SecretPostTestsMixin:
    """The provider's client registered with ``client_secret_post``, UMOC told so
    (``auth.oidc.token_endpoint_auth_method``); the discovery document lists basic and post."""

    provider_options = {"token_endpoint_auth_method": "client_secret_post"}
    auth_method = "client_secret_post"

    @inline
    async def test_client_secret_post_when_configured_else_basic(self) -> None:
        location, _ = await self.sign_in()
        self.assertEqual(fragment_session(location)["username"], "olive")
        self.assertEqual(self.op.token_requests, [("client_secret_post", 200)])
        # Left to choose, UMOC takes client_secret_basic: oidc-provider lists it (with post), and takes either
        # from a client registered with one of them (providers that hold a client to its registered method
        # refuse this one: then the configuration key is the fix).
        oidc = self.server.services.oidc
        oidc._config = replace(oidc._config, token_endpoint_auth_method="auto")
        self.browser.jar.clear()
        location, _ = await self.sign_in("popeye")
        self.assertEqual(fragment_session(location)["username"], "popeye")
        self.assertEqual(self.op.token_requests[1:], [("client_secret_basic", 200)])


for_each_backend(SecretPostTestsMixin, RealProviderCase, globals())


class UserinfoTestsMixin:
    """oidc-provider's default (conformIdTokenClaims): the ID token of a code flow has ``sub`` alone, the names
    are at the userinfo endpoint."""

    provider_options = {"names_in_id_token": False}

    @inline
    async def test_names_the_id_token_lacks_come_from_userinfo(self) -> None:
        location, _ = await self.sign_in("wimpy")
        session = fragment_session(location)
        self.assertEqual(session["username"], "wimpy")
        profile = await self.server.services.storage.profiles.get(session["user_id"], session["user_id"])
        self.assertEqual(profile.display_name, "Wimpy")


for_each_backend(UserinfoTestsMixin, RealProviderCase, globals())


class PublicClientTestsMixin:
    """A client registered without a secret (``token_endpoint_auth_method: none``): PKCE alone proves the
    code's redeemer started the sign-in."""

    client_secret = ""

    @inline
    async def test_a_public_client_signs_in_with_pkce_alone(self) -> None:
        location, prompts = await self.sign_in()
        self.assertEqual(prompts, ["login", "consent"])
        session = fragment_session(location)
        client = await self.connect(session)
        self.assertEqual((await client.expect("connection_successful"))["username"], "olive")
        self.assertEqual(self.op.token_requests, [("none", 200)])


for_each_backend(PublicClientTestsMixin, RealProviderCase, globals())
