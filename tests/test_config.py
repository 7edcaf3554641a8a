"""Configuration: defaults, the example file, and one clear line per mistake."""

from __future__ import annotations

import os
import tempfile

from twisted.python import usage
from twisted.trial import unittest

from umoc.config import Config, ConfigError, load_config, parse_config, parse_duration, parse_size
from umoc.tap import Options, makeService

HERE = os.path.dirname(__file__)
EXAMPLE = os.path.join(HERE, "..", "etc", "umoc.yaml")


class ConfigTests(unittest.SynchronousTestCase):
    def test_no_file_means_embedded_defaults(self) -> None:
        config = load_config(None)
        self.assertEqual(config.server.listen, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(config.server.data_dir, "umoc-data")
        self.assertEqual(config.database.dsn, "")
        self.assertEqual(config.sessions.max_per_user, 3)
        self.assertEqual(config.sessions.ttl, 7 * 86400)

    def test_example_file_matches_the_defaults(self) -> None:
        self.assertEqual(load_config(EXAMPLE), Config())

    def test_durations_and_sizes(self) -> None:
        self.assertEqual(parse_duration("30s"), 30)
        self.assertEqual(parse_duration("7d"), 604800)
        self.assertEqual(parse_duration(1.5), 1.5)
        self.assertEqual(parse_size("25M"), 25 * 1024 * 1024)
        self.assertEqual(parse_size("512K"), 512 * 1024)
        with self.assertRaises(ValueError):
            parse_duration("soon")
        with self.assertRaises(ValueError):
            parse_size(True)

    def test_every_problem_is_reported_with_its_path(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                {"sessions": {"ttl": "forever", "max_per_usr": 3}, "bogus": 1, "engineio": {"max_payload": "x"}}
            )
        problems = caught.exception.problems
        self.assertIn("Error in configuration at 'sessions.ttl': expected a duration like \"30s\" or \"7d\"", problems)
        self.assertIn("Error in configuration at 'sessions.max_per_usr': unknown key", problems)
        self.assertIn("Error in configuration at 'bogus': unknown key", problems)
        self.assertEqual(len(problems), 4)

    def test_wrong_types_are_errors_not_coercions(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"sessions": {"max_per_user": True}, "server": {"listen": 8080}})
        self.assertEqual(len(caught.exception.problems), 2)

    def test_invalid_values_are_refused(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"database": {"dsn": "mysql://x"}})
        self.assertIn("database.dsn", str(caught.exception))

    def test_not_yaml_and_missing_file(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "bad.yaml")
        with open(path, "w") as f:
            f.write("server: [unclosed\n")
        with self.assertRaises(ConfigError):
            load_config(path)
        with self.assertRaises(ConfigError):
            load_config(path + ".missing")


class OptionsTests(unittest.TestCase):
    def test_overrides_replace_config_values(self) -> None:
        options = Options()
        options.parseOptions(["--config", EXAMPLE, "--listen", "tcp:0", "--data-dir", "/tmp/x"])
        self.assertEqual(options.config.server.listen, "tcp:0")
        self.assertEqual(options.config.server.data_dir, "/tmp/x")

    def test_bad_config_is_a_usage_error_naming_the_key(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "bad.yaml")
        with open(path, "w") as f:
            f.write("sessions:\n  ttl: forever\n")
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["--config", path])
        self.assertIn("sessions.ttl", str(caught.exception))

    def test_make_service_only_wires(self) -> None:
        options = Options()
        options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--data-dir", tempfile.mkdtemp()])
        service = makeService(options)
        self.addCleanup(service.node.services.storage.close)
        self.assertFalse(service.running)
        self.assertIsNone(service.port)

    def test_plugin_is_discoverable_by_twistd(self) -> None:
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins

        names = [p.tapname for p in getPlugins(IServiceMaker)]
        self.assertIn("umoc", names)
