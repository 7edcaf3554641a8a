"""What ships: the wheel and sdist hold the package data, etc/ and docs/; the container serves a login.

The wheel and sdist are built from a copy of the checkout (so a run never
writes ``build/`` into it).  The Docker test needs a working ``docker``
(daemon and ``docker compose``) and network access for the base images; it
skips with the reason otherwise.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

import umoc
from umoc.admincli import run
from umoc.config import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "etc" / "umoc.yaml"


def _copy_of_checkout() -> Path:
    """The checkout's files (not .git, builds, node_modules) in a fresh directory."""
    target = Path(tempfile.mkdtemp(prefix="umoc-pkg-")) / "src"
    ignore = shutil.ignore_patterns(
        ".git",
        "build",
        "dist",
        "*.egg-info",
        "node_modules",
        "_trial_temp*",
        "__pycache__",
        ".venv",
        "umoc-data",
        ".hypothesis",
        ".ruff_cache",
    )
    shutil.copytree(ROOT, target, ignore=ignore)
    return target


class ExampleConfigTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_umoc_admin_example_config_prints_etc_umoc_yaml_and_it_loads(self) -> Any:
        out = io.StringIO()
        status = yield defer.ensureDeferred(run(["example-config"], None, stdout=out))
        self.assertEqual(status, 0)
        self.assertEqual(out.getvalue(), EXAMPLE.read_text(encoding="utf-8"))
        path = Path(tempfile.mkdtemp()) / "umoc.yaml"
        path.write_text(out.getvalue(), encoding="utf-8")
        load_config(path)

    def test_the_compose_configuration_loads(self) -> None:
        config = load_config(ROOT / "etc" / "umoc.compose.yaml")
        self.assertTrue(config.database.dsn.startswith("postgresql://"))


class DistributionTests(unittest.TestCase):
    def build(self, *command: str) -> Path:
        source = _copy_of_checkout()
        out = source.parent / "out"
        result = subprocess.run([*command, str(out)], cwd=source, capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        (artifact,) = out.iterdir()
        return artifact

    def test_the_wheel_holds_package_data_etc_and_docs(self) -> None:
        wheel = self.build(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w")
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            # setup.py's build_py copies it there, for umoc-admin example-config
            self.assertEqual(archive.read("umoc/umoc.yaml").decode("utf-8"), EXAMPLE.read_text(encoding="utf-8"))
            entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
            # setup.py's version is umoc.__version__, read from the file's text.
            self.assertTrue(entry_points.startswith(f"umoc-{umoc.__version__}.dist-info/"), entry_points)
            self.assertIn("umoc-admin", archive.read(entry_points).decode())
        data = next(n.split("/")[0] for n in names if ".data/" in n)
        expected = {
            "twisted/plugins/umoc_plugin.py",
            "umoc/storage/schema/001_users_sessions.sql",
            "umoc/webclient/static/index.html",
            f"{data}/data/share/umoc/umoc.yaml",
            f"{data}/data/share/umoc/umoc.service",
            f"{data}/data/share/umoc/nginx.conf",
            f"{data}/data/share/umoc/grafana-umoc.json",
            *(f"{data}/data/share/doc/umoc/{p.name}" for p in (ROOT / "docs").glob("*.md")),
        }
        self.assertEqual(expected - names, set())

    def test_the_sdist_holds_docs_etc_and_the_container_files(self) -> None:
        sdist = self.build(sys.executable, "setup.py", "-q", "sdist", "-d")
        with tarfile.open(sdist) as archive:
            names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        expected = {
            "docs/api.md",
            "docs/operator-guide.md",
            "docs/CHANGELOG.md",
            "etc/umoc.yaml",
            "etc/umoc.service",
            "etc/nginx.conf",
            "etc/nginx.compose.conf",
            "etc/umoc.compose.yaml",
            "etc/grafana-umoc.json",
            "tests/compat/PREVIOUS_RELEASE",
            "Dockerfile",
            "docker-compose.yml",
        }
        self.assertEqual(expected - names, set())


def _docker_problem() -> str | None:
    """Why the Docker test cannot run here, or None."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=10)
        compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 10 s"
    if info.returncode != 0:
        lines = [line for line in (info.stderr or info.stdout).splitlines() if line.strip()]
        return "docker is not usable: " + (lines[-1] if lines else f"docker info exited {info.returncode}")
    if compose.returncode != 0:
        return "docker compose is not available"
    return None


class DockerComposeTests(unittest.TestCase):
    """The image builds and the compose stack (UMOC, PostgreSQL, Redis) registers and logs a user in."""

    timeout = 900

    def setUp(self) -> None:
        problem = _docker_problem()
        if problem:
            raise unittest.SkipTest(problem)

    def test_the_compose_stack_serves_a_login(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        project = f"umoctest{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "UMOC_PORT": str(port)}
        compose = ["docker", "compose", "-p", project, "-f", str(ROOT / "docker-compose.yml")]

        def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
            return subprocess.run([*compose, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

        self.addCleanup(run, "down", "-v", "--remove-orphans")
        up = run("up", "-d", "--build")
        self.assertEqual(up.returncode, 0, up.stdout + up.stderr)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.fail("the stack never became ready:\n" + run("logs", timeout=60).stdout[-4000:])
            time.sleep(1)
        body = b'{"username": "alice", "password": "correct horse battery"}'
        for path, status in (("/api/register", 201), ("/api/login", 200)):
            request = urllib.request.Request(base + path, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                self.assertEqual(response.status, status)
                if path == "/api/login":
                    self.assertIn(b'"token"', response.read())
