"""The operator guide's proxy examples: the nginx one says what ``etc/nginx.conf`` says, the HAProxy one loads.

The shipped nginx file itself is run in front of two nodes by
``tests/e2e/test_nginx.py``; here every directive of the guide's inline
nginx example must be one of the shipped file's (comments and spacing
aside), so the two cannot drift apart again, and the HAProxy example must
pass ``haproxy -c`` where HAProxy is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operator-guide.md"
SHIPPED = ROOT / "etc" / "nginx.conf"
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")


def fenced(language: str) -> list[str]:
    """Every ```language block of the operator guide."""
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)


def directives(text: str) -> list[str]:
    """The lines of an nginx file without comments, each with its spaces collapsed."""
    lines = (" ".join(line.split("#", 1)[0].split()) for line in text.splitlines())
    return [line for line in lines if line]


class ProxyExampleTests(unittest.TestCase):
    def test_guide_nginx_example_is_the_shipped_configuration(self) -> None:
        (example,) = fenced("nginx")
        shipped = set(directives(SHIPPED.read_text(encoding="utf-8")))
        missing = [line for line in directives(example) if line not in shipped]
        self.assertEqual(missing, [], "lines of the guide's nginx example that etc/nginx.conf does not have")

    def test_guide_haproxy_example_loads(self) -> None:
        if HAPROXY is None:
            raise unittest.SkipTest("haproxy is not installed (Debian package haproxy)")
        (example,) = fenced("haproxy")
        work = Path(tempfile.mkdtemp(prefix="umoc-haproxy-"))
        pem = work / "chat.pem"
        key = work / "key.pem"
        made = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            + ["-keyout", str(key), "-out", str(pem), "-days", "1", "-subj", "/CN=umoc-test"],
            capture_output=True,
            timeout=30,
        )
        self.assertEqual(made.returncode, 0, made.stderr)
        pem.write_bytes(pem.read_bytes() + key.read_bytes())
        config = work / "haproxy.cfg"
        config.write_text(example.replace("/etc/haproxy/chat.example.com.pem", str(pem)), encoding="utf-8")
        checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)

    def test_guide_haproxy_example_forwards_the_scheme(self) -> None:
        (example,) = fenced("haproxy")
        self.assertIn("X-Forwarded-Proto", example)
        self.assertIn("option forwardfor", example)


def location_block(text: str) -> list[str]:
    """The directives of an nginx file's ``location / { ... }``."""
    lines = directives(text)
    start = lines.index("location / {")
    return lines[start + 1 : lines.index("}", start)]


class ComposeTests(unittest.TestCase):
    def test_the_scaled_service_publishes_no_fixed_port_and_nginx_does(self) -> None:
        import yaml

        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
        self.assertNotIn("ports", compose["services"]["umoc"], "docker compose --scale umoc=2 needs no fixed port")
        self.assertIn("ports", compose["services"]["nginx"])
        mounted = compose["services"]["nginx"]["volumes"]
        self.assertIn("./etc/nginx.compose.conf:/etc/nginx/conf.d/default.conf:ro", mounted)

    def test_compose_nginx_proxies_as_the_shipped_configuration_does(self) -> None:
        compose = (ROOT / "etc" / "nginx.compose.conf").read_text(encoding="utf-8")
        self.assertEqual(location_block(compose), location_block(SHIPPED.read_text(encoding="utf-8")))
        shipped = set(directives(SHIPPED.read_text(encoding="utf-8")))
        self.assertIn("hash $remote_addr consistent;", shipped & set(directives(compose)))

    def test_compose_nginx_configuration_loads(self) -> None:
        nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
        if nginx is None:
            raise unittest.SkipTest("nginx is not installed (Debian package nginx-light)")
        work = Path(tempfile.mkdtemp(prefix="umoc-nginx-compose-"))
        site = (ROOT / "etc" / "nginx.compose.conf").read_text(encoding="utf-8")
        (work / "site.conf").write_text(
            site.replace("umoc:8080", "127.0.0.1:9").replace("listen 80;", "listen 127.0.0.1:9;")
        )
        (work / "nginx.conf").write_text(
            f"pid {work}/nginx.pid;\nerror_log {work}/error.log;\nevents {{}}\n"
            f"http {{ client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; include {work}/site.conf; }}\n"
        )
        command = [nginx, "-t", "-p", str(work), "-e", str(work / "error.log"), "-c", str(work / "nginx.conf")]
        checked = subprocess.run(command, capture_output=True, text=True, timeout=30)
        self.assertEqual(checked.returncode, 0, checked.stderr)
