"""The per-request access log is off unless ``server.access_log`` turns it on."""

from __future__ import annotations

import io

from twisted.internet.address import IPv4Address
from twisted.trial import unittest
from twisted.web import resource
from twisted.web.test.requesthelper import DummyRequest

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
