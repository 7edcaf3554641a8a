"""Configuration: defaults, the example file, Redis URLs, and one clear line per mistake."""

from __future__ import annotations

import os
import tempfile

from twisted.trial import unittest

from umoc.config import (
    Config,
    ConfigError,
    load_config,
    parse_config,
    parse_duration,
    parse_host_port,
    parse_redis_url,
    parse_size,
)

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
        self.assertIn('Error in configuration at \'sessions.ttl\': expected a duration like "30s" or "7d"', problems)
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

    def test_outbound_allow_list_takes_addresses_and_networks_never_names(self) -> None:
        config = parse_config({"outbound": {"allowed_hosts": ["127.0.0.1", "10.20.0.0/16", "fd00::/8"]}})
        self.assertEqual(config.outbound.allowed_hosts, ("127.0.0.1", "10.20.0.0/16", "fd00::/8"))
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                {
                    "outbound": {
                        "allowed_hosts": ["push.internal", "10.0.0.0/8"],
                        "max_answer_body": "100",
                        "max_answer_headers": "1G",
                    }
                }
            )
        paths = [p.split("'")[1] for p in caught.exception.problems]
        self.assertEqual(
            paths, ["outbound.allowed_hosts[0]", "outbound.max_answer_body", "outbound.max_answer_headers"]
        )

    def test_the_outbox_settings_are_checked_with_their_paths(self) -> None:
        config = parse_config({"feed": {"consumer_poll_interval": "2s", "consumer_lease": "1m"}})
        self.assertEqual((config.feed.consumer_poll_interval, config.feed.consumer_lease), (2, 60))
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                {
                    "feed": {"consumer_poll_interval": "10s", "consumer_lease": "20s", "consumer_batch": 0},
                    "push": {"max_attempts": 0, "backoff": "2m", "max_backoff": "1m"},
                }
            )
        paths = [p.split("'")[1] for p in caught.exception.problems]
        self.assertEqual(paths, ["feed.consumer_lease", "feed.consumer_batch", "push.max_attempts", "push.backoff"])

    def test_not_yaml_and_missing_file(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "bad.yaml")
        with open(path, "w") as f:
            f.write("server: [unclosed\n")
        with self.assertRaises(ConfigError):
            load_config(path)
        with self.assertRaises(ConfigError):
            load_config(path + ".missing")


class RedisUrlTests(unittest.TestCase):
    def test_parses_host_port_db_and_password(self) -> None:
        target = parse_redis_url("redis://:s%40cret@redis.example:6380/2")
        self.assertEqual((target.host, target.port, target.db, target.password), ("redis.example", 6380, 2, "s@cret"))
        self.assertEqual(parse_redis_url("unix:/run/redis.sock?db=3").path, "/run/redis.sock")

    def test_config_refuses_bad_redis_settings_with_their_paths(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"redis": {"url": "redis://host/notadb", "timeout": 0, "presence_ttl": "1s"}})
        paths = [p.split("'")[1] for p in caught.exception.problems]
        self.assertEqual(paths, ["redis.url", "redis.timeout", "redis.presence_ttl"])


class RedisSentinelConfigTests(unittest.TestCase):
    def test_sentinels_master_name_and_password_are_read(self) -> None:
        config = parse_config(
            {"redis": {"sentinels": ["10.0.0.1:26379", "[::1]:26380"], "master_name": "chat", "password": "pw"}}
        )
        self.assertEqual(config.redis.sentinels, ("10.0.0.1:26379", "[::1]:26380"))
        self.assertEqual((config.redis.master_name, config.redis.password), ("chat", "pw"))
        self.assertTrue(config.redis.enabled)
        self.assertEqual([parse_host_port(s) for s in config.redis.sentinels], [("10.0.0.1", 26379), ("::1", 26380)])

    def test_no_url_and_no_sentinels_is_one_node_alone(self) -> None:
        self.assertFalse(parse_config({}).redis.enabled)
        self.assertTrue(parse_config({"redis": {"url": "redis://127.0.0.1"}}).redis.enabled)
        self.assertEqual(parse_config({}).redis.master_name, "umoc")

    def test_url_and_sentinels_together_are_refused(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"redis": {"url": "redis://127.0.0.1", "sentinels": ["127.0.0.1:26379"]}})
        self.assertEqual(
            caught.exception.problems,
            ["Error in configuration at 'redis.sentinels': expected either redis.url or redis.sentinels"],
        )

    def test_bad_sentinel_addresses_empty_name_and_stray_password_are_refused_with_their_paths(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"redis": {"sentinels": ["10.0.0.1", "host:0", "h:26379"], "master_name": ""}})
        paths = [p.split("'")[1] for p in caught.exception.problems]
        self.assertEqual(paths, ["redis.sentinels[0]", "redis.sentinels[1]", "redis.master_name"])
        with self.assertRaises(ConfigError) as caught:
            parse_config({"redis": {"url": "redis://127.0.0.1", "password": "pw"}})
        self.assertIn("'redis.password': only with redis.sentinels", caught.exception.problems[0])
        with self.assertRaises(ConfigError) as caught:
            parse_config({"redis": {"sentinels": "127.0.0.1:26379"}})
        self.assertEqual(caught.exception.problems, ["Error in configuration at 'redis.sentinels': expected a list"])
