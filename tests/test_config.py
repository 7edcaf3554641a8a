"""Configuration: defaults, the example file, Redis URLs, and one clear line per mistake."""

from __future__ import annotations

import os
import re
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
    with_overrides,
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

    def test_example_file_matches_the_defaults_but_for_the_data_directory(self) -> None:
        """The example is the production file: its data_dir is the unit's and the image's, not ./umoc-data."""
        self.assertEqual(load_config(EXAMPLE), with_overrides(Config(), server={"data_dir": "/var/lib/umoc"}))

    def test_the_unit_the_image_and_the_example_configurations_name_one_data_directory(self) -> None:
        etc = os.path.join(HERE, "..", "etc")
        with open(os.path.join(etc, "umoc.service"), encoding="utf-8") as f:
            unit = re.search(r"^ExecStart=.* --data-dir (\S+)", f.read(), re.MULTILINE)
        with open(os.path.join(HERE, "..", "Dockerfile"), encoding="utf-8") as f:
            dockerfile = f.read()
        image = re.search(r"^ENV UMOC_DATA_DIR=(\S+)", dockerfile, re.MULTILINE)
        command = re.search(r'"--data-dir", "([^"]+)"', dockerfile)
        assert unit is not None and image is not None and command is not None
        found = {
            "unit": unit.group(1),
            "image": image.group(1),
            "image command": command.group(1),
            "example": load_config(EXAMPLE).server.data_dir,
            "compose": load_config(os.path.join(etc, "umoc.compose.yaml")).server.data_dir,
        }
        self.assertEqual(found, dict.fromkeys(found, "/var/lib/umoc"))

    def test_trusted_networks_are_addresses_or_networks(self) -> None:
        config = parse_config({"ratelimits": {"trusted_networks": ["10.0.0.0/8", "203.0.113.7", "2001:db8::/32"]}})
        self.assertEqual(config.ratelimits.trusted_networks, ("10.0.0.0/8", "203.0.113.7", "2001:db8::/32"))
        with self.assertRaises(ConfigError) as caught:
            parse_config({"ratelimits": {"trusted_networks": ["10.0.0.0/8", "office.example.com"]}})
        self.assertEqual(
            caught.exception.problems,
            [
                "Error in configuration at 'ratelimits.trusted_networks[1]': "
                'expected an IP address or network like "10.0.0.0/8"'
            ],
        )

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

    def test_the_community_settings_have_defaults_and_are_checked(self) -> None:
        config = load_config(None)
        self.assertEqual(
            (config.contacts.require_friendship, config.groups.public_creation, config.group_member_cap),
            (True, "all", 256),
        )
        # groups.max_members is DESIGN's name; messages.max_group_members the older one it overrides.
        config = parse_config({"groups": {"max_members": 50}, "messages": {"max_group_members": 10}})
        self.assertEqual(config.group_member_cap, 50)
        self.assertEqual(parse_config({"messages": {"max_group_members": 10}}).group_member_cap, 10)
        for bad, paths in (
            ({"contacts": {"require_friendship": "no"}}, ("contacts.require_friendship",)),
            (
                {"groups": {"public_creation": "some", "max_members": -1}},
                ("groups.public_creation", "groups.max_members"),
            ),
        ):
            with self.assertRaises(ConfigError) as caught:
                parse_config(bad)
            problems = "\n".join(caught.exception.problems)
            for path in paths:
                self.assertIn(path, problems)

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


