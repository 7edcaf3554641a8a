"""The web client's static files: served at ``/`` with a strict CSP, nothing else, switchable off."""

from __future__ import annotations

import treq

from tests.support.deferreds import inline
from tests.support.server import ServerTestCase
from umoc.webclient.resource import CONTENT_SECURITY_POLICY, STATIC_DIR


class WebClientResourceTests(ServerTestCase):
    async def get(self, path: str, **kwargs: object) -> tuple[object, bytes]:
        response = await treq.get(self.server.url + path, persistent=False, **kwargs)
        return response, await response.content()

    @inline
    async def test_index_at_root_with_security_headers(self) -> None:
        response, body = await self.get("/")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, (STATIC_DIR / "index.html").read_bytes())
        headers = response.headers
        self.assertEqual(headers.getRawHeaders("content-type"), ["text/html; charset=utf-8"])
        self.assertEqual(headers.getRawHeaders("content-security-policy"), [CONTENT_SECURITY_POLICY])
        self.assertEqual(headers.getRawHeaders("x-content-type-options"), ["nosniff"])
        self.assertEqual(headers.getRawHeaders("referrer-policy"), ["no-referrer"])
        self.assertIn("frame-ancestors 'none'", CONTENT_SECURITY_POLICY)

    @inline
    async def test_static_files_with_their_types_and_revalidation(self) -> None:
        expected = {
            "/index.html": "text/html; charset=utf-8",
            "/app.js": "text/javascript; charset=utf-8",
            "/api.js": "text/javascript; charset=utf-8",
            "/style.css": "text/css; charset=utf-8",
            "/socket.io.min.js": "text/javascript; charset=utf-8",
            "/socket.io-client.LICENSE": "text/plain; charset=utf-8",
            "/icon.svg": "image/svg+xml",
        }
        for path, kind in expected.items():
            response, _ = await self.get(path)
            self.assertEqual((path, response.code), (path, 200))
            self.assertEqual(response.headers.getRawHeaders("content-type"), [kind], path)
        response, _ = await self.get("/app.js")
        etag = response.headers.getRawHeaders("etag")[0]
        again, body = await self.get("/app.js", headers={"If-None-Match": etag})
        self.assertEqual((again.code, body), (304, b""))

    @inline
    async def test_only_the_files_themselves(self) -> None:
        for path in ("/nope.js", "/app.js/x", "/static/app.js", "/../setup.py", "/__init__.py", "/resource.py"):
            response, body = await self.get(path)
            self.assertEqual((path, response.code), (path, 404))
        response = await treq.post(self.server.url + "/app.js", data=b"x", persistent=False)
        self.assertEqual(response.code, 405)
        await response.content()

    @inline
    async def test_the_other_paths_are_untouched(self) -> None:
        response, body = await self.get("/healthz")
        self.assertEqual(response.code, 200)
        response, _ = await self.get("/metrics")
        self.assertEqual(response.code, 200)
        self.assertNotIn("text/html", response.headers.getRawHeaders("content-type")[0])
        response, _ = await self.get("/api/nope")
        self.assertEqual(response.code, 404)
        self.assertEqual(response.headers.getRawHeaders("content-type")[0].split(";")[0], "application/json")


class WebClientDisabledTests(ServerTestCase):
    config_overrides = {"web_client": {"enabled": False}}

    @inline
    async def test_root_is_the_json_404_when_disabled(self) -> None:
        for path in ("/", "/app.js"):
            response = await treq.get(self.server.url + path, persistent=False)
            self.assertEqual(response.code, 404)
            self.assertEqual(await response.json(), {"error": "Not found", "code": "not_found"})
