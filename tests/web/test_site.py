"""The Site: the access log (off unless ``server.access_log`` turns it on), routing, origins and CORS."""

from __future__ import annotations

import io

from twisted.internet.address import IPv4Address
from twisted.trial import unittest
from twisted.web import resource
from twisted.web.test.requesthelper import DummyRequest

from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from tests.support.web import exchange, request
from umoc.config import Config
from umoc.transport.gate import Gatekeeper
from umoc.web.accesslog import access_log_formatter
from umoc.web.site import UmocSite


def logged_lines(access_log: bool, uri: bytes = b"/healthz", forwarded_for: bytes | None = None) -> str:
    gate = Gatekeeper(trusted_proxies=("192.168.1.1",))
    site = UmocSite(resource.Resource(), access_log=access_log, log_formatter=access_log_formatter(gate))
    site.logFile = io.StringIO()
    request = DummyRequest([b"healthz"])
    request.client = IPv4Address("TCP", "192.168.1.1", 40000)
    if forwarded_for is not None:
        request.requestHeaders.setRawHeaders(b"x-forwarded-for", [forwarded_for])
    request.method = b"GET"
    request.uri = uri
    request.clientproto = b"HTTP/1.1"
    request.sentLength = 0
    request.code = 200
    site.log(request)
    return site.logFile.getvalue()


class AccessLogTests(unittest.TestCase):
    def test_off_by_default(self) -> None:
        self.assertFalse(Config().server.access_log)
        self.assertEqual(logged_lines(False), "")

    def test_on_writes_one_line_per_request(self) -> None:
        self.assertIn('"GET /healthz HTTP/1.1"', logged_lines(True))

    def test_session_tokens_in_the_query_are_never_logged(self) -> None:
        line = logged_lines(True, b"/socket.io/?EIO=4&transport=polling&sessionID=s3cr3t-id&token=s3cr3t-token&t=x1")
        self.assertNotIn("s3cr3t", line)
        self.assertIn("/socket.io/?EIO=4&transport=polling&sessionID=[redacted]&token=[redacted]&t=x1", line)
        self.assertNotIn("s3cr3t", logged_lines(True, b"/api/files/f?token=s3cr3t&sessionID=s3cr3t"))

    def test_the_client_address_is_the_one_behind_a_trusted_proxy(self) -> None:
        self.assertTrue(logged_lines(True, forwarded_for=b"203.0.113.9").startswith('"203.0.113.9"'))
        self.assertTrue(logged_lines(True).startswith('"192.168.1.1"'))


class RoutingTests(NodeTestCase):
    """The node's one Site, rendered in-process: JSON for unknown paths, origins checked before CORS."""

    use_clock = False
    config_overrides = {"server": {"allowed_origins": ["https://chat.example"]}, "web_client": {"enabled": False}}

    @inline
    async def test_unknown_paths_answer_json_404(self) -> None:
        for path in ("/nope", "/api/nope", "/api/nope/deeper"):
            response = await request(self.node.site, "GET", path)
            self.assertEqual((response.code, response.json()), (404, {"error": "Not found", "code": "not_found"}), path)
            self.assertEqual(response.header("Content-Type"), "application/json")

    @inline
    async def test_api_from_a_foreign_origin_is_403_before_any_handler(self) -> None:
        response = await request(
            self.node.site,
            "POST",
            "/api/register",
            {"username": "alice", "password": "x" * 12},
            {"Origin": "https://evil.example"},
        )
        self.assertEqual((response.code, response.json()), (403, {"error": "Origin not allowed", "code": "forbidden"}))
        self.assertIsNone(await self.storage.users.by_username("alice"))

    @inline
    async def test_preflight_from_an_allowed_origin_is_answered_with_cors_headers(self) -> None:
        response = await request(
            self.node.site,
            "OPTIONS",
            "/api/login",
            headers={
                "Origin": "https://chat.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(response.header("Access-Control-Allow-Origin"), "https://chat.example")
        self.assertIn("POST", response.header("Access-Control-Allow-Methods"))
        self.assertEqual(response.header("Access-Control-Allow-Headers"), "content-type")

    @inline
    async def test_wrong_method_is_405_naming_the_allowed_one(self) -> None:
        response = await request(self.node.site, "GET", "/api/login")
        self.assertEqual(
            (response.code, response.json()), (405, {"error": "Method not allowed", "code": "invalid_argument"})
        )
        self.assertEqual(response.header("Allow"), "POST")


class EveryResourceAnswersHeadTests(NodeTestCase):
    """Issue 22 G9: ``HEAD`` (and any other method) on any resource of the Site is a clean 4xx, never a 500."""

    use_clock = False

    def paths(self) -> list[str]:
        """Every path of the Site's tree, its folders with and without the trailing slash, plus unknown names."""
        found: list[str] = ["/", "/nope"]

        def walk(prefix: str, node: resource.Resource) -> None:
            for name, child in node.children.items():
                path = f"{prefix}/{name.decode()}"
                found.extend([path, path + "/", path + "/nope"])
                walk(path, child)

        walk("", self.node.site.resource)
        return sorted(set(found))

    @inline
    async def test_head_on_every_resource_is_a_clean_answer(self) -> None:
        paths = self.paths()
        self.assertIn("/api/admin", paths)
        for path in paths:
            response = await exchange(self.node.site, "HEAD", path)
            self.assertIn(response.code, (200, 400, 401, 403, 404, 405), path)

    @inline
    async def test_unauthenticated_head_on_the_api_folders_is_json_404(self) -> None:
        for path in ("/api", "/api/admin"):
            for method in ("HEAD", "GET", "POST", "DELETE"):
                response = await exchange(self.node.site, method, path)
                self.assertEqual(response.code, 404, (method, path))
                self.assertEqual(response.header("Content-Type"), "application/json")

    @inline
    async def test_no_method_on_any_resource_is_a_server_error(self) -> None:
        for path in self.paths():
            for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
                response = await exchange(self.node.site, method, path)
                # 501 is the honest answer to a method twisted.web does not implement for a static file.
                self.assertTrue(response.code < 500 or response.code == 501, (method, path, response.code))