class SecretFileTests(unittest.SynchronousTestCase):
    """``*_file`` keys: a secret read from a file (Docker secrets, systemd credentials), not the YAML."""

    def secret(self, text: str) -> str:
        path = os.path.join(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_each_secret_is_read_from_its_file_without_the_trailing_newline(self) -> None:
        config = parse_config(
            {
                "database": {"dsn_file": self.secret("postgresql://umoc:p%40ss@db/umoc\n")},
                "metrics": {"token_file": self.secret("metrics-token\r\n")},
                "redis": {"url_file": self.secret("redis://:pw@redis:6379/0")},
                "webhooks": [
                    {
                        "url": "https://hooks.example",
                        "secret_file": self.secret("s" * 20 + "\n"),
                        "events": ["user.registered"],
                    }
                ],
            }
        )
        self.assertEqual(config.database.dsn, "postgresql://umoc:p%40ss@db/umoc")
        self.assertEqual(config.metrics.token, "metrics-token")
        self.assertEqual(config.redis.url, "redis://:pw@redis:6379/0")
        self.assertEqual(config.webhooks[0].secret, "s" * 20)

    def test_two_secrets_of_one_section_are_both_read_from_their_files(self) -> None:
        config = parse_config(
            {
                "database": {
                    "dsn_file": self.secret("postgresql://umoc:a@db1/umoc\n"),
                    "read_dsn_file": self.secret("postgresql://umoc:b@db2/umoc\n"),
                }
            }
        )
        self.assertEqual(config.database.dsn, "postgresql://umoc:a@db1/umoc")
        self.assertEqual(config.database.read_dsn, "postgresql://umoc:b@db2/umoc")

    def test_a_replica_needs_postgresql_on_both_sides_and_a_lag_bound_above_the_measure(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"database": {"read_dsn": "postgresql://db2/umoc", "read_max_lag": "1s"}})
        self.assertEqual(
            caught.exception.problems,
            [
                "Error in configuration at 'database.read_dsn': a replica needs a PostgreSQL database.dsn"
                " (SQLite has none)",
                "Error in configuration at 'database.read_max_lag': expected at least 2s (the replica's position"
                " is measured once a second)",
            ],
        )
        with self.assertRaises(ConfigError) as caught:
            parse_config({"database": {"dsn": "postgresql://db1/umoc", "read_dsn": "sqlite:/tmp/x"}})
        self.assertEqual([p.split("'")[1] for p in caught.exception.problems], ["database.read_dsn"])
        config = parse_config({"database": {"dsn": "postgresql://db1/umoc", "read_dsn": "postgresql://db2/umoc"}})
        self.assertEqual((config.database.read_dsn, config.database.read_max_lag), ("postgresql://db2/umoc", 5))

    def test_a_secret_read_from_a_file_is_checked_like_one_written_inline(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"database": {"dsn_file": self.secret("mysql://nope\n")}})
        self.assertEqual([p.split("'")[1] for p in caught.exception.problems], ["database.dsn"])

    def test_both_a_secret_and_its_file_is_an_error(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"metrics": {"token": "inline", "token_file": self.secret("from a file")}})
        self.assertEqual(
            caught.exception.problems,
            ["Error in configuration at 'metrics.token_file': set token or token_file, not both"],
        )

    def test_missing_or_empty_files_are_errors_with_their_paths(self) -> None:
        missing, empty = os.path.join(tempfile.mkdtemp(), "nope"), self.secret("\n")
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                {
                    "database": {"dsn_file": missing},
                    "redis": {"url_file": empty},
                    "push": {"vapid_private_key_file": missing},
                }
            )
        self.assertEqual(
            caught.exception.problems,
            [
                f"Error in configuration at 'database.dsn_file': cannot read {missing}: No such file or directory",
                f"Error in configuration at 'redis.url_file': {empty} is empty",
                f"Error in configuration at 'push.vapid_private_key_file': cannot read {missing}",
            ],
        )

    def test_the_vapid_key_is_read_from_its_file_and_never_generated_beside_it(self) -> None:
        from py_vapid import Vapid02

        from umoc.outbound import load_or_create_vapid_key

        vapid = Vapid02()
        vapid.generate_keys()
        key_file = self.secret(vapid.private_pem().decode("ascii"))
        data_dir = self.mktemp()
        config = parse_config({"push": {"vapid_private_key_file": key_file}, "server": {"data_dir": data_dir}})
        key = load_or_create_vapid_key(config.data_path, config.push.vapid_private_key_file)
        expected = load_or_create_vapid_key(config.data_path, key_file)
        self.assertEqual(key.public_key, expected.public_key)
        self.assertFalse(os.path.exists(data_dir), "no key generated in the data directory")


