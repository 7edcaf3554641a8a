"""UMOC vs the Node.js socket.io server vs python-socketio, side by side.

    python bench/compare/run.py                 # everything, pinned and unpinned, 5 s runs
    python bench/compare/run.py --quick         # the same with 3 s runs (9 minutes on 2 cores)
    python bench/compare/run.py --servers umoc,node --modes pinned --only lat100,thr

Pinned: each server on CPU 0 (``taskset -c 0``), the load generator on
CPU 1, so the server has one core of its own, as in production behind a
process per core.  Unpinned: neither is pinned.  Each table carries the
ratio UMOC / Node of the same run, the only number comparable from run to
run on a shared machine.

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
* ``umoc-cluster``: two real UMOC nodes on one PostgreSQL database and one
  Redis (``UMOC_BENCH_POSTGRES``, ``UMOC_BENCH_REDIS``: default the local
  ones the tests use); ``send_message`` between friends whose sockets are on
  the same node and on different nodes, and the server CPU time (both
  nodes, from ``/proc/<pid>/stat``) per message delivered.

The last three run the same echo/ack/broadcast app, so they compare the
transports alone.  The load comes from ``bench/compare/loadgen.js`` (Node, raw
frames, one process); its own CPU use is printed so a saturated generator is
visible, and so is each server's own CPU time per ack and per echo (its
process, from ``/proc/<pid>/stat``, inside the measured window): when the
generator saturates first (a whole core), the rates only say both servers
keep up with it, and the CPU per event is what still compares them.  Every
scenario is bounded in clients, time and rounds.

``conn`` is 50 loops of connect, CONNECT accepted, close (after a second's
warm-up), with the server's CPU per connect: the transport servers and Node
accept any CONNECT, ``umoc-app`` logs each one in with a user's session (a
session cache hit), reads the feed position, joins the hub and announces the
user online and offline to its friends, as a real connect does.
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


#: CPU sets per mode: (server, load generator); None leaves a process unpinned.
MODES: dict[str, tuple[str | None, str | None]] = {"pinned": ("0", "1"), "unpinned": (None, None)}


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return command if cpus is None else ["taskset", "-c", cpus, *command]


def loadgen(job: dict[str, Any], cpus: str | None = None) -> dict[str, Any]:
    command = pinned([NODE, os.path.join(HERE, "loadgen.js"), json.dumps(job)], cpus)
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=job.get("timeout", 120) + 15)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": (out.stderr or out.stdout)[-500:]}
    return json.loads(lines[-1])


# -- servers ---------------------------------------------------------------


class Server:
    """One server under test: start, optional setup, stop."""

    name = ""
    ack_event: list[Any] = ["message-with-ack", {"text": TEXT}]

    def __init__(self, cpus: str | None = None) -> None:
        self.cpus = cpus
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.url = f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.process = subprocess.Popen(
            pinned(self.command(), self.cpus), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
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

    def after_job(self, key: str, result: dict[str, Any]) -> None:
        """Called with each scenario's result (to add what the server knows)."""

    def jobs(self, quick: bool) -> dict[str, dict[str, Any]]:
        dur = 3 if quick else 5
        return {
            "lat1": {"scenario": "latency", "clients": 1, "ack": self.ack_event, "warmup": 1, "duration": dur},
            "lat100": {"scenario": "latency", "clients": 100, "ack": self.ack_event, "warmup": 1, "duration": dur},
            "thr": {
                "scenario": "throughput",
                "clients": 50,
                "window": 10,
                "echo": ["message", {"text": TEXT}],
                "echoReply": "message-back",
                "warmup": 1,
                "duration": dur,
            },
            "fan": {
                "scenario": "fanout",
                "clients": 1000,
                "rounds": 10 if quick else 30,
                "fanout": ["broadcast", {"text": ""}],
                "fanoutEvent": "broadcast",
            },
            "idle10000": {"scenario": "idle", "clients": 10_000, "settle": 3, "timeout": 240},
            "conn": self.connect_job(dur),
        }

    def connect_job(self, dur: int) -> dict[str, Any]:
        """``conn``: 50 loops of connect, CONNECT accepted, close (unauthenticated here; UMOC's app logs in)."""
        return {"scenario": "connects", "concurrency": 50, "warmup": 1, "duration": dur}


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

    def __init__(self, cpus: str | None = None) -> None:
        super().__init__(cpus)
        self.data_dir = tempfile.mkdtemp(prefix="umoc-compare-")
        self.http = f"http://127.0.0.1:{self.port}"
        self.logins: list[dict[str, Any]] = []

    def database(self) -> dict[str, Any]:
        return {}

    def config(self) -> dict[str, Any]:
        return {
            "ratelimits": {"enabled": False},
            "engineio": {"max_sockets_per_session": 20_000, "max_sockets_per_ip": 1_000_000},
            "database": self.database(),
        }

    def command(self) -> list[str]:
        return self.command_for(self.port, self.data_dir)

    def command_for(self, port: int, data_dir: str) -> list[str]:
        config = os.path.join(data_dir, "umoc.yaml")
        with open(config, "w", encoding="utf-8") as f:
            json.dump(self.config(), f)  # JSON is YAML
        return [
            PY,
            "-m",
            "twisted",
            "umoc",
            "--config",
            config,
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--data-dir",
            data_dir,
        ]

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.http + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
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
                c.connect(
                    f"{self.http}/?sessionID={login['sessionID']}&token={login['token']}",
                    transports=["websocket"],
                    wait_timeout=30,
                )
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
            "lat1": {
                "scenario": "latency",
                "clients": 1,
                "queries": everyone,
                "ack": message,
                "ackTargets": partners,
                "warmup": 1,
                "duration": dur,
            },
            "lat100": {
                "scenario": "latency",
                "clients": 100,
                "queries": everyone,
                "ack": message,
                "ackTargets": partners,
                "warmup": 1,
                "duration": dur,
            },
            "thr": {
                "scenario": "throughput",
                "clients": 100,
                "window": 10,
                "queries": everyone,
                "echo": message,
                "ackTargets": partners,
                "echoAck": True,
                "warmup": 1,
                "duration": dur,
            },
            "fan": {
                "scenario": "fanout",
                "clients": 1000,
                "rounds": 10 if quick else 30,
                "queries": fan_queries,
                "fanout": message,
                "ackTargets": [{"recipient_id": recipient["user_id"]}],
                "fanoutEvent": "new_message",
                "tagField": "content",
            },
            "idle10000": {
                "scenario": "idle",
                "clients": 10_000,
                "settle": 3,
                "timeout": 240,
                "queries": [self._query(recipient)],
            },
            # Authenticated: each user's own session (a session cache hit after its first connect).
            "conn": {**self.connect_job(dur), "queries": everyone},
        }


