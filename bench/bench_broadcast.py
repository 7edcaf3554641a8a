"""A broadcast channel with 10,000 connected readers: what one message to all of them costs.

    python bench/bench_broadcast.py                        # SQLite, 10,000 readers (~3 min)
    python bench/bench_broadcast.py --database postgres    # a fresh database on UMOC_BENCH_POSTGRES
    python bench/bench_broadcast.py --readers 2000 --rates 10,50 --duration 3   # a quick look

The real server (``python -m twisted umoc``, rate limits off, socket quotas
raised) runs on a database seeded with the storage code's own
transactions: one host and ``--readers`` users, each with a session, and
one ``broadcast`` group (issue 29) holding them all, the readers with role
``reader``.  No friendships: members of a broadcast need none.

Then, on this machine:

* **rows per message**: the message transaction the server runs
  (``umoc.storage.messages.write.post_txn``; on PostgreSQL also the batch
  function ``post_messages`` of migration 026), on a bare driver connection
  against a broadcast of 3 readers and against the one of ``--readers``,
  counting the rows it inserts, updates or deletes (SQLite
  ``total_changes()``, PostgreSQL ``pg_stat_xact_user_tables``).  The two
  must be equal: a message is O(1) rows whatever the audience.
* **fan-out**: every reader connected (raw Engine.IO frames from one Node
  process, ``bench/compare/loadgen.js``), the host sends open-loop at each
  of ``--rates`` messages per second; per rate: messages acked per second,
  deliveries per second (``new_message`` counted at the readers' sockets),
  ack and delivery p50/p99 (send to arrival at a reader), and the server
  process's CPU per delivery inside the measured window (all its threads,
  not PostgreSQL's).  Sends the server refuses at once (``code:
  "overloaded"``: ``server.overload_lag``, the reactor late while it writes
  a message's frames to every reader) are counted apart.  Rates stop rising
  once the server saturates (achieved below 80 % of offered, ack p99 over
  2 s, or sends never answered).

The load generator needs more than ``--readers`` file descriptors, and so
does the server: both are raised to the hard limit (``ulimit -Hn``) here; a
hard limit below ``--readers + 100`` is refused up front.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from umoc.credentials import new_token, token_digest  # noqa: E402
from umoc.ids import MessageIds  # noqa: E402
from umoc.records import Actor  # noqa: E402
from umoc.records.groups import MemberLimits, NewGroup  # noqa: E402
from umoc.records.messages import NewMessage  # noqa: E402
from umoc.records.sessions import NewSession  # noqa: E402
from umoc.storage import database as dbmod  # noqa: E402
from umoc.storage.groups import _create_txn as create_group_txn  # noqa: E402
from umoc.storage.messages.write import post_batch_txn, post_txn  # noqa: E402
from umoc.storage.users import _create_session_txn as create_session_txn  # noqa: E402


def _load(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


app = _load("bench_app", os.path.join(HERE, "bench_app.py"))
seeding = app.seeding
compare = app.compare
log = app.log

LIMITS = MemberLimits(256, 100_000)


def seed(direct: Any, readers: int) -> dict[str, Any]:
    """The host (first), the readers, their sessions, a broadcast of them all and one of three readers."""
    now = time.time()
    direct.transaction(dbmod._migrate_txn, dbmod._load_migrations(direct.dialect))

    def txn_fn(txn: dbmod.Txn) -> dict[str, Any]:
        txn.rules = dbmod.Rules(require_friendship=False)
        ids = seeding._users_txn(txn, "bcast", readers + 1, now)
        sessions = []
        for uid in ids:
            sid, token = str(uuid.uuid4()), new_token()
            create_session_txn(txn, NewSession(uid, sid, token_digest(token), now, now + 86400), 10)
            sessions.append(f"&sessionID={sid}&token={token}")
        host = ids[0]
        groups = {}
        for name, members in (("small", ids[1:4]), ("large", ids[1:])):
            record = NewGroup(f"live-{name}", None, tuple(members), kind="broadcast")
            # contacts.require_friendship: false (txn.rules): a broadcast's audience needs no friendships.
            groups[name] = create_group_txn(txn, host, record, now, LIMITS)
            txn.execute(
                "UPDATE user_chats SET role = 'reader' WHERE chat_id = ? AND user_id <> ?", (groups[name], host)
            )
        txn.execute("ANALYZE")
        return {"ids": ids, "sessions": sessions, "groups": groups}

    return direct.transaction(txn_fn)


class BroadcastServer(app.BenchServer):
    """`bench_app.BenchServer` (the real server on a seeded database), seeded with the broadcast instead."""

    def __init__(self, kind: str, readers: int, overload: bool = True) -> None:
        super().__init__(kind, pairs=0)
        self.readers = readers
        #: False: ``server.overload_wait`` and ``server.overload_lag`` off, to see the fan-out's own ceiling.
        self.overload = overload
        self.db_name = f"umoc_bench_broadcast_{os.getpid()}"

    def command(self) -> list[str]:
        cmd = super().command()
        if not self.overload:
            config = cmd[cmd.index("--config") + 1]
            with open(config, encoding="utf-8") as f:
                settings = json.load(f)
            settings.setdefault("server", {}).update(overload_wait="0s", overload_lag="0s")
            with open(config, "w", encoding="utf-8") as f:
                json.dump(settings, f)
        return cmd

    def start(self) -> None:
        if self.kind == "postgres":
            self._admin(f"CREATE DATABASE {self.db_name}")
        direct = app.Direct(self.kind, self.target())
        try:
            self.seed_data = seed(direct, self.readers)
        finally:
            direct.close()
        compare.Server.start(self)


# -- rows per message ----------------------------------------------------------------


def _changed(txn: dbmod.Txn) -> int:
    if txn.dialect.name == "sqlite":
        return int(txn.scalar("SELECT total_changes()"))
    return int(txn.scalar("SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_user_tables"))


def rows_per_message(server: BroadcastServer) -> dict[str, Any]:
    """Rows one message writes to the 3-reader and to the large broadcast, by each write path; rolled back."""
    data = server.seed_data
    host = data["ids"][0]
    new_id = MessageIds().new
    direct = app.Direct(server.kind, server.target())
    result: dict[str, Any] = {}
    try:
        for name, group in data["groups"].items():
            for path in ("post_txn", "post_messages") if server.kind == "postgres" else ("post_txn",):
                direct.txn.begin()
                try:
                    before = _changed(direct.txn)
                    args = (Actor.user(host, "bcast0"), NewMessage(group, True, "rows?"), new_id(), time.time())
                    if path == "post_txn":
                        post_txn(direct.txn, *args)
                    else:
                        outcome = post_batch_txn(direct.txn, [(*args, 0.0)])[0]
                        assert not isinstance(outcome, Exception), outcome
                    result[f"{path} {name}"] = _changed(direct.txn) - before
                finally:
                    direct.conn.rollback()
    finally:
        direct.close()
    return result


# -- fan-out ---------------------------------------------------------------------------


def fanout(server: BroadcastServer, rate: int, duration: float, run: int) -> dict[str, Any]:
    assert server.process is not None
    data = server.seed_data
    clients = len(data["ids"])
    tag = f"bcast-{os.getpid()}-{run}"
    job = {
        "url": server.url,
        "serverPid": server.process.pid,
        "cpuPids": [server.process.pid],
        "clients": clients,
        "queries": data["sessions"],
        "connectConcurrency": 200,
        "warmup": 1,
        "duration": duration,
        "timeout": 600,
        "scenario": "openloop",
        "senders": [0],
        "ack": ["send_message", {"recipient_id": data["groups"]["large"], "content": "", "is_group": True}],
        "tag": tag,
        "tagField": "content",
        "deliveryEvent": "new_message",
        "rate": rate,
        "drain": 30,
    }
    result = loadgen(job)
    if "error" in result:
        return result
    if result.get("serverCpuMs") and result.get("deliveriesPerSec"):
        delivered = result["deliveriesPerSec"] * duration
        result["serverCpuUsPerDelivery"] = result["serverCpuMs"] * 1000 / delivered
    result["load"] = os.getloadavg()[0]
    return result


def loadgen(job: dict[str, Any]) -> dict[str, Any]:
    """`bench_app.loadgen`, with the job in a file: every reader's session in one argument is too long."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        out = subprocess.run(
            [compare.NODE, os.path.join(HERE, "compare", "loadgen.js"), "@" + f.name],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=job["timeout"] + 15,
        )
    except subprocess.TimeoutExpired:
        return {"error": "load generator timed out"}
    finally:
        os.unlink(f.name)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not lines:
        return {"error": (out.stderr or out.stdout)[-500:]}
    return dict(json.loads(lines[-1]))


