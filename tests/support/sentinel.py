"""A throw-away Redis master, its replica and one Sentinel on free loopback ports, to fail over for real.

Timeouts are as low as Sentinel allows, so that a failover takes about
two seconds: the master is held down after 500 ms of silence, and with a
quorum of one this sentinel alone decides.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["REDIS_SERVER", "SentinelSet", "free_port"]

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(port: int, *args: str, timeout: float = 1.0) -> Any:
    """One command over RESP with a blocking socket (set-up and polling): the reply, bytes and lists."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        with s.makefile("rb") as reply:
            return _read(reply)


def _read(reply: Any) -> Any:
    line = reply.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b":"):
        return rest
    if kind == b"-":
        raise OSError(rest.decode())
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reply.read(size + 2)[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read(reply) for _ in range(count)]
    raise OSError(f"unexpected reply {line!r}")


class SentinelSet:
    """``redis-server`` master and replica, and ``redis-server --sentinel`` watching them as ``umoc``."""

    name = "umoc"

    def __init__(self) -> None:
        assert REDIS_SERVER is not None
        self.dir = Path(tempfile.mkdtemp(prefix="umoc-sentinel-"))
        self.master_port, self.replica_port, self.sentinel_port = free_port(), free_port(), free_port()
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def sentinels(self) -> list[str]:
        return [f"127.0.0.1:{self.sentinel_port}"]

    def _server(self, name: str, *args: str) -> None:
        self.processes[name] = subprocess.Popen(
            [REDIS_SERVER, *args],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        # No diskless-sync delay: the replica is in sync in milliseconds instead of five seconds.
        plain = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0")
        self._server("master", "--port", str(self.master_port), *plain)
        self._wait_port(self.master_port)
        self._server(
            "replica", "--port", str(self.replica_port), "--replicaof", "127.0.0.1", str(self.master_port), *plain
        )
        # In sync before the sentinel starts: it learns the replicas from the master's INFO, at once
        # when it connects and then only every ten seconds.
        self._wait(lambda: b"master_link_status:up" in command(self.replica_port, "INFO", "replication"))
        self._wait(lambda: b"slave0:" in command(self.master_port, "INFO", "replication"))
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.dir}\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.name} 500\n"
            f"sentinel failover-timeout {self.name} 2000\n"
            f"sentinel parallel-syncs {self.name} 1\n"
        )
        self._server("sentinel", str(conf), "--sentinel")
        self._wait_port(self.sentinel_port)
        # The sentinel must know the replica (from the master's INFO) before the master may die.
        replica = f"127.0.0.1:{self.replica_port}".encode()
        self._wait(
            lambda: any(replica in entry for entry in command(self.sentinel_port, "SENTINEL", "REPLICAS", self.name))
        )

    def master_port_now(self) -> int | None:
        """The master's port as the sentinel says it now."""
        reply = command(self.sentinel_port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name, timeout=0.5)
        return int(reply[1]) if reply else None

    def kill_master(self) -> None:
        """SIGKILL: no goodbye to anyone."""
        process = self.processes.pop("master")
        process.kill()
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _wait_port(port: int) -> None:
        def accepts() -> bool:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return True

        SentinelSet._wait(accepts)

    @staticmethod
    def _wait(probe: object, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if probe():  # type: ignore[operator]
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("the Redis master, replica or sentinel did not come up")
