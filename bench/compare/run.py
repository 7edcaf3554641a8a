"""UMOC vs the Node.js socket.io server vs python-socketio, side by side.

    /work/venv/bin/python bench/compare/run.py                 # everything (~5 min)
    /work/venv/bin/python bench/compare/run.py --servers umoc,node --quick

Servers (each started here, on 127.0.0.1, one at a time, stopped afterwards):

* ``umoc-app``: the real server (``python -m twisted umoc``, SQLite in a temp dir,
  rate limits off, socket quotas raised so one user may hold 5,000 sockets).
  Its events are the real ones: ``send_message`` between two friends, which
  writes the message and delivers ``new_message`` to the sender's and the
  recipient's sockets.
* ``umoc``: UMOC's protocol stack with the conformance app
  (``bench/compare/umoc_transport_server.py``).
* ``node``: socket.io 4.x (``bench/compare/node_server.js``).
* ``python-socketio``: ``AsyncServer`` on aiohttp (``bench/compare/pysio_server.py``).

The last three run the same echo/ack/broadcast app, so they compare the
transports alone.  The load comes from ``bench/compare/loadgen.js`` (Node, raw
frames, one process); its own CPU use is printed so a saturated generator is
visible.  Every scenario is bounded in clients, time and rounds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = sys.executable
NODE = shutil.which("node") or "node"

TEXT = "hello there, this is a short chat message"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def loadgen(job: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([NODE, os.path.join(HERE, "loadgen.js"), json.dumps(job)], cwd=ROOT,
                         capture_output=True, text=True, timeout=job.get("timeout", 120) + 15)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": (out.stderr or out.stdout)[-500:]}
    return json.loads(lines[-1])


# -- servers ---------------------------------------------------------------


class Server:
    """One server under test: start, optional setup, stop."""

    name = ""
    ack_event: list[Any] = ["message-with-ack", {"text": TEXT}]

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.url = f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.process = subprocess.Popen(self.command(), cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_port(self.port, self.process)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def jobs(self, quick: bool) -> dict[str, dict[str, Any]]:
        dur = 3 if quick else 5
        return {
            "lat1": {"scenario": "latency", "clients": 1, "ack": self.ack_event, "warmup": 1, "duration": dur},
            "lat100": {"scenario": "latency", "clients": 100, "ack": self.ack_event, "warmup": 1, "duration": dur},
            "thr": {"scenario": "throughput", "clients": 50, "window": 10, "echo": ["message", {"text": TEXT}],
                    "echoReply": "message-back", "warmup": 1, "duration": dur},
            "fan": {"scenario": "fanout", "clients": 1000, "rounds": 10 if quick else 30,
                    "fanout": ["broadcast", {"text": ""}], "fanoutEvent": "broadcast"},
            "idle1000": {"scenario": "idle", "clients": 1000, "settle": 2},
            "idle5000": {"scenario": "idle", "clients": 5000, "settle": 3, "timeout": 180},
        }


class UmocTransport(Server):
    name = "umoc"

    def command(self) -> list[str]:
        return [PY, os.path.join(HERE, "umoc_transport_server.py"), str(self.port)]


class NodeServer(Server):
    name = "node"

    def command(self) -> list[str]:
        return [NODE, os.path.join(HERE, "node_server.js"), str(self.port)]


class PythonSocketIO(Server):
    name = "python-socketio"

    def command(self) -> list[str]:
        return [PY, os.path.join(HERE, "pysio_server.py"), str(self.port)]


class UmocApp(Server):
    """The real UMOC server with real users, friendships and messages (SQLite)."""

    name = "umoc-app"
    USERS = 100  # 50 pairs of friends; user 2k and 2k+1 write to each other

    def __init__(self) -> None:
        super().__init__()
        self.data_dir = tempfile.mkdtemp(prefix="umoc-compare-")
        self.http = f"http://127.0.0.1:{self.port}"
        self.logins: list[dict[str, Any]] = []

    def database(self) -> dict[str, Any]:
        return {}

    def command(self) -> list[str]:
        config = os.path.join(self.data_dir, "umoc.yaml")
        with open(config, "w", encoding="utf-8") as f:
            json.dump({  # JSON is YAML
                "ratelimits": {"enabled": False},
                "engineio": {"max_sockets_per_session": 10_000, "max_sockets_per_ip": 1_000_000},
                "database": self.database(),
            }, f)
        return [PY, "-m", "twisted", "umoc", "--config", config,
                "--listen", f"tcp:{self.port}:interface=127.0.0.1", "--data-dir", self.data_dir]

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(self.http + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def _user(self, i: int) -> dict[str, Any]:
        name, password = f"bench{i}", f"bench password {i}"
        self._post("/api/register", {"username": name, "password": password})
        return self._post("/api/login", {"username": name, "password": password})

    def start(self) -> None:
        super().start()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            self.logins = list(pool.map(self._user, range(self.USERS)))
        import socketio

        def befriend(pair: int) -> None:
            a, b = self.logins[2 * pair], self.logins[2 * pair + 1]
            clients = []
            for login in (a, b):
                c = socketio.Client(reconnection=False)
                c.connect(f"{self.http}/?sessionID={login['sessionID']}&token={login['token']}",
                          transports=["websocket"], wait_timeout=30)
                clients.append(c)
            clients[0].call("add_contact", {"contact_username": b["username"]}, timeout=30)
            clients[1].call("accept_contact", {"contact_id": a["user_id"]}, timeout=30)
            for c in clients:
                c.disconnect()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(befriend, range(self.USERS // 2)))

    def _query(self, login: dict[str, Any]) -> str:
        return f"&sessionID={login['sessionID']}&token={login['token']}"

    def jobs(self, quick: bool) -> dict[str, dict[str, Any]]:
        dur = 3 if quick else 5
        logins = self.logins
        everyone = [self._query(x) for x in logins]
        partners = [{"recipient_id": logins[i ^ 1]["user_id"]} for i in range(len(logins))]
        message = ["send_message", {"recipient_id": 0, "content": TEXT}]
        sender, recipient = logins[0], logins[1]
        # Client 0 is the sender; clients 1..999 are the recipient's sockets.
        fan_queries = [self._query(sender)] + [self._query(recipient)] * 999
        return {
            "lat1": {"scenario": "latency", "clients": 1, "queries": everyone, "ack": message,
                     "ackTargets": partners, "warmup": 1, "duration": dur},
            "lat100": {"scenario": "latency", "clients": 100, "queries": everyone, "ack": message,
                       "ackTargets": partners, "warmup": 1, "duration": dur},
            "thr": {"scenario": "throughput", "clients": 100, "window": 10, "queries": everyone, "echo": message,
                    "ackTargets": partners, "echoAck": True, "warmup": 1, "duration": dur},
            "fan": {"scenario": "fanout", "clients": 1000, "rounds": 10 if quick else 30, "queries": fan_queries,
                    "fanout": message, "ackTargets": [{"recipient_id": recipient["user_id"]}],
                    "fanoutEvent": "new_message", "tagField": "content"},
            "idle1000": {"scenario": "idle", "clients": 1000, "settle": 2, "queries": [self._query(recipient)]},
            "idle5000": {"scenario": "idle", "clients": 5000, "settle": 3, "timeout": 180,
                         "queries": [self._query(recipient)]},
        }


class UmocAppPostgres(UmocApp):
    """The real UMOC server on PostgreSQL: a fresh database, dropped afterwards.

    The server is ``UMOC_BENCH_POSTGRES`` (default: the local one the tests use).
    """

    name = "umoc-app-pg"

    def __init__(self) -> None:
        super().__init__()
        self.admin_dsn = os.environ.get("UMOC_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
        self.db_name = f"umoc_bench_{os.getpid()}"

    def _admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.admin_dsn)
        try:
            conn.autocommit = True
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def database(self) -> dict[str, Any]:
        base = self.admin_dsn.rsplit("/", 1)[0]
        return {"dsn": f"{base}/{self.db_name}", "pool_max": 5}

    def start(self) -> None:
        self._admin(f"CREATE DATABASE {self.db_name}")
        super().start()

    def stop(self) -> None:
        super().stop()
        self._admin(f"DROP DATABASE IF EXISTS {self.db_name}")


SERVERS: dict[str, Callable[[], Server]] = {
    "umoc-app": UmocApp,
    "umoc-app-pg": UmocAppPostgres,
    "umoc": UmocTransport,
    "node": NodeServer,
    "python-socketio": PythonSocketIO,
}


def run_server(make: Callable[[], Server], only: list[str] | None, quick: bool,
               profile: str | None = None) -> dict[str, Any]:
    server = make()
    results: dict[str, Any] = {}
    try:
        server.start()
        assert server.process is not None
        results["rss0"] = rss_kb(server.process.pid)
        for key, job in server.jobs(quick).items():
            if only and key not in only:
                continue
            job = {"url": server.url, "serverPid": server.process.pid, **job}
            spy = None
            if profile and server.command()[0] == PY:
                # Collapsed stacks ("flamegraph" text), one file per server and scenario.
                out = os.path.join(profile, f"{server.name}-{key}.txt")
                spy = subprocess.Popen([os.path.join(os.path.dirname(PY), "py-spy"), "record", "--format", "raw",
                                        "--nonblocking", "-r", "200", "-o", out, "--pid", str(server.process.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results[key] = loadgen(job)
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
                spy.wait(30)
            print(f"  {server.name:16} {key:9} {json.dumps(results[key])}", file=sys.stderr, flush=True)
            if server.process.poll() is not None:
                results["died"] = True
                break
    finally:
        server.stop()
    return results


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(all_results: dict[str, dict[str, Any]]) -> str:
    rows = [
        ("ack RTT, 1 client, p50 / p99 (ms)", lambda r: f"{fmt(r.get('lat1', {}).get('p50'), '.3f')} / "
                                                         f"{fmt(r.get('lat1', {}).get('p99'), '.3f')}"),
        ("ack RTT, 100 clients, p50 / p99 (ms)", lambda r: f"{fmt(r.get('lat100', {}).get('p50'), '.2f')} / "
                                                            f"{fmt(r.get('lat100', {}).get('p99'), '.2f')}"),
        ("acks/s, 100 clients", lambda r: fmt(r.get("lat100", {}).get("perSec"), ",.0f")),
        ("echo msgs/s at saturation", lambda r: fmt(r.get("thr", {}).get("perSec"), ",.0f")),
        ("  (load generator CPU, cores)", lambda r: fmt(r.get("thr", {}).get("loadgenCpu"), ".2f")),
        ("fan-out to 1,000 sockets, p50 / max (ms)", lambda r: f"{fmt(r.get('fan', {}).get('p50'), '.1f')} / "
                                                                f"{fmt(r.get('fan', {}).get('max'), '.1f')}"),
        ("RSS at start (MB)", lambda r: fmt(r.get("rss0", 0) / 1024 if "rss0" in r else None, ".0f")),
        ("RSS, 1,000 idle clients (MB)", lambda r: fmt((r.get("idle1000", {}).get("rssKb") or 0) / 1024 or None,
                                                       ".0f")),
        ("RSS, 5,000 idle clients (MB)", lambda r: fmt((r.get("idle5000", {}).get("rssKb") or 0) / 1024 or None,
                                                       ".0f")),
        ("connect 5,000 clients (s)", lambda r: fmt((r.get("idle5000", {}).get("connectMs") or 0) / 1000 or None,
                                                    ".1f")),
    ]
    names = list(all_results)
    width = max(len(r[0]) for r in rows) + 2
    cols = [max(16, len(n) + 2) for n in names]
    lines = ["".ljust(width) + "".join(n.rjust(c) for n, c in zip(names, cols, strict=True))]
    for label, get in rows:
        cells = (get(all_results[n]).rjust(c) for n, c in zip(names, cols, strict=True))
        lines.append(label.ljust(width) + "".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="umoc-app,umoc,node,python-socketio",
                        help=f"comma-separated, from {', '.join(SERVERS)}")
    parser.add_argument("--only", help="comma-separated scenarios: lat1,lat100,thr,fan,idle1000,idle5000")
    parser.add_argument("--quick", action="store_true", help="3 s runs and fewer fan-out rounds")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the Python servers during each scenario into DIR")
    args = parser.parse_args()
    only = args.only.split(",") if args.only else None
    results: dict[str, dict[str, Any]] = {}
    for name in args.servers.split(","):
        print(f"== {name}", file=sys.stderr, flush=True)
        if args.profile:
            os.makedirs(args.profile, exist_ok=True)
        results[name] = run_server(SERVERS[name], only, args.quick, args.profile)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
