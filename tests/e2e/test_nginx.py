"""The shipped ``etc/nginx.conf`` in real nginx, in front of two nodes on one PostgreSQL and one Redis.

The file is loaded as shipped; only what a site changes anyway is swapped
(the two upstream addresses, the listen ports and the certificate), each
replacement checked to hit exactly once, so a reshaped file fails here
rather than being silently tested as something else.  nginx runs as a child
process with a main configuration of the test's own around it (pid, logs,
temporary files, an access log naming the upstream of every request).

Stickiness is what two nodes need of a proxy and what one node cannot show:
the clients connect from different loopback addresses (127.0.0.N), chosen
so that the shipped ``hash $remote_addr consistent`` sends them to
different nodes, and a long-polling session (many requests, each of which
must reach its own node) works on each.  The WebSocket goes through with
``server.allowed_origins`` set, which only passes when ``Host`` keeps its
port (``$http_host``, not ``$host``) and ``X-Forwarded-Proto`` is sent.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import socketio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter

from tests.support.cluster import ClusterTestCase
from tests.support.databases import NO_CLUSTER
from tests.support.deferreds import blocking, inline
from tests.support.server import Server

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "etc" / "nginx.conf"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as files: ``(cert, key)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "umoc-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def site_config(upstreams: list[int], http_port: int, https_port: int, cert: str, key: str) -> str:
    """``etc/nginx.conf`` with the site-specific values swapped; each must occur exactly once."""
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new in (
        ("server 10.0.0.11:8080 ", f"server 127.0.0.1:{upstreams[0]} "),
        ("server 10.0.0.12:8080 ", f"server 127.0.0.1:{upstreams[1]} "),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("/etc/letsencrypt/live/chat.example.com/fullchain.pem", cert),
        ("/etc/letsencrypt/live/chat.example.com/privkey.pem", key),
    ):
        assert text.count(old) == 1, f"etc/nginx.conf no longer has {old!r} exactly once"
        text = text.replace(old, new)
    return text


def main_config(work: Path) -> str:
    """The main file around the site, as Debian's /etc/nginx/nginx.conf includes conf.d/*.conf."""
    return f"""
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log notice;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    log_format upstreams '$remote_addr $upstream_addr $request_method $uri $status';
    access_log {work}/access.log upstreams;
    include {work}/umoc.conf;
}}
"""


class SourceAddressAdapter(HTTPAdapter):
    """requests from one local address: how a test makes clients that nginx tells apart."""

    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


def http_from(address: str) -> requests.Session:
    session = requests.Session()
    session.verify = False
    session.trust_env = False  # else REQUESTS_CA_BUNDLE (or similar) overrides verify
    session.mount("https://", SourceAddressAdapter(address))
    session.mount("http://", SourceAddressAdapter(address))
    return session


