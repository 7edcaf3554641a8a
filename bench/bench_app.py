"""The whole server under open-loop load, beside a plain driver loop of the same transaction.

    python bench/bench_app.py                   # SQLite and PostgreSQL, pinned and unpinned (~15 min)
    python bench/bench_app.py --quick           # shorter runs, fewer rates (~5 min)
    python bench/bench_app.py --databases sqlite --modes pinned --only direct

For each database (SQLite in a temp dir; PostgreSQL: a fresh database on
``UMOC_BENCH_POSTGRES``, default the local server, dropped afterwards) the
real server (``python -m twisted umoc``, rate limits off, socket quotas
raised) is started on a database seeded with the storage code's own
transactions: 1,000 users with one session each, ``--pairs`` friend pairs,
and groups of 200 and 1,000 members.  Then, for each mode:

* **direct**: open-loop ``send_message`` with acks, every user writing to
  its friend, at rising offered rates until saturation: the achieved rate,
  ack p50/p99, ``new_message`` delivery p50/p99 at the friend's socket, and
  a check that the rows stored with the run's tag equal the acks.  Sends
  refused at once with ``code: "overloaded"`` (``server.overload_wait``)
  are reported apart: refused/s in the measured window and their own ack
  p99; other ack errors are counted by code.
* **group200 / group1000**: open-loop ``send_message`` from 10 members to
  the group, every member connected: msgs/s, deliveries/s, p50/p99.
* **connects**: authenticated Socket.IO connects per second (connect with a
  session, CONNECT accepted, close), 50 at a time.
* **plain**: the transaction ``send_message``'s group commit runs (``umoc.storage.batching._batch_txn``
  with the posts' ``together``: PostgreSQL's ``post_messages``, SQLite's ``post_each_txn``), called on a
  bare ``sqlite3`` / ``psycopg2`` connection (no reactor, threads or sockets), committing each message and every 100,
  for a direct chat and the 1,000-member group; and the session lookup a
  connect would make without the cache.

Modes: ``pinned`` (the server's threads on core 0 with ``taskset -a -p``,
the load generator on core 1, the plain loop on core 0 where the server
runs) and ``unpinned`` (all free); the same server
process is re-pinned between modes, and with ``--repeats`` the order
alternates, so both see the same database and the same noise.  Last, the
server's RSS with 10,000 idle authenticated sockets.

The load comes from ``bench/compare/loadgen.js`` (one Node process, raw
Engine.IO frames), its CPU use printed beside each result.  Every run is
bounded: rates stop rising at saturation, each job has a timeout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from umoc.credentials import new_token, token_digest  # noqa: E402
from umoc.ids import MessageIds  # noqa: E402
from umoc.records import Actor  # noqa: E402
from umoc.records.groups import NewGroup  # noqa: E402
from umoc.records.messages import NewMessage  # noqa: E402
from umoc.records.sessions import NewSession  # noqa: E402
from umoc.storage import database as dbmod  # noqa: E402
from umoc.storage.batching import _batch_txn, _Item  # noqa: E402
from umoc.storage.groups import _create_txn as create_group_txn  # noqa: E402
from umoc.storage.messages import post_together  # noqa: E402
from umoc.storage.messages.write import post_txn  # noqa: E402
from umoc.storage.users import _create_session_txn as create_session_txn  # noqa: E402
from umoc.storage.users import _session_txn as session_txn  # noqa: E402


def _load(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


compare = _load("bench_compare_run", os.path.join(HERE, "compare", "run.py"))
seeding = _load("bench_seeding", os.path.join(HERE, "seeding.py"))
bench_databases = _load("bench_databases", os.path.join(HERE, "databases.py"))

USERS = 1000
GROUPS = (200, 1000)
GROUP_SENDERS = 10
TEXT = "hello there, this is a short chat message"


# -- the database, driven directly -----------------------------------------


class Direct:
    """A bare driver connection with UMOC's `Txn` over it: seeding, the plain loop, counting rows."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.conn: Any = sqlite3.connect(target, check_same_thread=False)
            dbmod._sqlite_open("full", self.conn)
            self.dialect, errors = dbmod.SQLITE, (sqlite3.IntegrityError,)
        else:
            import psycopg2

            self.conn = psycopg2.connect(target, cursor_factory=dbmod._named_row_cursor())
            self.dialect, errors = dbmod.POSTGRES, (psycopg2.IntegrityError,)
        self.cursor = bench_databases.CountingCursor(self.conn.cursor())
        self.txn = dbmod.Txn(self.cursor, self.dialect, errors)

    def transaction(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.txn.begin()
        try:
            result = fn(self.txn, *args)
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()
        return result

    def count_tagged(self, tag: str) -> int:
        return self.transaction(lambda t: t.scalar("SELECT COUNT(*) FROM messages WHERE content LIKE ?", (tag + ":%",)))

    def close(self) -> None:
        self.conn.close()


def seed(direct: Direct, pairs: int) -> dict[str, Any]:
    """Users with sessions, friend pairs (2k, 2k+1), groups of 200 and 1,000 created by user 0."""
    now = time.time()
    direct.transaction(dbmod._migrate_txn, dbmod._load_migrations(direct.dialect))

    def txn_fn(txn: dbmod.Txn) -> dict[str, Any]:
        ids = seeding._users_txn(txn, "bench", USERS, now)
        sessions = []
        for uid in ids:
            sid, token = str(uuid.uuid4()), new_token()
            create_session_txn(txn, NewSession(uid, sid, token_digest(token), now, now + 86400), 10)
            sessions.append(f"&sessionID={sid}&token={token}")
        for p in range(pairs):
            seeding._direct_chats_txn(txn, ids[2 * p], [ids[2 * p + 1]], now)
        # The creator's friends (user 1 already is, as user 0's pair).
        seeding._direct_chats_txn(txn, ids[0], ids[2 : max(GROUPS)], now)
        groups = {
            n: create_group_txn(txn, ids[0], NewGroup(f"bench{n}", None, tuple(ids[1:n])), now, max(GROUPS))
            for n in GROUPS
        }
        txn.execute("ANALYZE")
        return {
            "ids": ids,
            "sessions": sessions,
            "groups": groups,
            "session_ids": [s.split("=")[1].split("&")[0] for s in sessions],
        }

    return direct.transaction(txn_fn)


def plain_loop(
    direct: Direct, seed_data: dict[str, Any], pairs: int, group: int | None, per_commit: int, seconds: float
) -> tuple[float, float]:
    """``send_message``'s transaction in a loop on one connection: (messages per second, statements per message).

    Each commit is one group-commit batch written as the server writes it.  The statements exclude
    ``COMMIT`` (and ``BEGIN`` on SQLite, sent by `Txn.begin`).
    """
    ids = seed_data["ids"]
    names = {uid: f"bench{i}" for i, uid in enumerate(ids)}
    new_id = MessageIds().new
    sent = 0
    statements = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        # As the group commit writes a batch (`_batch_txn`): its savepoint, then the posts, in one call of their
        # ``together`` where the dialect has one (PostgreSQL's function, SQLite's post_each_txn).
        items = []
        for _ in range(per_commit):
            if group is None:
                p = sent % pairs
                a, b = (ids[2 * p], ids[2 * p + 1]) if sent % 2 == 0 else (ids[2 * p + 1], ids[2 * p])
                new = NewMessage(b, False, "plain")
            else:
                a = ids[sent % GROUP_SENDERS]
                new = NewMessage(group, True, "plain")
            args = (Actor.user(a, names[a]), new, new_id(), time.time(), 0.0)
            items.append(_Item("messages.post", post_txn, args, 0.0, post_together(direct.dialect, new)))
            sent += 1
        before = direct.cursor.statements
        outcomes = _batch_txn(direct.txn, items, (), ())
        statements += direct.cursor.statements - before
        direct.conn.commit()
        refused = [o for o in outcomes if not isinstance(o, tuple)]
        if refused:
            raise RuntimeError(f"the plain loop's message was refused: {refused[0]}")
    return sent / (time.perf_counter() - started), statements / sent


def plain_sessions(direct: Direct, seed_data: dict[str, Any], seconds: float) -> float:
    """The session lookup a connect makes on a cache miss, one transaction each: lookups per second."""
    sids = seed_data["session_ids"]
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        direct.transaction(session_txn, sids[done % len(sids)])
        done += 1
    return done / (time.perf_counter() - started)


# -- the server -----------------------------------------------------------


class BenchServer(compare.UmocApp):
    """`compare.UmocApp`'s server and config, on a database seeded here instead of through the API."""

    def __init__(self, kind: str, pairs: int, overload_wait: str | None = None, pool_max: int = 5) -> None:
        super().__init__()
        self.kind = kind
        self.pairs = pairs
        #: ``server.overload_wait`` for the server (None: its default).
        self.overload_wait = overload_wait
        #: PostgreSQL's ``database.pool_max`` (its write lanes are one fewer).
        self.pool_max = pool_max
        self.admin_dsn = os.environ.get("UMOC_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
        self.db_name = f"umoc_bench_app_{os.getpid()}"
        self.seed_data: dict[str, Any] = {}

    def database(self) -> dict[str, Any]:
        if self.kind == "sqlite":
            return {}
        return {"dsn": self.dsn(), "pool_max": self.pool_max}

    def dsn(self) -> str:
        return f"{self.admin_dsn.rsplit('/', 1)[0]}/{self.db_name}"

    def target(self) -> str:
        return os.path.join(self.data_dir, "umoc.sqlite3") if self.kind == "sqlite" else self.dsn()

    def command(self) -> list[str]:
        cmd = super().command()
        config = cmd[cmd.index("--config") + 1]
        with open(config, encoding="utf-8") as f:
            settings = json.load(f)
        settings["messages"] = {"max_group_members": max(GROUPS)}
        if self.overload_wait is not None:
            settings.setdefault("server", {})["overload_wait"] = self.overload_wait
        with open(config, "w", encoding="utf-8") as f:
            json.dump(settings, f)
        return cmd

    def _admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.admin_dsn)
        try:
            conn.autocommit = True
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def start(self) -> None:
        if self.kind == "postgres":
            self._admin(f"CREATE DATABASE {self.db_name}")
        direct = Direct(self.kind, self.target())
        try:
            self.seed_data = seed(direct, self.pairs)
        finally:
            direct.close()
        compare.Server.start(self)  # not UmocApp.start: the users exist already

    def stop(self) -> None:
        super().stop()
        if self.kind == "postgres":
            self._admin(f"DROP DATABASE IF EXISTS {self.db_name}")

    def pin(self, cores: str) -> None:
        """Every thread of the running server onto ``cores`` (``"0"`` or ``"0,1"``)."""
        assert self.process is not None
        subprocess.run(
            ["taskset", "-a", "-p", "-c", cores, str(self.process.pid)], check=True, stdout=subprocess.DEVNULL
        )


# -- runs -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process, all threads, so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadgen(job: dict[str, Any], pinned: bool) -> dict[str, Any]:
    prefix = ["taskset", "-c", "1"] if pinned else []
    try:
        out = subprocess.run(
            prefix + [compare.NODE, os.path.join(HERE, "compare", "loadgen.js"), json.dumps(job)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=job.get("timeout", 120) + 15,
        )
    except subprocess.TimeoutExpired:
        return {"error": "load generator timed out"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": (out.stderr or out.stdout)[-500:]}
    return json.loads(lines[-1])


def saturated(result: dict[str, Any]) -> bool:
    if "error" in result or result.get("perSec") is None:
        return True
    return (
        result["perSec"] < 0.9 * result["offered"]
        or (result.get("ackP99") or 0) > 1000
        or result.get("unanswered", 0) > 0
    )


class Bench:
    def __init__(self, server: BenchServer, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.duration = 2 if args.quick else 3
        self.runs = 0

    def base(self, clients: int) -> dict[str, Any]:
        assert self.server.process is not None
        return {
            "url": self.server.url,
            "serverPid": self.server.process.pid,
            "clients": clients,
            "warmup": 1,
            "duration": self.duration,
            "connectConcurrency": 100,
            "timeout": 90,
        }

    def openloop(
        self,
        name: str,
        rates: list[int],
        clients: int,
        queries: list[str],
        senders: list[int],
        targets: list[dict[str, Any]],
        pinned: bool,
        check: bool,
    ) -> list[dict[str, Any]]:
        rows = []
        for rate in rates:
            self.runs += 1
            tag = f"{name}-{os.getpid()}-{self.runs}"
            job = {
                **self.base(clients),
                "scenario": "openloop",
                "queries": queries,
                "senders": senders,
                "ack": ["send_message", {"recipient_id": 0, "content": ""}],
                "ackTargets": targets,
                "tag": tag,
                "tagField": "content",
                "rate": rate,
                "drain": 10,
            }
            spy = self.spy(f"{name}-{'pinned' if pinned else 'unpinned'}-{rate}")
            cpu0 = cpu_seconds(self.server.process.pid)
            result = loadgen(job, pinned)
            if result.get("acked"):
                # The server process's CPU (reactor and database threads; not PostgreSQL's) per acked
                # message, warm-up and drain included: far steadier than rates on a shared machine.
                result["cpuUsPerMsg"] = (cpu_seconds(self.server.process.pid) - cpu0) / result["acked"] * 1e6
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
                spy.wait(30)
            if check and "error" not in result:
                direct = Direct(self.server.kind, self.server.target())
                try:
                    result["stored"] = direct.count_tagged(tag)
                finally:
                    direct.close()
            result["load"] = os.getloadavg()[0]
            rows.append(result)
            log(f"    {name:9} offered {rate:6}/s  {summary(result)}")
            if saturated(result):
                break
        return rows

    def spy(self, label: str) -> subprocess.Popen | None:
        """py-spy on the server (every thread, idle samples kept) into ``--profile``/label.txt, collapsed stacks."""
        if not self.args.profile:
            return None
        assert self.server.process is not None
        os.makedirs(self.args.profile, exist_ok=True)
        return subprocess.Popen(
            [
                os.path.join(os.path.dirname(sys.executable), "py-spy"),
                "record",
                "--format",
                "raw",
                "--nonblocking",
                "--threads",
                "--idle",
                "-r",
                "200",
                "-o",
                os.path.join(self.args.profile, f"{label}.txt"),
                "--pid",
                str(self.server.process.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def mode(self, pinned: bool) -> dict[str, Any]:
        self.server.pin("0" if pinned else "0,1")
        data = self.server.seed_data
        ids, sessions, pairs = data["ids"], data["sessions"], self.server.pairs
        out: dict[str, Any] = {}
        only = self.args.only
        if not only or "direct" in only:
            rates = [1000, 3000, 5000, 10000] if self.args.quick else [1000, 2000, 3000, 5000, 7500, 10000, 15000]
            rates = self.args.rates or rates
            targets = [{"recipient_id": ids[i ^ 1]} for i in range(2 * pairs)]
            out["direct"] = self.openloop(
                "direct", rates, 2 * pairs, sessions[: 2 * pairs], list(range(2 * pairs)), targets, pinned, check=True
            )
        for n in GROUPS:
            if only and f"group{n}" not in only:
                continue
            rates = [50, 200, 500] if self.args.quick else [50, 100, 200, 400, 800, 1600]
            gid = data["groups"][n]
            targets = [{"recipient_id": gid, "is_group": True}]
            out[f"group{n}"] = self.openloop(
                f"group{n}", rates, n, sessions[:n], list(range(GROUP_SENDERS)), targets, pinned, check=True
            )
        if not only or "connects" in only:
            job = {
                **self.base(0),
                "scenario": "connects",
                "queries": sessions,
                "concurrency": 50,
                "duration": self.duration + 1,
            }
            spy = self.spy(f"connects-{'pinned' if pinned else 'unpinned'}")
            out["connects"] = loadgen(job, pinned)
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
            log(f"    connects  {out['connects']}")
        if not only or "plain" in only:
            out["plain"] = self.plain(pinned)
        return out

    def plain(self, pinned: bool) -> dict[str, float]:
        before = os.sched_getaffinity(0)
        if pinned:
            os.sched_setaffinity(0, {0})  # where the server runs
        direct = Direct(self.server.kind, self.server.target())
        seconds = 1.5 if self.args.quick else 3
        try:
            group = self.server.seed_data["groups"][max(GROUPS)]
            data, pairs = self.server.seed_data, self.server.pairs
            result: dict[str, float] = {}
            # Per 100 first: every sender's first message of the day (the streak) is behind us then.
            result["direct_100"], _ = plain_loop(direct, data, pairs, None, 100, seconds)
            result["direct_each"], result["statements"] = plain_loop(direct, data, pairs, None, 1, seconds)
            result["group1000_each"], _ = plain_loop(direct, data, pairs, group, 1, seconds)
            result["sessions"] = plain_sessions(direct, data, seconds)
        finally:
            direct.close()
            os.sched_setaffinity(0, before)
        log(f"    plain     {json.dumps({k: round(v, 1) for k, v in result.items()})}")
        return result

    def idle(self) -> dict[str, Any]:
        assert self.server.process is not None
        self.server.pin("0,1")
        count = 2000 if self.args.quick else 10_000
        before = compare.rss_kb(self.server.process.pid)
        job = {
            **self.base(count),
            "scenario": "idle",
            "queries": self.server.seed_data["sessions"],
            "settle": 3,
            "timeout": 240,
        }
        result = loadgen(job, False)
        result["rssBeforeKb"] = before
        if result.get("rssKb"):
            result["perSocketKb"] = (result["rssKb"] - before) / count
        log(f"    idle      {result}")
        return result


def summary(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"ERROR {r['error'][:300]}"
    stored = f" stored {r['stored']}/{r['acked']} acked" if "stored" in r else ""
    refused = r.get("refused") or 0
    other = (r.get("ackErrors") or 0) - refused
    codes = {code: n for code, n in (r.get("ackErrorCodes") or {}).items() if code != "overloaded"}
    errors = f" ack errors {other} {codes} ({r['firstError']})" if other else ""
    if refused:
        errors = (
            f" refused {refused} ({r.get('refusedPerSec', 0):.0f}/s overloaded, "
            f"their ack p99 {fmt(r.get('refusedP99'))} ms){errors}"
        )
    return (
        f"achieved {r['perSec']:8.0f}/s  ack p50 {fmt(r['ackP50'])} p99 {fmt(r['ackP99'])} ms  "
        f"delivery p50 {fmt(r['deliveryP50'])} p99 {fmt(r['deliveryP99'])} ms  "
        f"{r['deliveriesPerSec']:9.0f} deliveries/s  unanswered {r['unanswered']}{stored}{errors}  "
        f"server CPU {r.get('cpuUsPerMsg', 0):.0f} us/msg  "
        f"loadgen {r['loadgenCpu']:.2f} cores  load {r['load']:.1f}"
    )


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:7.1f}"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the report -------------------------------------------------------------


def best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest achieved rate with every ack answered and the stored rows matching."""
    good = [r for r in rows if "error" not in r and r.get("unanswered", 1) == 0]
    return max(good, key=lambda r: r["perSec"]) if good else {}


def at_rate(rows: list[dict[str, Any]], rate: int) -> dict[str, Any]:
    return next((r for r in rows if r.get("offered") == rate), {})


def report(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    lines = []
    for kind, modes in results.items():
        lines.append(f"== {kind}")
        for mode, repeats in modes.items():
            if mode == "idle":
                continue
            for i, r in enumerate(repeats):
                lines.append(f"-- {mode} (run {i + 1})")
                for name in ("direct", "group200", "group1000"):
                    for row in r.get(name, []):
                        lines.append(f"  {name:9} offered {row.get('offered', 0):6}/s  {summary(row)}")
                if "connects" in r:
                    c = r["connects"]
                    lines.append(
                        f"  connects/s {c.get('perSec', 0):.0f} (failed {c.get('failed')}, "
                        f"loadgen {c.get('loadgenCpu', 0):.2f} cores)"
                    )
                if "plain" in r:
                    p = r["plain"]
                    lines.append(
                        f"  plain loop: direct {p['direct_each']:.0f}/s committing each, "
                        f"{p['direct_100']:.0f}/s per 100; group of 1,000 {p['group1000_each']:.0f}/s; "
                        f"session lookups {p['sessions']:.0f}/s; {p['statements']:.1f} statements a message"
                    )
        lines.append(f"-- summary ({kind})")
        lines.extend(summary_table(modes))
        if "idle" in modes:
            i = modes["idle"]
            lines.append(
                f"  idle: {i.get('open')} sockets, RSS {i.get('rssBeforeKb', 0) / 1024:.0f} -> "
                f"{(i.get('rssKb') or 0) / 1024:.0f} MB, {i.get('perSocketKb', 0):.1f} KB per socket, "
                f"connected in {(i.get('connectMs') or 0) / 1000:.1f} s"
            )
    return "\n".join(lines)


def median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def summary_table(modes: dict[str, Any]) -> list[str]:
    """Per mode the medians over repeats; then unpinned / pinned."""
    figures: dict[str, dict[str, float | None]] = {}
    for mode in ("pinned", "unpinned"):
        repeats = modes.get(mode, [])
        if not repeats:
            continue
        f: dict[str, float | None] = {}
        f["direct msgs/s (best)"] = median([best(r.get("direct", [])).get("perSec") for r in repeats])
        f["direct server CPU us/msg at 1000/s"] = median(
            [at_rate(r.get("direct", []), 1000).get("cpuUsPerMsg") for r in repeats]
        )
        for rate in (3000, 5000):
            f[f"direct ack p99 at {rate}/s (ms)"] = median(
                [at_rate(r.get("direct", []), rate).get("ackP99") for r in repeats]
            )
        for rate in (5000, 10000):
            f[f"direct refused/s at {rate}/s"] = median(
                [at_rate(r.get("direct", []), rate).get("refusedPerSec") for r in repeats]
            )
        for n in GROUPS:
            f[f"group{n} msgs/s (best)"] = median([best(r.get(f"group{n}", [])).get("perSec") for r in repeats])
            f[f"group{n} deliveries/s (best)"] = median(
                [best(r.get(f"group{n}", [])).get("deliveriesPerSec") for r in repeats]
            )
            f[f"group{n} server CPU us/msg at 50/s"] = median(
                [at_rate(r.get(f"group{n}", []), 50).get("cpuUsPerMsg") for r in repeats]
            )
        f["connects/s"] = median([r.get("connects", {}).get("perSec") for r in repeats])
        for key, label in (
            ("direct_each", "plain direct, commit each"),
            ("direct_100", "plain direct, per 100"),
            ("group1000_each", "plain group1000, commit each"),
            ("sessions", "plain session lookups"),
        ):
            f[label] = median([r.get("plain", {}).get(key) for r in repeats])
        figures[mode] = f
    if not figures:
        return []
    keys = list(next(iter(figures.values())))
    lines = [f"  {'':38}{'pinned':>12}{'unpinned':>12}{'ratio':>8}"]
    for k in keys:
        p, u = figures.get("pinned", {}).get(k), figures.get("unpinned", {}).get(k)
        ratio = f"{u / p:.2f}" if p and u else "-"
        lines.append(
            f"  {k:38}{(f'{p:,.0f}' if p is not None else '-'):>12}"
            f"{(f'{u:,.0f}' if u is not None else '-'):>12}{ratio:>8}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--modes", default="pinned,unpinned", help="pinned,unpinned")
    parser.add_argument("--only", help="comma-separated: direct,group200,group1000,connects,plain,idle")
    parser.add_argument(
        "--rates",
        type=lambda v: [int(x) for x in v.split(",")],
        help="offered rates for the direct runs (default: rising until saturation)",
    )
    parser.add_argument("--pairs", type=int, default=100, help="friend pairs writing to each other (default 100)")
    parser.add_argument("--repeats", type=int, default=1, help="repeat the modes, alternating their order")
    parser.add_argument("--quick", action="store_true", help="2 s runs, fewer rates, 2,000 idle sockets")
    parser.add_argument(
        "--overload-wait",
        help="the server's server.overload_wait (default: its own, 500ms; 0 never refuses writes)",
    )
    parser.add_argument(
        "--pool-max",
        type=int,
        default=5,
        help="PostgreSQL's database.pool_max (default 5, the server's own; the write lanes are one fewer)",
    )
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server during each open-loop run into DIR")
    args = parser.parse_args()
    args.only = args.only.split(",") if args.only else None
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin the server")
    results: dict[str, dict[str, Any]] = {}
    for kind in args.databases.split(","):
        log(f"== {kind} (load {os.getloadavg()})")
        server = BenchServer(kind, args.pairs, args.overload_wait, args.pool_max)
        bench = Bench(server, args)
        modes = args.modes.split(",")
        out: dict[str, Any] = {m: [] for m in modes}
        try:
            server.start()
            for repeat in range(args.repeats):
                for mode in modes if repeat % 2 == 0 else modes[::-1]:
                    log(f"  -- {mode} (load {os.getloadavg()[0]:.1f})")
                    out[mode].append(bench.mode(mode == "pinned"))
            if not args.only or "idle" in args.only:
                out["idle"] = bench.idle()
        finally:
            server.stop()
        results[kind] = out
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    print(report(results))


if __name__ == "__main__":
    main()