class UmocAppPostgres(UmocApp):
    """The real UMOC server on PostgreSQL: a fresh database, dropped afterwards.

    The server is ``UMOC_BENCH_POSTGRES`` (default: the local one the tests use).
    """

    name = "umoc-app-pg"

    def __init__(self, cpus: str | None = None) -> None:
        super().__init__(cpus)
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


class UmocCluster(UmocAppPostgres):
    """Two real UMOC nodes on one PostgreSQL database and one Redis: local vs cross-node delivery.

    50 senders on node A each keep a few ``send_message`` in flight to
    their friend, whose one socket is on node A too (``local``) or on node
    B (``cross``).  The result is the server CPU time of both nodes over
    the measured window divided by the messages the recipients received:
    what one delivery costs, everything included (database calls, the
    sender's own copy, the Redis publication every message makes, and
    for ``cross`` the other node's decoding and delivery).
    """

    name = "umoc-cluster"

    def __init__(self, cpus: str | None = None) -> None:
        super().__init__(cpus)
        self.redis_url = os.environ.get("UMOC_BENCH_REDIS", "redis://127.0.0.1:6379/0")
        self.prefix = f"umoc-bench-{os.getpid()}-{self.port}:"
        self.port_b = free_port()
        self.data_dir_b = tempfile.mkdtemp(prefix="umoc-compare-")
        self.url_b = f"ws://127.0.0.1:{self.port_b}/socket.io/?EIO=4&transport=websocket"
        self.process_b: subprocess.Popen | None = None

    def config(self) -> dict[str, Any]:
        return {**super().config(), "redis": {"url": self.redis_url, "prefix": self.prefix}}

    def start(self) -> None:
        self.process_b = subprocess.Popen(
            pinned(self.command_for(self.port_b, self.data_dir_b), self.cpus),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        super().start()  # node A: creates the database, then registers and befriends through A
        wait_port(self.port_b, self.process_b)

    def stop(self) -> None:
        if self.process_b is not None and self.process_b.poll() is None:
            self.process_b.terminate()
            try:
                self.process_b.wait(15)
            except subprocess.TimeoutExpired:
                self.process_b.kill()
                self.process_b.wait()
        shutil.rmtree(self.data_dir_b, ignore_errors=True)
        super().stop()

    def _bus_published(self) -> float:
        """Node A's ``umoc_bus_published`` counter (PUBLISH commands answered)."""
        with urllib.request.urlopen(self.http + "/metrics", timeout=30) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("umoc_bus_published_total "):
                    return float(line.split()[1])
        return 0.0

    def after_job(self, key: str, result: dict[str, Any]) -> None:
        published = self._bus_published()
        # PUBLISH commands per message over the whole job (warm-up and drain included): below 1, batched.
        sent = result.get("sentTotal")
        result["publishedPerMessage"] = (published - self._published) / sent if sent else None
        self._published = published

    def jobs(self, quick: bool) -> dict[str, dict[str, Any]]:
        assert self.process is not None and self.process_b is not None
        self._published = self._bus_published()
        logins = self.logins
        base = {
            "scenario": "deliver",
            "clients": len(logins),
            "queries": [self._query(x) for x in logins],
            "echo": ["send_message", {"recipient_id": 0, "content": TEXT}],
            "ackTargets": [{"recipient_id": logins[i ^ 1]["user_id"]} for i in range(len(logins))],
            "deliverEvent": "new_message",
            "window": 4,
            "warmup": 1,
            "duration": 3 if quick else 5,
            "cpuPids": [self.process.pid, self.process_b.pid],
        }
        # Client i is user i; even ones send to the next odd one.
        rounds = 1 if quick else 2
        jobs: dict[str, dict[str, Any]] = {}
        for k in range(rounds):  # interleaved: the machine's load drifts
            jobs[f"local{k}"] = {**base, "urls": [self.url, self.url]}
            jobs[f"cross{k}"] = {**base, "urls": [self.url, self.url_b]}
        return jobs


SERVERS: dict[str, Callable[..., Server]] = {
    "umoc-app": UmocApp,
    "umoc-app-pg": UmocAppPostgres,
    "umoc-cluster": UmocCluster,
    "umoc": UmocTransport,
    "node": NodeServer,
    "python-socketio": PythonSocketIO,
}


def run_server(
    make: Callable[..., Server], mode: str, only: list[str] | None, quick: bool, profile: str | None = None
) -> dict[str, Any]:
    server_cpus, loadgen_cpus = MODES[mode]
    server = make(server_cpus)
    results: dict[str, Any] = {}
    try:
        server.start()
        assert server.process is not None
        results["rss0"] = rss_kb(server.process.pid)
        for key, job in server.jobs(quick).items():
            if only and key.rstrip("0123456789") not in only and key not in only:
                continue
            job = {
                "url": server.url,
                "serverPid": server.process.pid,
                "baseRssKb": rss_kb(server.process.pid),
                # The server's own CPU per ack or echo: what it costs even when the generator is what saturates.
                "cpuPids": [server.process.pid],
                **job,
            }
            spies = []
            if profile and isinstance(server, UmocApp | UmocTransport):
                # Collapsed stacks ("flamegraph" text), one file per server process, mode and scenario.
                pids = [server.process.pid] + job.get("cpuPids", [])[1:]
                for n, pid in enumerate(pids):
                    out = os.path.join(profile, f"{server.name}-{mode}-{key}{'-b' if n else ''}.txt")
                    spies.append(
                        subprocess.Popen(
                            [
                                os.path.join(os.path.dirname(PY), "py-spy"),
                                "record",
                                "--format",
                                "raw",
                                "--nonblocking",
                                "-r",
                                "200",
                                "-o",
                                out,
                                "--pid",
                                str(pid),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
            results[key] = loadgen(job, loadgen_cpus)
            server.after_job(key, results[key])
            for spy in spies:
                spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
                spy.wait(30)
            print(f"  {server.name:16} {mode:8} {key:9} {json.dumps(results[key])}", file=sys.stderr, flush=True)
            if server.process.poll() is not None:
                results["died"] = True
                break
    finally:
        server.stop()
    return results


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def per_socket_kb(r: dict[str, Any]) -> float | None:
    """Idle memory per socket: RSS growth from before connecting to 10,000 sockets held."""
    idle = r.get("idle10000", {})
    if not idle.get("rssKb") or not idle.get("baseRssKb") or not idle.get("open"):
        return None
    return (idle["rssKb"] - idle["baseRssKb"]) / idle["open"]


def mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def mean_of(r: dict[str, Any], kind: str, field: str) -> float | None:
    """One field of a cluster scenario, averaged over its interleaved rounds."""
    return mean([v.get(field) for k, v in r.items() if k.startswith(kind) and isinstance(v, dict)])


def cluster_cost(r: dict[str, Any], kind: str) -> float | None:
    """Server CPU (us) per delivered message."""
    return mean_of(r, kind, "cpuUsPerDelivery")


def cluster_rate(r: dict[str, Any], kind: str) -> float | None:
    return mean_of(r, kind, "perSec")


def get(key: str, field: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: r.get(key, {}).get(field)


#: (label, value getter, format); the ratio column divides UMOC's value by Node's.
ROWS: list[tuple[str, Callable[[dict[str, Any]], float | None], str]] = [
    ("ack RTT, 1 client, p50 (ms)", get("lat1", "p50"), ".3f"),
    ("ack RTT, 100 clients, p50 (ms)", get("lat100", "p50"), ".2f"),
    ("ack RTT, 100 clients, p99 (ms)", get("lat100", "p99"), ".2f"),
    ("acks/s, 100 clients [target >= node]", get("lat100", "perSec"), ",.0f"),
    ("  (load generator CPU, cores)", get("lat100", "loadgenCpu"), ".2f"),
    ("  server CPU per ack (us)", get("lat100", "serverUsPerEvent"), ".1f"),
    ("echo msgs/s at saturation [target >= node]", get("thr", "perSec"), ",.0f"),
    ("  (load generator CPU, cores)", get("thr", "loadgenCpu"), ".2f"),
    ("  server CPU per echo (us)", get("thr", "serverUsPerEvent"), ".1f"),
    ("fan-out to 1,000, p50 (ms) [target <= node]", get("fan", "p50"), ".1f"),
    ("fan-out to 1,000, max (ms)", get("fan", "max"), ".1f"),
    ("RSS at start (MB)", lambda r: r["rss0"] / 1024 if "rss0" in r else None, ".0f"),
    ("RSS, 10,000 idle sockets (MB)", lambda r: (get("idle10000", "rssKb")(r) or 0) / 1024 or None, ".0f"),
    ("idle socket at 10,000 (KB) [target <= 8]", per_socket_kb, ".1f"),
    ("connect 10,000 sockets (s)", lambda r: (get("idle10000", "connectMs")(r) or 0) / 1000 or None, ".1f"),
    ("connects/s, 50 at a time (umoc-app: logged in)", get("conn", "perSec"), ",.0f"),
    ("  server CPU per connect (us)", get("conn", "serverUsPerEvent"), ".0f"),
]


def table(mode: str, all_results: dict[str, dict[str, Any]]) -> str:
    names = [n for n in all_results if n != "umoc-cluster"]
    ratios = [(f"{n}/node", n) for n in ("umoc", "umoc-app") if n in names and "node" in names]
    width = max(len(r[0]) for r in ROWS) + 2
    heads = names + [label for label, _ in ratios]
    cols = [max(13, len(h) + 2) for h in heads]
    lines = [f"-- {mode}", "".ljust(width) + "".join(h.rjust(c) for h, c in zip(heads, cols, strict=True))]
    for label, value, spec in ROWS:
        cells = [fmt(value(all_results[n]), spec) for n in names]
        node = value(all_results["node"]) if ratios else None
        for _, n in ratios:
            mine = value(all_results[n])
            cells.append(fmt(mine / node if mine is not None and node else None, ".2f"))
        lines.append(label.ljust(width) + "".join(c.rjust(w) for c, w in zip(cells, cols, strict=True)))
    return "\n".join(lines)


def cluster_table(by_mode: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "-- umoc-cluster: send_message to a friend, server CPU of both nodes per delivery [target cross <= 1.5x]",
        "".ljust(36) + "".join(m.rjust(12) for m in by_mode),
    ]
    rows: list[tuple[str, Callable[[dict[str, Any]], float | None], str]] = [
        ("local: CPU per delivery (us)", lambda r: cluster_cost(r, "local"), ",.0f"),
        ("cross-node: CPU per delivery (us)", lambda r: cluster_cost(r, "cross"), ",.0f"),
        ("cross / local", lambda r: (cluster_cost(r, "cross") or 0) / (cluster_cost(r, "local") or 1) or None, ".2f"),
        ("local: PUBLISH per message", lambda r: mean_of(r, "local", "publishedPerMessage"), ".2f"),
        ("cross-node: PUBLISH per message", lambda r: mean_of(r, "cross", "publishedPerMessage"), ".2f"),
        ("local: deliveries/s", lambda r: cluster_rate(r, "local"), ",.0f"),
        ("cross-node: deliveries/s", lambda r: cluster_rate(r, "cross"), ",.0f"),
    ]
    for label, value, spec in rows:
        lines.append(label.ljust(36) + "".join(fmt(value(r["umoc-cluster"]), spec).rjust(12) for r in by_mode.values()))
    return "\n".join(lines)


def summary(by_mode: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The targets' ratios to Node, pinned and unpinned side by side."""
    picked = [r for r in ROWS if "[target" in r[0]]
    heads = [f"{n} {m}" for n in ("umoc", "umoc-app") for m in by_mode]
    lines = [
        "-- UMOC / Node, same run (acks and echo: higher is better; fan-out and memory: lower)",
        "".ljust(46) + "".join(h.rjust(18) for h in heads),
    ]
    for label, value, _ in picked:
        cells = []
        for n in ("umoc", "umoc-app"):
            for results in by_mode.values():
                if n in results and "node" in results:
                    mine, node = value(results[n]), value(results["node"])
                    cells.append(fmt(mine / node if mine is not None and node else None, ".2f"))
                else:
                    cells.append("-")
        lines.append(label.ljust(46) + "".join(c.rjust(18) for c in cells))
    return "\n".join(lines)


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--servers",
        default="umoc-app,umoc,node,python-socketio,umoc-cluster",
        help=f"comma-separated, from {', '.join(SERVERS)}",
    )
    parser.add_argument("--modes", default="pinned,unpinned", help="pinned, unpinned or both")
    parser.add_argument("--only", help="comma-separated scenarios: lat1,lat100,thr,fan,idle10000,conn,local,cross")
    parser.add_argument("--quick", action="store_true", help="3 s runs, fewer fan-out and cluster rounds")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the Python servers during each scenario into DIR")
    args = parser.parse_args()
    only = args.only.split(",") if args.only else None
    by_mode: dict[str, dict[str, dict[str, Any]]] = {}
    loads = [load_average()]
    for mode in args.modes.split(","):
        results = by_mode[mode] = {}
        for name in args.servers.split(","):
            print(f"== {name} ({mode}), load {load_average()}", file=sys.stderr, flush=True)
            if args.profile:
                os.makedirs(args.profile, exist_ok=True)
            results[name] = run_server(SERVERS[name], mode, only, args.quick, args.profile)
    loads.append(load_average())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(by_mode, f, indent=1)
    print(f"load average before / after: {loads[0]} / {loads[1]}")
    for mode, results in by_mode.items():
        if any(n != "umoc-cluster" for n in results):
            print(table(mode, results))
    if any("node" in r for r in by_mode.values()):
        print(summary(by_mode))
    if all("umoc-cluster" in r for r in by_mode.values()):
        print(cluster_table(by_mode))


if __name__ == "__main__":
    main()
