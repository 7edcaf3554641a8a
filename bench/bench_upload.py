"""Upload and download one large file through a real UMOC server; print throughput and server memory.

    python bench/bench_upload.py [--size-mib 200] [--chunk-kib 1024]

Starts ``twistd -n umoc`` in a subprocess (SQLite, a temporary data dir,
uploads.max_size raised above the file), makes two friends with the real
events (register, login, add_contact, accept_contact), then:

1. ``upload_file_prepare`` over Socket.IO;
2. ``PUT`` the body, generated on the fly and streamed a chunk at a time,
   never held whole in the client's memory either;
3. ``upload_file_complete``; the friend receives ``new_message``;
4. the friend downloads it streaming and the SHA-256 of both ends is compared.

It prints MiB/s for the upload and the download and the server's peak
resident memory (VmHWM from /proc/<pid>/status) before and after, which is
what shows the body was streamed to disk rather than buffered.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import socketio

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process has had so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def post_json(port: int, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def start_server(data_dir: Path, port: int, max_size_mib: int) -> subprocess.Popen:
    config = data_dir / "umoc.yaml"
    config.write_text(
        json.dumps(
            {
                "server": {"listen": f"tcp:{port}:interface=127.0.0.1", "data_dir": str(data_dir)},
                "uploads": {"max_size": f"{max_size_mib}M"},
                "ratelimits": {"enabled": False},
            }
        )
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "--nodaemon",
            "--pidfile=",
            "--logfile",
            str(data_dir / "umoc.log"),
            "umoc",
            "--config",
            str(config),
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"server did not start; see {data_dir / 'umoc.log'}")


class Person:
    """A registered, logged-in user with a connected Socket.IO client recording events."""

    def __init__(self, port: int, name: str) -> None:
        password = "benchmark password"
        code, body = post_json(port, "/api/register", {"username": name, "password": password})
        assert code == 201, body
        code, self.login = post_json(port, "/api/login", {"username": name, "password": password})
        assert code == 200, self.login
        self.events: dict[str, list[Any]] = {}
        self.arrived = threading.Condition()
        self.sio = socketio.Client(reconnection=False, request_timeout=60)
        self.sio.on("*", self._record)
        self.sio.connect(
            f"http://127.0.0.1:{port}/?sessionID={self.login['sessionID']}&token={self.login['token']}",
            transports=["websocket"],
            wait_timeout=10,
        )

    def _record(self, event: str, *args: Any) -> None:
        with self.arrived:
            self.events.setdefault(event, []).append(args[0] if args else None)
            self.arrived.notify_all()

    def wait_for(self, event: str, timeout: float = 30) -> Any:
        with self.arrived:
            if not self.arrived.wait_for(lambda: self.events.get(event), timeout):
                raise TimeoutError(f"no {event}")
            return self.events[event].pop(0)

    def call(self, event: str, **payload: Any) -> Any:
        answer = self.sio.call(event, {"sessionID": self.login["sessionID"], **payload}, timeout=60)
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(f"{event}: {answer['error']}")
        return answer


def generated_body(size: int, chunk: int, digest: Any) -> Iterator[bytes]:
    """``size`` bytes, one ``chunk`` at a time, hashed as they go: never the whole body in memory."""
    block = os.urandom(chunk)
    sent, index = 0, 0
    while sent < size:
        piece = index.to_bytes(8, "big") + block[8:]
        piece = piece[: size - sent]
        digest.update(piece)
        sent += len(piece)
        index += 1
        yield piece


def upload(port: int, ready: dict[str, Any], size: int, chunk: int) -> tuple[float, str]:
    digest = hashlib.sha256()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request(
        "PUT",
        ready["upload_url"],
        body=generated_body(size, chunk, digest),
        headers={
            "Authorization": f"Bearer {ready['upload_token']}",
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
        },
    )
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 201:
        raise RuntimeError(f"upload answered {response.status}: {body!r}")
    return elapsed, digest.hexdigest()


def download(port: int, url: str, login: dict[str, Any], chunk: int) -> tuple[float, str, int]:
    digest = hashlib.sha256()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("GET", url, headers={"X-Session-ID": login["sessionID"], "X-Session-Token": login["token"]})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"download answered {response.status}")
    total = 0
    while piece := response.read(chunk):
        digest.update(piece)
        total += len(piece)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, digest.hexdigest(), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--chunk-kib", type=int, default=1024)
    args = parser.parse_args()
    size, chunk = args.size_mib * MIB, args.chunk_kib * 1024

    with tempfile.TemporaryDirectory(prefix="umoc-bench-") as tmp:
        port = free_port()
        server = start_server(Path(tmp), port, args.size_mib + 16)
        people: list[Person] = []
        try:
            alice, bob = Person(port, "alice"), Person(port, "bob")
            people += [alice, bob]
            alice.call("add_contact", contact_username="bob")
            bob.call("accept_contact", contact_id=alice.login["user_id"])
            rss_before = peak_rss_mib(server.pid)

            ready = alice.call(
                "upload_file_prepare",
                recipient_id=bob.login["user_id"],
                is_group=False,
                file_name="bench.bin",
                file_size=size,
                file_type="application/octet-stream",
            )
            up_seconds, sent_hash = upload(port, ready, size, chunk)
            rss_after_upload = peak_rss_mib(server.pid)
            alice.call(
                "upload_file_complete",
                file_id=ready["file_id"],
                recipient_id=bob.login["user_id"],
                is_group=False,
                file_name="bench.bin",
                file_type="application/octet-stream",
            )
            message = bob.wait_for("new_message")
            url = json.loads(message["content"])["url"]
            down_seconds, got_hash, got = download(port, url, bob.login, chunk)
            rss_after_download = peak_rss_mib(server.pid)
        finally:
            for person in people:
                person.sio.disconnect()
            server.terminate()
            server.wait(10)

    print(f"file size:            {args.size_mib} MiB (client chunks of {args.chunk_kib} KiB)")
    print(f"upload:               {up_seconds:.2f} s  = {args.size_mib / up_seconds:.1f} MiB/s")
    print(f"download:             {down_seconds:.2f} s  = {got / MIB / down_seconds:.1f} MiB/s")
    print(f"bytes identical:      {got == size and got_hash == sent_hash}")
    print(
        f"server peak RSS:      {rss_before:.1f} MiB before, {rss_after_upload:.1f} MiB after upload, "
        f"{rss_after_download:.1f} MiB after download (VmHWM)"
    )
    if got_hash != sent_hash:
        sys.exit("downloaded bytes differ from the uploaded ones")


if __name__ == "__main__":
    main()