class EnvironmentSubstitutionTests(unittest.SynchronousTestCase):
    """``${VAR}`` and ``${VAR:-default}`` in the values of a configuration file."""

    def load(self, text: str, **environ: str) -> Config:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        self.patch(os, "environ", environ)
        return load_config(path)

    def test_variables_and_defaults_are_substituted_in_values(self) -> None:
        config = self.load(
            "database:\n"
            '  dsn: "postgresql://umoc:${DB_PASSWORD}@${DB_HOST:-localhost}:5432/umoc"\n'
            "  pool_max: ${POOL_MAX:-8}\n"
            "metrics:\n"
            "  token: ${METRICS_TOKEN}\n"
            "ratelimits:\n"
            "  enabled: ${LIMITS:-true}\n",
            DB_PASSWORD="s3cret",
            METRICS_TOKEN="tok",
        )
        self.assertEqual(config.database.dsn, "postgresql://umoc:s3cret@localhost:5432/umoc")
        self.assertEqual(config.database.pool_max, 8, "a value that is one reference is read as a YAML scalar")
        self.assertEqual(config.metrics.token, "tok")
        self.assertIs(config.ratelimits.enabled, True)

    def test_an_unset_variable_without_a_default_is_an_error_with_its_path(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            self.load("metrics:\n  token: ${METRICS_TOKEN}\nredis:\n  url: ${REDIS_URL:-}\n")
        self.assertEqual(
            caught.exception.problems,
            [
                "Error in configuration at 'metrics.token': environment variable METRICS_TOKEN is not set"
                " (write ${METRICS_TOKEN:-DEFAULT} to give a default)"
            ],
        )

    def test_a_variable_cannot_change_the_structure_and_a_doubled_dollar_is_literal(self) -> None:
        config = self.load(
            "metrics:\n  token: ${TOKEN}\ndatabase:\n  dsn: 'sqlite:/tmp/$${NOT_A_VAR}.db'\n",
            TOKEN="x\nserver:\n  listen: tcp:1",
        )
        self.assertEqual(config.metrics.token, "x\nserver:\n  listen: tcp:1")
        self.assertEqual(config.server.listen, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(config.database.dsn, "sqlite:/tmp/${NOT_A_VAR}.db")

    def test_a_file_secret_path_may_come_from_the_environment(self) -> None:
        directory = tempfile.mkdtemp()
        with open(os.path.join(directory, "dsn"), "w") as f:
            f.write("postgresql://umoc@db/umoc\n")
        config = self.load("database:\n  dsn_file: ${CREDENTIALS_DIRECTORY}/dsn\n", CREDENTIALS_DIRECTORY=directory)
        self.assertEqual(config.database.dsn, "postgresql://umoc@db/umoc")


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


class JwtConfigTests(unittest.SynchronousTestCase):
    """``auth.jwt``: off by default; when on, an issuer, known algorithms and one key, every problem by path."""

    def test_off_by_default_and_needs_nothing(self) -> None:
        config = parse_config({})
        self.assertFalse(config.auth.jwt.enabled)
        self.assertTrue(config.auth.password.enabled)

    def test_enabled_without_issuer_key_or_with_none_reports_each(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"auth": {"jwt": {"enabled": True, "algorithms": ["none"]}}})
        text = str(caught.exception)
        for path in ("auth.jwt.issuer", "auth.jwt.algorithms", "auth.jwt.jwks_url"):
            self.assertIn(f"'{path}'", text)

    def test_short_hmac_secret_and_two_public_keys_are_refused(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                {
                    "auth": {
                        "jwt": {
                            "enabled": True,
                            "issuer": "https://idp",
                            "hmac_secret": "short",
                            "jwks_url": "https://idp/jwks",
                            "public_key_file": "/nonexistent.pem",
                        }
                    }
                }
            )
        text = str(caught.exception)
        self.assertIn("'auth.jwt.hmac_secret': expected a secret of at least 32 characters", text)
        self.assertIn("'auth.jwt.public_key_file': set jwks_url or public_key_file, not both", text)

    def test_hmac_secret_file_is_read(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("s" * 40 + "\n")
        config = parse_config({"auth": {"jwt": {"enabled": True, "issuer": "i", "hmac_secret_file": path}}})
        self.assertEqual(config.auth.jwt.hmac_secret, "s" * 40)


class OidcConfigTests(unittest.SynchronousTestCase):
    def test_enabled_needs_issuer_client_callback_and_openid(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                {
                    "auth": {
                        "oidc": {
                            "enabled": True,
                            "scopes": ["profile"],
                            "redirect_url": "https://h/x",
                            "token_endpoint_auth_method": "private_key_jwt",
                        }
                    }
                }
            )
        text = str(caught.exception)
        for path in ("issuer", "client_id", "redirect_url", "scopes", "token_endpoint_auth_method"):
            self.assertIn(f"'auth.oidc.{path}'", text)
