"""``umoc.logs``: the JSON line format and the level filter."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from umoc.logs import json_line, log_observer


class JsonLineTests(unittest.SynchronousTestCase):
    def emit(self, level: str = "info", fmt: str = "json") -> tuple[Logger, io.StringIO]:
        out = io.StringIO()
        publisher = LogPublisher(log_observer(level, fmt, out))
        return Logger(namespace="umoc.test", observer=publisher), out

    def test_stable_keys_first_then_structured_fields(self) -> None:
        log, out = self.emit()
        log.info("Login succeeded for {username}", username="alice", user_id=7, client="203.0.113.7")
        record = json.loads(out.getvalue())
        self.assertEqual(list(record)[:4], ["time", "level", "namespace", "message"])
        self.assertEqual(record["message"], "Login succeeded for alice")
        self.assertEqual((record["level"], record["namespace"]), ("info", "umoc.test"))
        self.assertEqual((record["user_id"], record["client"]), (7, "203.0.113.7"))
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")

    def test_fields_named_like_secrets_are_redacted_and_stable_keys_are_not_shadowed(self) -> None:
        log, out = self.emit()
        log.info("x", token="abc123", password="hunter22", namespace="mine", other=object())
        text = out.getvalue()
        self.assertNotIn("abc123", text)
        self.assertNotIn("hunter22", text)
        record = json.loads(text)
        self.assertEqual((record["namespace"], record["_namespace"]), ("umoc.test", "mine"))
        self.assertIsInstance(record["other"], str)

    def test_a_failure_carries_its_traceback_on_one_line(self) -> None:
        log, out = self.emit()
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.failure("Boom", Failure())
        self.assertEqual(out.getvalue().count("\n"), 1)
        record = json.loads(out.getvalue())
        self.assertEqual(record["level"], "critical")
        self.assertIn("ZeroDivisionError", record["traceback"])

    def test_level_filters_less_severe_events(self) -> None:
        log, out = self.emit(level="warn")
        log.info("hidden")
        log.debug("hidden")
        log.warn("shown")
        log.error("shown too")
        self.assertEqual([json.loads(line)["message"] for line in out.getvalue().splitlines()], ["shown", "shown too"])

    def test_text_format_is_twisteds(self) -> None:
        log, out = self.emit(level="debug", fmt="text")
        log.debug("hello {who}", who="you")
        self.assertIn("[umoc.test#debug] hello you", out.getvalue())

    def test_json_line_without_a_time(self) -> None:
        self.assertEqual(json.loads(json_line({"log_format": "x", "log_level": LogLevel.warn}))["level"], "warn")