def line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"ERROR {str(r['error'])[:300]}"

    def f(v: Any, spec: str = ".0f") -> str:
        return "-" if v is None else format(v, spec)

    return (
        f"msgs/s {f(r['perSec'], '.1f')}  deliveries/s {f(r['deliveriesPerSec'])}"
        f"  ack p50/p99 {f(r['ackP50'], '.1f')}/{f(r['ackP99'], '.1f')} ms"
        f"  delivery p50/p99 {f(r['deliveryP50'], '.1f')}/{f(r['deliveryP99'], '.1f')} ms"
        f"  server CPU/delivery {f(r.get('serverCpuUsPerDelivery'), '.1f')} us"
        f"  refused {r['refused']} ({r['refusedPerSec']:.1f}/s) other errors {r['ackErrors'] - r['refused']}"
        f" unanswered {r['unanswered']}"
        f"  connect {f(r.get('connectMs', 0) / 1000, '.1f')} s  loadgen CPU {f(r['loadgenCpu'], '.2f')}"
        f"  load {r['load']:.1f}"
    )


def saturated(r: dict[str, Any]) -> bool:
    """Past what the server keeps up with: achieved under 80 % of offered (a few messages a second are
    coarse), acks slower than 2 s at p99, or sends never answered."""
    if "error" in r or r.get("perSec") is None:
        return True
    return r["perSec"] < 0.8 * r["offered"] or (r.get("ackP99") or 0) > 2000 or r.get("unanswered", 0) > 0


