"""A throw-away PostgreSQL primary and its streaming standby on free loopback ports, to promote for real.

Built with the server's own tools (``initdb``, ``pg_basebackup -R``,
``pg_ctl``) run as the ``postgres`` user (``initdb`` refuses root) in a
temporary directory of its own.  Replication is synchronous
(``synchronous_standby_names = '*'``): a commit is acknowledged once the
standby has it, so a crash of the primary loses nothing acknowledged; the
standby is told to wait for nobody once promoted.  ``fsync`` is off: the
test kills the primary's processes, not the machine.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.sentinel import free_port

__all__ = ["NO_PG_BINARIES", "PostgresPair"]

BIN = Path(os.environ.get("UMOC_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _why_not() -> str | None:
    missing = [tool for tool in ("initdb", "pg_ctl", "pg_basebackup") if not (BIN / tool).exists()]
    if missing:
        return f"PostgreSQL server binaries are missing ({', '.join(missing)} in {BIN}; set UMOC_TEST_PG_BIN)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no 'postgres' OS user to run initdb and the servers as"
    if os.geteuid() != 0 and pwd.getpwnam("postgres").pw_uid != os.geteuid():
        return "running the PostgreSQL servers needs root (to act as 'postgres') or the 'postgres' user"
    return None


#: Why a primary and standby cannot be started here (None: they can).
NO_PG_BINARIES = _why_not()


class PostgresPair:
    """A primary on one port and its synchronous streaming standby on another."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="umoc-pgpair-"))
        self.user = pwd.getpwnam("postgres")
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.primary_port, self.standby_port = free_port(), free_port()
        self.primary_dir, self.standby_dir = self.dir / "primary", self.dir / "standby"
        self.running: set[Path] = set()

    @property
    def dsn(self) -> str:
        """The multi-host DSN a node is given: whichever of the two takes writes."""
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary_port},127.0.0.1:{self.standby_port}/postgres"
            "?target_session_attrs=read-write"
        )

    def _run(self, tool: str, *args: str) -> None:
        command = [str(BIN / tool), *args]
        if os.geteuid() != self.user.pw_uid:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _settings(self, data: Path, port: int, extra: str = "") -> None:
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                "fsync = off\nfull_page_writes = off\nwal_level = replica\nmax_wal_senders = 4\n"
                "wal_receiver_status_interval = 1s\nlogging_collector = off\n" + extra
            )

    def _start(self, data: Path) -> None:
        self._run("pg_ctl", "-D", str(data), "-l", str(data) + ".log", "-w", "-t", "30", "start")
        self.running.add(data)

    def start(self) -> None:
        """initdb, the primary up, a base backup of it, the standby up and in sync."""
        self._run("initdb", "-D", str(self.primary_dir), "-A", "trust", "-U", "postgres", "--no-sync")
        self._settings(self.primary_dir, self.primary_port, "synchronous_standby_names = '*'\n")
        self._start(self.primary_dir)
        self._run(
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres"),
            *("-D", str(self.standby_dir), "-R", "-X", "stream", "--no-sync", "-c", "fast"),
        )
        # Once promoted it must wait for no standby of its own, or every commit would hang.
        self._settings(self.standby_dir, self.standby_port, "synchronous_standby_names = ''\n")
        self._start(self.standby_dir)
        self._wait_in_sync()

    def _wait_in_sync(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            conn = psycopg2.connect(host="127.0.0.1", port=self.primary_port, user="postgres", dbname="postgres")
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")
                    if cur.fetchone()[0]:
                        return
            finally:
                conn.close()
            time.sleep(0.05)
        raise RuntimeError("the standby did not come in sync")

    def crash_primary(self) -> None:
        """``pg_ctl stop -m immediate``: every server process quits at once, as in a crash (no checkpoint)."""
        self._run("pg_ctl", "-D", str(self.primary_dir), "-m", "immediate", "stop")
        self.running.discard(self.primary_dir)

    def promote_standby(self) -> None:
        """``pg_ctl promote -w``: returns once the standby takes writes."""
        self._run("pg_ctl", "-D", str(self.standby_dir), "-w", "-t", "30", "promote")

    def query(self, port: int, sql: str) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()

    def stop(self) -> None:
        for data in list(self.running):
            try:
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
            except subprocess.CalledProcessError:
                pass
        self.running.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