class NginxTests(ClusterTestCase):
    skip = NO_CLUSTER or (None if NGINX else "nginx is not installed (Debian package nginx-light)")

    @inline
    async def setUp(self) -> None:
        await super().setUp()
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.work = Path(tempfile.mkdtemp(prefix="umoc-nginx-"))
        self.work.chmod(0o755)  # nginx's workers (nobody, when the test runs as root) create temp files here
        uploads = self.work / "uploads"  # one directory for both nodes, as the guide requires
        self.nodes: list[Server] = []
        for _ in range(2):
            config = self.node_config(
                server={"trusted_proxies": ["127.0.0.1"], "allowed_origins": ["https://chat.example.com"]},
                uploads={"directory": str(uploads)},
            )
            self.nodes.append(await self.start_node(config))
        self.upstreams = [f"127.0.0.1:{node.port}" for node in self.nodes]
        cert, key = self_signed(self.work)
        self.port = free_port()
        site = site_config([node.port for node in self.nodes], free_port(), self.port, cert, key)
        (self.work / "umoc.conf").write_text(site, encoding="utf-8")
        (self.work / "nginx.conf").write_text(main_config(self.work), encoding="utf-8")
        self.base = f"https://127.0.0.1:{self.port}"
        await blocking(self._start_nginx)

    def _nginx(self, *args: str) -> list[str]:
        assert NGINX is not None
        return [
            NGINX,
            "-p",
            str(self.work),
            "-e",
            str(self.work / "error.log"),
            "-c",
            str(self.work / "nginx.conf"),
            *args,
        ]

    def _start_nginx(self) -> None:
        check = subprocess.run(self._nginx("-t"), capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stderr)
        process = subprocess.Popen(self._nginx(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self._stop_nginx, process)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.work / "error.log").read_text(errors="replace")) from None
                time.sleep(0.05)

    def _stop_nginx(self, process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def routes(self) -> dict[str, set[str]]:
        """Client address -> the upstreams nginx sent its requests to, from nginx's access log."""
        seen: dict[str, set[str]] = {}
        for line in (self.work / "access.log").read_text().splitlines():
            client, upstream = line.split()[:2]
            seen.setdefault(client, set()).add(upstream)
        return seen

    def addresses_per_node(self) -> list[str]:
        """One loopback address whose requests nginx sends to each node, in the nodes' order."""
        for n in range(2, 60):
            http_from(f"127.0.0.{n}").get(self.base + "/healthz", timeout=10).raise_for_status()
            routes = self.routes()
            chosen = {}
            for client, upstreams in routes.items():
                (upstream,) = upstreams
                chosen.setdefault(upstream, client)
            if len(chosen) == 2:
                return [chosen[upstream] for upstream in self.upstreams]
        raise AssertionError(f"no address of 127.0.0.2-59 reached both nodes: {self.routes()}")

    def login(self, http: requests.Session, name: str) -> dict[str, Any]:
        answer = http.post(self.base + "/api/register", json={"username": name, "password": PASSWORD}, timeout=10)
        self.assertEqual(answer.status_code, 201, answer.text)
        answer = http.post(self.base + "/api/login", json={"username": name, "password": PASSWORD}, timeout=10)
        self.assertEqual(answer.status_code, 200, answer.text)
        return answer.json()

    def ping(self, client: socketio.Client, login: dict[str, Any]) -> None:
        answer = client.call("ping", {"sessionID": login["sessionID"], "timestamp": 1}, timeout=10)
        self.assertEqual(answer["timestamp"], 1, answer)

    def connect(self, login: dict[str, Any], transport: str, http: requests.Session) -> socketio.Client:
        client = socketio.Client(reconnection=False, request_timeout=10, http_session=http, ssl_verify=False)
        client.connect(
            self.base,
            auth={"sessionID": login["sessionID"], "token": login["token"]},
            transports=[transport],
            wait_timeout=10,
        )
        self.addCleanup(blocking, client.disconnect)
        return client

    @inline
    async def test_shipped_config_serves_two_nodes_with_sticky_polling_websocket_and_files(self) -> None:
        await blocking(self._scenario)

    def _scenario(self) -> None:
        on_a, on_b = self.addresses_per_node()
        http_a, http_b = http_from(on_a), http_from(on_b)
        alice, bob = self.login(http_a, "alice"), self.login(http_b, "bob")
        # The client address the nodes saw is the one nginx forwarded, not nginx's own.
        self.assertNotIn("127.0.0.1", self.routes())

        # Long-polling only, on each node: every poll of a session must reach the node holding it.
        polling_a = self.connect(alice, "polling", http_a)
        polling_b = self.connect(bob, "polling", http_b)
        self.assertEqual(polling_a.transport(), "polling")
        for _ in range(3):
            self.ping(polling_a, alice)
            self.ping(polling_b, bob)
        a, b = self.nodes
        self.assertTrue(a.services.hub.is_local(alice["user_id"]))
        self.assertTrue(b.services.hub.is_local(bob["user_id"]))
        self.assertEqual(self.routes()[on_a], {self.upstreams[0]})
        self.assertEqual(self.routes()[on_b], {self.upstreams[1]})

        # A WebSocket through the upgrade, with allowed_origins set: the Origin python-socketio sends
        # (https://127.0.0.1:<port>) is the server's own only if Host kept its port.
        websocket = self.connect(alice, "websocket", http_from("127.0.0.1"))
        self.assertEqual(websocket.transport(), "websocket")
        self.ping(websocket, alice)

        # A file prepared on node A, uploaded and downloaded through node B (one shared directory).
        data = os.urandom(3 * 1024 * 1024)
        ready = polling_a.call(
            "upload_file_prepare",
            {
                "sessionID": alice["sessionID"],
                "purpose": "avatar",
                "file_name": "me.png",
                "file_size": len(data),
                "file_type": "image/png",
            },
            timeout=10,
        )
        self.assertNotIn("error", ready)
        put = http_b.put(
            self.base + ready["upload_url"], data=data, headers={"Authorization": f"Bearer {ready['upload_token']}"}
        )
        self.assertEqual(put.status_code, 201, put.text)
        profile = polling_a.call(
            "update_profile", {"sessionID": alice["sessionID"], "avatar_file_id": ready["file_id"]}, timeout=10
        )
        self.assertNotIn("error", profile)
        got = http_b.get(
            self.base + f"/api/files/{ready['file_id']}",
            headers={"X-Session-ID": alice["sessionID"], "X-Session-Token": alice["token"]},
            timeout=10,
        )
        self.assertEqual(got.status_code, 200, got.text[:200])
        self.assertEqual(got.content, data)
        self.assertEqual(self.routes()[on_b], {self.upstreams[1]})