def raise_fd_limit(readers: int) -> None:
    """The server and the load generator inherit this process's limit: raise it to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < readers + 100:
        raise SystemExit(f"ulimit -Hn is {hard}: {readers} readers need at least {readers + 100} file descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--rates", default="1,2,4,8,16", help="messages per second, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per rate")
    parser.add_argument(
        "--no-overload",
        action="store_true",
        help="server.overload_wait and overload_lag off: the fan-out's own ceiling, not the refusals",
    )
    args = parser.parse_args()
    raise_fd_limit(args.readers)
    server = BroadcastServer(args.database, args.readers, overload=not args.no_overload)
    log(f"seeding {args.readers} readers ({args.database}) ...")
    started = time.time()
    server.start()
    results: dict[str, Any] = {
        "database": args.database,
        "readers": args.readers,
        "overload_refusals": not args.no_overload,
        "load_before": os.getloadavg()[0],
        "fanout": [],
    }
    try:
        log(f"  seeded and started in {time.time() - started:.0f} s")
        results["rows_per_message"] = rows = rows_per_message(server)
        log(f"  rows written per message: {rows}")
        for run, rate in enumerate(int(r) for r in args.rates.split(",")):
            r = fanout(server, rate, args.duration, run)
            results["fanout"].append(r)
            log(f"  offered {rate:5}/s  {line(r)}")
            if saturated(r):
                break
    finally:
        server.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
