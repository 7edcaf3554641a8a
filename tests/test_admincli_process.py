"""``umoc-admin`` as an operator runs it: a real process, the unit's arguments, a shell pipe.

What the in-process tests (`tests.test_admincli`) cannot show: which
database the process finds from its arguments, its environment and its
working directory; that it creates none and migrates none unless told; that
a reader leaving early (``| head``) ends it quietly.  Each process costs
about half a second, so there are few, each checking several things.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.trial import unittest

from tests.support.admin import PASSWORD, schema_dsn
from tests.support.databases import (
    NO_REDIS,
    POSTGRES_DSN,
    REDIS_URL,
    _postgres,
    _sqlite_template,
    for_each_backend,
)
from tests.support.deferreds import blocking, inline
from umoc import admincli
from umoc.cluster.redisclient import RedisClient
from umoc.config import load_config
from umoc.domain.commands.ratelimits import BucketSelection
from umoc.ratelimit import RedisRatelimiter
from umoc.storage.database import Database, SchemaStatus, Txn
from umoc.storage.engine.migrations import _load_migrations, _migrate_txn

ROOT = Path(__file__).resolve().parents[1]


def admin(*argv: str, cwd: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``umoc-admin ARGV`` in a process of its own, started in ``cwd`` (this tree's ``umoc`` on its path)."""
    environ = {k: v for k, v in os.environ.items() if k != "UMOC_DATA_DIR"}
    environ.update(env or {}, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", "from umoc.admincli import main; main()", *argv],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


async def admin_here(*argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The same command in this process (`admincli.run`): for the checks that need no process of their own."""
    out, err = io.StringIO(), io.StringIO()
    code = await admincli.run(list(argv), reactor, io.StringIO(stdin), out, err)
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())


def where_it_is(status: SchemaStatus) -> tuple[int | None, int, tuple[int, ...]]:
    """A status's versions, without the compatibility version (`tests.storage.test_migrations` checks it)."""
    return status.current, status.newest, status.pending


def write_config(folder: str, sections: dict[str, Any]) -> str:
    path = os.path.join(folder, "umoc.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(sections, f)
    return path


class ProcessCase(unittest.TestCase):
    def folder(self, label: str) -> str:
        path = tempfile.mkdtemp(prefix=f"umoc-{label}-")
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def assertRefused(self, done: subprocess.CompletedProcess, *words: str) -> None:
        """Exit status 1 and one line on standard error, holding ``words``; no traceback."""
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertEqual(done.stderr.count("\n"), 1, done.stderr)
        self.assertTrue(done.stderr.startswith("umoc-admin: "), done.stderr)
        for word in words:
            self.assertIn(word, done.stderr)


class UnitArgumentsTests(ProcessCase):
    """SQLite, with the example configuration's relative ``data_dir`` and the unit's ``--data-dir``."""

    def setUp(self) -> None:
        # The example configuration's data_dir is relative: run from elsewhere it would name another folder.
        self.cwd = self.folder("cwd")
        self.config = write_config(self.folder("cfg"), {"server": {"data_dir": "umoc-data"}})

    @inline
    async def test_the_units_arguments_and_the_environment_reach_the_servers_database(self) -> None:
        data_dir = self.folder("data")
        shutil.copyfile(await _sqlite_template(), os.path.join(data_dir, "umoc.sqlite3"))  # as a node left it
        made = await blocking(
            admin,
            *("--config", self.config, "--data-dir", data_dir, "create-user", "alice", "--password-stdin"),
            cwd=self.cwd,
            stdin=PASSWORD + "\n",
        )
        self.assertEqual((made.returncode, made.stdout.split(" (")[0]), (0, "Created user alice"), made.stderr)
        # The change is logged on standard error, as a node logs it.
        self.assertIn("Account alice created by umoc-admin", made.stderr)
        listed = await blocking(
            admin, "--config", self.config, "list-users", "--json", cwd=self.cwd, env={"UMOC_DATA_DIR": data_dir}
        )
        self.assertEqual((listed.returncode, listed.stderr), (0, ""))
        self.assertEqual([u["username"] for u in json.loads(listed.stdout)], ["alice"])
        # The row is in the server's file, and nothing was made where the relative data_dir points.
        db = Database.sqlite(os.path.join(data_dir, "umoc.sqlite3"))
        self.addCleanup(db.close)
        names = await db.run(
            "test.names", lambda txn: [r[0] for r in txn.execute("SELECT username FROM users").fetchall()]
        )
        self.assertEqual(names, ["alice"])
        self.assertEqual(os.listdir(self.cwd), [])

    @inline
    async def test_a_data_directory_without_a_database_is_refused_and_left_empty(self) -> None:
        data_dir = self.folder("empty")
        refusal = f"no database at {os.path.realpath(data_dir)}/umoc.sqlite3"
        done = await blocking(admin, "--config", self.config, "--data-dir", data_dir, "list-users", cwd=self.cwd)
        self.assertRefused(done, refusal, "--data-dir")
        for argv in (["create-user", "bob", "--password-stdin"], ["migrate"], ["schema-status"]):
            done = await admin_here("--config", self.config, "--data-dir", data_dir, *argv, stdin=PASSWORD)
            self.assertRefused(done, refusal)
        self.assertEqual((os.listdir(data_dir), os.listdir(self.cwd)), ([], []))

    @inline
    async def test_a_reader_that_leaves_early_ends_the_listing_quietly(self) -> None:
        data_dir = self.folder("data")
        path = os.path.join(data_dir, "umoc.sqlite3")
        shutil.copyfile(await _sqlite_template(), path)
        db = Database.sqlite(path)

        def many(txn: Txn) -> None:
            for n in range(1000):
                txn.execute(
                    "INSERT INTO users (username, password_hash, created_at) VALUES (?, 'x', 0)", (f"user{n:04d}",)
                )

        try:
            await db.run("test.users", many)
        finally:
            db.close()
        argv = [sys.executable, "-c", "from umoc.admincli import main; main()", "--config", self.config]
        argv += ["--data-dir", data_dir, "list-users"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        # 1000 rows are about 69 KB, more than a pipe holds: the writer is still writing when the reader goes.
        proc = subprocess.Popen(argv, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stderr is not None
        first = await blocking(os.read, proc.stdout.fileno(), 100)
        proc.stdout.close()
        err = await blocking(proc.stderr.read)
        proc.stderr.close()
        status = await blocking(proc.wait, 60)
        self.assertTrue(first.startswith(b"    ID  USERNAME"), first)
        self.assertEqual((status, err), (0, b""))
        # And the documented form, through a shell.
        shell = " ".join(f"'{a}'" for a in argv) + " | head -1"
        done = await blocking(
            subprocess.run, ["bash", "-o", "pipefail", "-c", shell], cwd=self.cwd, capture_output=True, env=env
        )
        self.assertEqual((done.returncode, done.stderr, done.stdout.count(b"\n")), (0, b"", 1))


class SchemaMixin:
    """A schema behind the code, and no schema at all, on SQLite and PostgreSQL."""

    backend = "sqlite"

    async def database(self, behind: int | None) -> tuple[str, Database, int]:
        """A configuration file, the database it names, and the code's newest version for it.

        Migrated but for the last ``behind`` migrations; None: not at all.
        """
        folder = self.folder("schema")
        if self.backend == "sqlite":
            db = Database.sqlite(os.path.join(folder, "umoc.sqlite3"))
            sections: dict[str, Any] = {"server": {"data_dir": folder}}
        else:
            schema = "umoc_adm_" + uuid.uuid4().hex[:12]
            _postgres(f"CREATE SCHEMA {schema}")
            self.addCleanup(_postgres, f"DROP SCHEMA {schema} CASCADE")  # type: ignore[attr-defined]
            db = Database.postgres(POSTGRES_DSN, 1, 1, schema=schema)
            sections = {"database": {"dsn": schema_dsn(schema)}}
        self.addCleanup(db.close)  # type: ignore[attr-defined]
        migrations = _load_migrations(db.dialect)
        if behind is not None:
            await db.run("test.migrate", _migrate_txn, migrations[: len(migrations) - behind])
        return write_config(folder, sections), db, migrations[-1][0]

    @inline
    async def test_a_schema_behind_the_code_is_refused_and_migrated_only_by_migrate(self) -> None:
        config, db, newest = await self.database(1)
        previous = (await db.schema_status()).current
        assert previous is not None
        cwd = self.folder("cwd")
        refused = await blocking(admin, "--config", config, "list-users", cwd=cwd)
        self.assertRefused(refused, f"version {previous}", f"needs {newest}", "umoc-admin migrate")
        self.assertEqual(where_it_is(await db.schema_status()), (previous, newest, (newest,)))
        status = await admin_here("--config", config, "schema-status", "--json")
        shown = json.loads(status.stdout)
        self.assertEqual((shown["version"], shown["newest"], shown["pending"]), (previous, newest, [newest]))
        dry = await admin_here("--config", config, "migrate", "--dry-run")
        self.assertEqual(dry.returncode, 0, dry.stderr)
        self.assertIn(f"Would apply migrations {newest:03d}", dry.stdout)
        self.assertEqual(await db.pending_migrations(), (newest,))
        done = await blocking(admin, "--config", config, "migrate", cwd=cwd)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(f"schema version {newest}", done.stdout)
        self.assertIn(f"Applied schema migration {newest}", done.stderr)  # the change, logged
        self.assertEqual(where_it_is(await db.schema_status()), (newest, newest, ()))
        listed = await admin_here("--config", config, "list-users", "--json")
        self.assertEqual((listed.returncode, listed.stdout), (0, "[]\n"), listed.stderr)
        self.assertIn("up to date", (await admin_here("--config", config, "schema-status")).stdout)

    @inline
    async def test_a_newer_schema_is_used_while_compatible_and_refused_once_contracted_past_the_code(self) -> None:
        config, db, newest = await self.database(0)

        def newer(txn: Txn, compat: int) -> None:
            txn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", (newest + 1,))
            txn.execute("UPDATE schema_compat_version SET compat_version = ?", (compat,))

        await db.run("test.expand", newer, newest)  # a release after this one expanded the schema
        listed = await admin_here("--config", config, "list-users", "--json")
        self.assertEqual((listed.returncode, listed.stdout, listed.stderr), (0, "[]\n", ""))
        self.assertIn("may still run on it", (await admin_here("--config", config, "schema-status")).stdout)
        await db.run(
            "test.contract", lambda txn: txn.execute("DELETE FROM schema_migrations WHERE version > ?", (newest,))
        )
        await db.run("test.contract", newer, newest + 1)  # ... and then contracted it past this code
        for argv in (["list-users"], ["migrate"], ["schema-status"]):
            self.assertRefused(
                await admin_here("--config", config, *argv), f"needs code of schema version {newest + 1}"
            )

    @inline
    async def test_a_database_with_no_schema_is_refused_and_stays_empty(self) -> None:
        config, db, newest = await self.database(None)
        status = await db.schema_status()
        self.assertEqual((status.current, status.pending[-1]), (None, newest))
        self.assertRefused(await blocking(admin, "--config", config, "list-users", cwd=self.folder("cwd")), "no UMOC")
        for argv in (["migrate"], ["schema-status"], ["registration", "open"]):
            self.assertRefused(await admin_here("--config", config, *argv), "no UMOC schema")
        self.assertIsNone((await db.schema_status()).current)  # not even the schema_version table

    @inline
    async def test_the_audit_log_holds_what_the_cli_did_and_lists_it(self) -> None:
        config, db, _newest = await self.database(0)
        made = await admin_here("--config", config, "create-user", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        self.assertEqual(made.returncode, 0, made.stderr)
        cwd = self.folder("cwd")
        done = await blocking(admin, "--config", config, "deactivate", "alice", cwd=cwd)
        self.assertEqual(done.returncode, 0, done.stderr)
        # The entry is in the database, written by that process (who, what, from where).
        rows = await db.run(
            "test.audit",
            lambda txn: [
                (r["actor_id"], r["actor_name"], r["via"], r["address"], r["action"], r["target_type"])
                for r in txn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
            ],
        )
        self.assertEqual(
            rows,
            [
                (None, "umoc-admin", "cli", "cli", "user.create", "user"),
                (None, "umoc-admin", "cli", "cli", "user.deactivate", "user"),
            ],
        )
        listed = await blocking(admin, "--config", config, "audit", "--json", "--action", "user.deactivate", cwd=cwd)
        self.assertEqual(listed.returncode, 0, listed.stderr)
        shown = json.loads(listed.stdout)
        self.assertEqual([e["action"] for e in shown["entries"]], ["user.deactivate"])
        self.assertEqual(shown["entries"][0]["actor"]["address"], "cli")
        self.assertIsNone(shown["next_cursor"])
        table = await admin_here("--config", config, "audit", "--limit", "1")
        self.assertIn("user.deactivate", table.stdout)
        self.assertIn("More: --cursor", table.stdout)
        self.assertRefused(await admin_here("--config", config, "audit", "--since", "yesterday"), "--since")

    @inline
    async def test_legal_holds_are_set_listed_lifted_and_audited(self) -> None:
        config, _db, _newest = await self.database(0)
        made = await admin_here("--config", config, "create-user", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        self.assertEqual(made.returncode, 0, made.stderr)
        cwd = self.folder("cwd")
        held = await blocking(admin, "--config", config, "legal-hold", "alice", "on", "--reason", "case 42", cwd=cwd)
        self.assertEqual(held.returncode, 0, held.stderr)
        self.assertIn("alice is on legal hold", held.stdout)
        self.assertIn("Legal hold of alice set by umoc-admin", held.stderr)  # the change, logged
        listed = json.loads((await admin_here("--config", config, "legal-hold", "--list", "--json")).stdout)
        self.assertEqual(
            [(h["username"], h["by"], h["reason"]) for h in listed["holds"]], [("alice", "umoc-admin", "case 42")]
        )
        again = await admin_here("--config", config, "legal-hold", "alice", "on")
        self.assertIn("(no change)", again.stdout)
        lifted = await admin_here("--config", config, "legal-hold", "alice", "off", "--json")
        self.assertEqual(json.loads(lifted.stdout), {"username": "alice", "legal_hold": False, "changed": True})
        self.assertEqual(len((await admin_here("--config", config, "legal-hold")).stdout.splitlines()), 1)
        self.assertRefused(await admin_here("--config", config, "legal-hold", "alice"), "on or off")
        self.assertRefused(await admin_here("--config", config, "legal-hold", "nobody", "on"), "No such user")
        # Every request is in the audit log, as umoc-admin from the command line.
        shown = json.loads(
            (await admin_here("--config", config, "audit", "--json", "--action", "user.legal_hold")).stdout
        )
        self.assertEqual(
            [(e["actor"]["name"], e["actor"]["address"], e["details"]) for e in reversed(shown["entries"])],
            [
                ("umoc-admin", "cli", {"on": True, "reason": "case 42"}),
                ("umoc-admin", "cli", {"on": True}),
                ("umoc-admin", "cli", {"on": False}),
            ],
        )


for_each_backend(SchemaMixin, ProcessCase, globals())


class RatelimitResetTests(unittest.TestCase):
    """``ratelimit reset`` deletes the buckets a node keeps in Redis (in-process: no start-up to pay)."""

    if not REDIS_URL:
        skip = NO_REDIS

    @inline
    async def setUp(self) -> None:
        folder = tempfile.mkdtemp(prefix="umoc-rl-")
        self.addCleanup(shutil.rmtree, folder, True)
        shutil.copyfile(await _sqlite_template(), os.path.join(folder, "umoc.sqlite3"))
        self.prefix = f"umoc-t-{uuid.uuid4().hex[:8]}:"
        # A bucket's key expires once it would be full again: 1.1 s after one message with the default 10 a
        # second (3 s for connect, 7 s for login), before a loaded machine got to the reset (seen).  One token an
        # hour keeps every bucket the test takes from for the test.
        self.config_path = write_config(
            folder,
            {
                "server": {"data_dir": folder},
                "redis": {"url": REDIS_URL, "prefix": self.prefix},
                "ratelimits": {
                    kind: {"rate": 1, "per": "3600s", "burst": 10}
                    for kind in ("login", "connect", "login_name", "login_account", "messages")
                },
            },
        )
        config = load_config(self.config_path)
        self.redis = RedisClient(REDIS_URL, reactor, 10.0)
        self.addCleanup(self.redis.close)
        self.assertTrue(await self.redis.wait_connected(15))
        self.limiter = RedisRatelimiter(self.redis, reactor, config.ratelimits, self.prefix)

    async def cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await admincli.run(["--config", self.config_path, *argv], reactor, io.StringIO(""), out, err)
        return code, out.getvalue(), err.getvalue()

    async def held(self) -> list[str]:
        """This test's keys: every SCAN round to the end (the Redis is shared: one round may return a part)."""
        found: list[str] = []
        cursor = None
        while cursor != 0:
            cursor, keys = await self.redis.call("scan", cursor or 0, self.prefix + "*", 10_000)
            cursor = int(cursor)
            found += [k.decode() if isinstance(k, bytes) else k for k in keys]
        return sorted(found)

    @inline
    async def test_reset_by_address_and_by_user_deletes_only_their_buckets(self) -> None:
        out, err_io = io.StringIO(), io.StringIO()
        argv = ["--config", self.config_path, "create-user", "alice", "--password-stdin"]
        self.assertEqual(await admincli.run(argv, reactor, io.StringIO(PASSWORD), out, err_io), 0, err_io.getvalue())
        for kind, key in (
            ("login", "ip:203.0.113.7"),
            ("connect", "ip:203.0.113.7"),
            ("login", "ip:198.51.100.1"),
            ("login_name", "alice|203.0.113.7"),
            ("login_name", "bob|203.0.113.7"),
            ("login_account", "alice"),
            ("messages", "user:1"),
            ("messages", "user:2"),
        ):
            await self.limiter.can_do_action(kind, key)
        code, out_text, err = await self.cli("ratelimit", "reset", "--address", "203.0.113.7", "--class", "login")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("Reset 1 rate-limit buckets", out_text)
        code, out_text, err = await self.cli("--json", "ratelimit", "reset", "--address", "203.0.113.7")
        self.assertEqual(
            json.loads(out_text)["reset"],
            ["rl:connect:ip:203.0.113.7", "rl:login_name:alice|203.0.113.7", "rl:login_name:bob|203.0.113.7"],
        )
        code, out_text, err = await self.cli("ratelimit", "reset", "--user", "ALICE", "--json")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out_text)["reset"], ["rl:login_account:alice", "rl:messages:user:1"])
        p = self.prefix
        self.assertEqual(await self.held(), [f"{p}rl:login:ip:198.51.100.1", f"{p}rl:messages:user:2"])

    @inline
    async def test_refusals_name_the_reason_in_one_line(self) -> None:
        code, _, err = await self.cli("ratelimit", "reset", "--address", "not-an-ip")
        self.assertEqual((code, err), (1, "umoc-admin: not an IP address: not-an-ip\n"))
        code, _, err = await self.cli("ratelimit", "reset", "--user", "nobody")
        self.assertEqual((code, err), (1, "umoc-admin: No such user\n"))
        without = write_config(tempfile.mkdtemp(prefix="umoc-rl-"), {})
        self.addCleanup(shutil.rmtree, os.path.dirname(without), True)
        out, err_io = io.StringIO(), io.StringIO()
        argv = ["--config", without, "ratelimit", "reset", "--address", "::1"]
        self.assertEqual(await admincli.run(argv, reactor, io.StringIO(""), out, err_io), 1)
        self.assertIn("each node's memory", err_io.getvalue())
        self.assertEqual(err_io.getvalue().count("\n"), 1)


class BucketSelectionTests(unittest.TestCase):
    def test_a_pair_bucket_matches_either_half_alone_and_only_the_pair_when_both_are_given(self) -> None:
        classes = ("login_name",)
        by_address = BucketSelection(classes, address="10.0.0.1")
        by_user = BucketSelection(classes, user_id=7, account="alice")
        both = BucketSelection(classes, address="10.0.0.1", user_id=7, account="alice")
        self.assertTrue(by_address.selects("bob|10.0.0.1"))
        self.assertFalse(by_address.selects("bob|10.0.0.10"))
        self.assertTrue(by_user.selects("alice|10.9.9.9"))
        self.assertFalse(by_user.selects("alicex|10.9.9.9"))
        self.assertTrue(both.selects("alice|10.0.0.1"))
        self.assertFalse(both.selects("bob|10.0.0.1"))
        self.assertTrue(both.selects("ip:10.0.0.1") and both.selects("user:7") and both.selects("alice"))
