"""The served web client (issue 22, G14): no session token in any link, CSP ``connect-src`` the own origin."""

from __future__ import annotations

import re

from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from tests.support.web import exchange
from umoc.config import ConfigError, parse_config


def directives(policy: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        found[name] = sources
    return found


class ServedClientTests(NodeTestCase):
    use_clock = False

    @inline
    async def test_connect_src_is_the_servers_own_origin(self) -> None:
        for path in ("/", "/index.html", "/app.js"):
            response = await exchange(self.node.site, "GET", path)
            policy = directives(response.header("Content-Security-Policy") or "")
            # Not "ws:" or "wss:": those are any host.  'self' covers ws/wss to the page's own host (CSP 3).
            self.assertEqual(policy["connect-src"], ["'self'"], path)
            self.assertEqual(policy["default-src"], ["'self'"], path)

    @inline
    async def test_no_session_token_in_any_url_the_client_builds(self) -> None:
        for path in ("/", "/api.js", "/app.js", "/dom.js"):
            response = await exchange(self.node.site, "GET", path)
            self.assertEqual(response.code, 200, path)
            text = response.text()
            # The session is never turned into query parameters (downloads, avatars, anything)...
            self.assertIsNone(re.search(r"URLSearchParams\([^)]*token", text), path)
            self.assertNotIn("token=", text, path)
            # ...and no file address has a query at all: downloads fetch with headers and save a blob: URL.
            self.assertIsNone(re.search(r"/api/files/\$\{[^}]*\}\?", text), path)
        api = (await exchange(self.node.site, "GET", "/api.js")).text()
        self.assertIn("'X-Session-Token': session.token", api)
        app = (await exchange(self.node.site, "GET", "/app.js")).text()
        self.assertIn("URL.createObjectURL", api)
        self.assertIn("saveFile(file)", app)  # the download link's click goes through the blob


class ConfiguredConnectSrcTests(NodeTestCase):
    use_clock = False
    config_overrides = {"web_client": {"connect_src": ["wss://chat.example.com", "https://api.example.com:8443"]}}

    @inline
    async def test_configured_origins_are_added(self) -> None:
        response = await exchange(self.node.site, "GET", "/")
        policy = directives(response.header("Content-Security-Policy") or "")
        self.assertEqual(policy["connect-src"], ["'self'", "wss://chat.example.com", "https://api.example.com:8443"])

    def test_anything_but_an_origin_is_refused(self) -> None:
        for bad in ("*", "wss:", "wss://*.example.com", "wss://a.example; script-src *", "javascript:x", "wss://a/b"):
            with self.assertRaises(ConfigError, msg=bad) as caught:
                parse_config({"web_client": {"connect_src": [bad]}})
            self.assertIn("web_client.connect_src[0]", str(caught.exception))
        parse_config({"web_client": {"connect_src": ["ws://[::1]:8080", "https://a-b.example"]}})
