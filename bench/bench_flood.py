"""One client floods events as fast as it can; does another one notice?

Starts a UMOC server (``twistd umoc``, SQLite, in a temporary directory)
unless ``--url`` names a running one, logs in two users, then measures the
second user's ``ping`` round trip (Socket.IO acknowledgement) twice: alone,
and while the first user sends ``ping`` events as fast as its WebSocket
allows (another process, reading its replies so it is not dropped as a slow
reader).  Prints median and p99 of both runs and their ratio; the goal is a
bounded factor, because each socket's events queue separately and the
reactor interleaves them.

    python bench/bench_flood.py                # rate limits off: raw fairness
    python bench/bench_flood.py --ratelimits   # the default limits on: the flood is refused early
    python bench/bench_flood.py --url http://127.0.0.1:8080 --samples 500
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def user(url: str, name: str) -> dict[str, Any]:
    password = "bench password " + name
    post(url, "/api/register", {"username": name, "password": password})
    return post(url, "/api/login", {"username": name, "password": password})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ratelimits: bool) -> tuple[subprocess.Popen, str]:
    data_dir = tempfile.mkdtemp(prefix="umoc-bench-")
    config = os.path.join(data_dir, "umoc.yaml")
    with open(config, "w", encoding="utf-8") as f:
        json.dump({"ratelimits": {"enabled": ratelimits}}, f)  # JSON is YAML
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twisted",
            "umoc",
            "--config",
            config,
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--data-dir",
            data_dir,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return process, url
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the server did not start")


def flood(url: str, login: dict[str, Any], ready: Any, stop: Any, sent: Any, drops: Any) -> None:
    """Another process: send pings without pause, read what comes back, reconnect when dropped."""
    import websocket

    ws_url = url.replace("http", "ws", 1) + (
        f"/socket.io/?EIO=4&transport=websocket&sessionID={login['sessionID']}&token={login['token']}"
    )
    frame = '42["ping",{"timestamp":1}]'
    while not stop.is_set():
        ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        ws.recv()  # OPEN
        ws.send("40")
        while "connection_successful" not in ws.recv():
            pass

        def reader(ws: Any = ws) -> None:
            try:
                while True:
                    if ws.recv() == "2":
                        ws.send("3")  # answer heartbeats, or the server closes us
            except Exception:  # noqa: BLE001 - the socket closed
                return

        threading.Thread(target=reader, daemon=True).start()
        ready.set()
        try:
            while not stop.is_set():
                ws.send(frame)
                sent.value += 1
        except (OSError, websocket.WebSocketException):
            drops.value += 1  # too far behind reading its replies: the server let it go
        ws.close()


def measure(client: Any, samples: int) -> list[float]:
    rtts = []
    for i in range(samples):
        started = time.perf_counter()
        client.call("ping", {"timestamp": i}, timeout=30)
        rtts.append((time.perf_counter() - started) * 1000)
    return rtts


def summary(rtts: list[float]) -> tuple[float, float]:
    ordered = sorted(rtts)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--samples", type=int, default=300, help="pings per measurement")
    parser.add_argument("--ratelimits", action="store_true", help="keep the default rate limits on")
    args = parser.parse_args()

    import socketio

    process = None
    url = args.url
    if url is None:
        process, url = start_server(args.ratelimits)
    try:
        tag = uuid.uuid4().hex[:8]
        flooder_login = user(url, f"flood_{tag}")
        measured_login = user(url, f"calm_{tag}")
        client = socketio.Client(reconnection=False)
        client.connect(
            f"{url}/?sessionID={measured_login['sessionID']}&token={measured_login['token']}",
            transports=["websocket"],
            wait_timeout=10,
        )
        measure(client, 20)  # warm up
        alone = measure(client, args.samples)

        ready, stop = multiprocessing.Event(), multiprocessing.Event()
        sent, drops = multiprocessing.Value("l", 0), multiprocessing.Value("l", 0)
        flooder = multiprocessing.Process(target=flood, args=(url, flooder_login, ready, stop, sent, drops))
        flooder.start()
        ready.wait(30)
        time.sleep(0.5)  # let the flood build up
        before = sent.value
        started = time.perf_counter()
        flooded = measure(client, args.samples)
        elapsed = time.perf_counter() - started
        during = sent.value - before
        stop.set()
        flooder.join(30)
        client.disconnect()

        a_med, a_p99 = summary(alone)
        f_med, f_p99 = summary(flooded)
        print(f"ping round trip, {args.samples} samples (ms)")
        print(f"  alone:        median {a_med:7.2f}   p99 {a_p99:7.2f}")
        print(f"  during flood: median {f_med:7.2f}   p99 {f_p99:7.2f}")
        print(f"  factor:       median {f_med / a_med:7.1f}x  p99 {f_p99 / a_p99:7.1f}x")
        print(
            f"  flooder sent {during} events while measuring ({during / max(elapsed, 1e-9):.0f}/s),"
            f" dropped by the server {drops.value} times"
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
