"""The per-request access log is off unless ``server.access_log`` turns it on."""

from __future__ import annotations

import io

from twisted.trial import unittest
from twisted.web import resource
from twisted.web.test.requesthelper import DummyRequest

from umoc.config import Config
from umoc.web.site import UmocSite


def logged_lines(access_log: bool) -> str:
    site = UmocSite(resource.Resource(), access_log=access_log)
    site.logFile = io.StringIO()
    request = DummyRequest([b"healthz"])
    request.method = b"GET"
    request.uri = b"/healthz"
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
