"""``umoc-admin``: administration from the command line, on the configured database.

::

    umoc-admin --config /etc/umoc/umoc.yaml --data-dir /var/lib/umoc create-user alice --admin --password-stdin
    umoc-admin --config ... --data-dir ... list-users --search ali
    umoc-admin --config ... --data-dir ... deactivate alice
    umoc-admin --config ... --data-dir ... delete-user alice --erase
    umoc-admin --config ... --data-dir ... audit --actor alice --since 2026-12-01
    umoc-admin --config ... --data-dir ... legal-hold alice on --reason "case 42"

It reads the same configuration file as ``twistd umoc``, and the same
``--data-dir`` and ``UMOC_DATA_DIR`` (`umoc.config.data_dir_override`), so
the arguments of the node's unit find the node's database (SQLite or
PostgreSQL).  It never creates a database and never migrates one
implicitly: a SQLite file that is not there, a database with no UMOC
schema, or a schema behind or ahead of the code is refused in one line
naming what was looked at, before anything is written.  Only ``migrate``
applies migrations, and only when asked; ``schema-status`` shows them.
The point is that a wrong path or a forgotten argument can no longer make
a fresh database and report success while the node's stays untouched.

Each change is also recorded in the audit log with the address ``cli``
(``umoc-admin audit`` lists it, as ``GET /api/admin/audit`` does).

Each change is logged on standard error in the node's ``logging.format``,
the same line the command logs on a node (e.g. ``Account alice
deactivated by umoc-admin``).  Changes that must reach running nodes (ended sessions, a deleted
message) are published on the Redis bus when ``redis.url`` (or ``redis.sentinels``) is set, exactly
as a node publishes them; with no Redis, running nodes close the sockets
of ended sessions by themselves within ``sessions.check_interval``, and
clients see a deleted message when they next load or sync the chat (its
feed row is written either way).  A message is deleted by the same command
as a user's own deletion (`umoc.domain.commands.messages.delete`).

Every change is the same command the admin API calls
(`umoc.domain.commands.account`, ``.bots``), on the same services
(`umoc.wiring.build_admin`): it writes the same feed rows, and so the same
webhooks (``user.registered``, ``message.deleted``) follow.  This process
sends none itself: the node tailing the feed's ``webhooks`` consumer finds
the rows within ``feed.consumer_poll_interval`` and delivers them with
retries (with no node running, the next one to start does).

Exit status: 0 done, 1 refused or failed (one line on stderr), 2 a usage
or configuration error.  A reader that stops early (``list-users | head``)
ends the output quietly: the command's work stands, the status is 0.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, TextIO, cast
from urllib.parse import urlsplit

from twisted.internet import defer, task, threads
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    LogEvent,
    PredicateResult,
    globalLogBeginner,
)

from umoc.config import (
    DATA_DIR_ENV,
    RATE_CLASSES,
    Config,
    ConfigError,
    data_dir_override,
    load_config,
    with_overrides,
)
from umoc.domain.admin import user_json
from umoc.domain.commands import account, audit, bots, messages, ratelimits, retention, serverapi
from umoc.domain.commands.ratelimits import BucketSelection
from umoc.domain.sessions import UsernameTakenError
from umoc.errors import UserError
from umoc.logs import log_observer
from umoc.records import Actor
from umoc.records.account import (
    AccountDeletion,
    AccountRef,
    AdminFlag,
    LegalHold,
    NewAccount,
    NewInvite,
    PasswordReset,
    RegistrationMode,
)
from umoc.records.audit import ACTIONS, AuditQuery
from umoc.records.bots import NewBot
from umoc.records.identity import NewServerKey
from umoc.records.messages import Deletion
from umoc.storage import Storage, open_storage
from umoc.storage.database import Database, SchemaStatus, SchemaTooNewError
from umoc.storage.port import PortRefusedError, port_sqlite_to_postgres
from umoc.timefmt import iso, parse_iso
from umoc.wiring import AdminTools, build_admin

__all__ = ["main", "run"]

#: Who ``umoc-admin``'s changes are made by, for the commands and the log.
ACTOR = Actor.operator("umoc-admin", "cli", address="cli")


#: The loggers whose lines record a change (see `log_changes`): the commands, migrations, bucket resets.
CHANGE_LOGGERS = ("umoc.domain.commands", "umoc.storage.engine.migrations")


class CommandError(Exception):
    """A refusal to print as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="umoc-admin", description="Administer a UMOC server's database.")
    parser.add_argument("--config", "-c", metavar="FILE", help="the server's YAML configuration (default: built-in)")
    parser.add_argument(
        "--data-dir",
        "-d",
        metavar="DIR",
        help=f"the server's data directory, as twistd umoc --data-dir (default: ${DATA_DIR_ENV}, else server.data_dir)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def also_after(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # Also accepted after the command; SUPPRESS keeps the value given before it.
        sub.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--data-dir", "-d", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return sub

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return also_after(commands.add_parser(name, help=help_text, description=help_text))

    def password_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input (else prompt twice)",
        )

    p = command("create-user", "create an account, whatever the registration mode")
    p.add_argument("username")
    p.add_argument("--admin", action="store_true", help="with the admin flag (may use /api/admin/)")
    password_option(p)
    p = command("list-users", "list accounts, by id")
    p.add_argument("--search", metavar="TEXT", help="only names containing TEXT (case-insensitive)")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--offset", type=int, default=0)
    p = command("set-admin", "give an account the admin flag (or take it away with --off)")
    p.add_argument("username")
    p.add_argument("--off", action="store_true")
    p = command("deactivate", "stop an account logging in and end its sessions on every node")
    p.add_argument("username")
    p = command("reactivate", "let a deactivated account log in again")
    p.add_argument("username")
    p = command("reset-password", "set a new password and end the account's sessions")
    p.add_argument("username")
    password_option(p)
    p = command("revoke-sessions", "end every session of an account on every node")
    p.add_argument("username")
    p = command(
        "delete-user",
        "delete an account for good: sessions, contacts, groups, files; messages stay from a deleted user",
    )
    p.add_argument("username")
    p.add_argument("--erase", action="store_true", help="also erase the content of every message it sent")
    p = command("delete-message", "delete anybody's message (moderation); members get message_deleted")
    p.add_argument("message_id")
    p = command(
        "legal-hold",
        "keep every message and file of an account from the retention purge (on), or stop (off); "
        "with no account, list the holds",
    )
    p.add_argument("username", nargs="?", help="the account (omit to list every hold)")
    p.add_argument("state", nargs="?", choices=["on", "off"], help="on: hold; off: lift the hold")
    p.add_argument("--reason", metavar="TEXT", help="why (a case number, say), kept with the hold and audited")
    p.add_argument("--list", action="store_true", help="list every hold in force (the default with no account)")
    p = command("audit", "list the audit log of administrative and moderation actions, newest first")
    p.add_argument("--actor", metavar="NAME", help="only actions by this account (or 'umoc-admin')")
    p.add_argument("--action", metavar="ACTION", choices=ACTIONS, help="only this action (e.g. user.deactivate)")
    p.add_argument("--since", metavar="TIME", help="only at or after TIME (ISO 8601, e.g. 2026-12-01T00:00:00Z)")
    p.add_argument("--until", metavar="TIME", help="only before TIME (ISO 8601)")
    p.add_argument("--limit", type=int, default=50, help="entries per page (1-200, default 50)")
    p.add_argument("--cursor", metavar="CURSOR", help="the page after the one that printed this cursor")
    p = command("registration", "show or set the registration mode of every node")
    p.add_argument(
        "mode",
        nargs="?",
        choices=["open", "closed", "invite", "default"],
        help="'default' goes back to each node's registration.mode",
    )
    p = command("create-invite", "print a new invite code (for registration mode 'invite')")
    p.add_argument("--uses", type=int, default=1, help="registrations it allows (default 1)")
    p = command(
        "create-server-key", "print a new server key for the server API (/api/server/); only its digest is kept"
    )
    p.add_argument("name", help="a label for the key (1-64 of letters, digits, '_', '.' or '-')")
    p = command("delete-server-key", "delete a server key by name: the server API refuses it from now on")
    p.add_argument("name")
    p = command("create-bot", "create a bot account and print its API token (for /api/bot/)")
    p.add_argument("username")
    p = command("bot-token", "print a new API token for a bot (its other tokens stay valid)")
    p.add_argument("username")
    p.add_argument(
        "--force",
        action="store_true",
        help="also for an account that is not a bot yet (an admin's too): it becomes a bot",
    )
    p = command("revoke-bot-tokens", "revoke every API token of a bot")
    p.add_argument("username")
    p = command("port-db", "copy a SQLite database into an empty PostgreSQL database")
    p.add_argument(
        "--from", dest="source", metavar="sqlite:PATH", help="the SQLite database (default: the configured one)"
    )
    p.add_argument("--to", dest="target", metavar="postgresql://...", required=True)
    command("example-config", "print the example configuration (every key with its default)")
    p = command("migrate", "apply the pending schema migrations (what a node does at start-up)")
    p.add_argument("--dry-run", action="store_true", help="list the migrations that would run; change nothing")
    command("schema-status", "show the database's schema version and the pending migrations")
    p = command("ratelimit", "rate-limit buckets kept in Redis")
    actions = p.add_subparsers(dest="ratelimit_command", required=True, metavar="ACTION")
    reset = also_after(
        actions.add_parser(
            "reset",
            help="empty the buckets of a client address and/or an account",
            description="Empty the rate-limit buckets of a client address and/or an account, on every node "
            "(they are in Redis; with no redis.url they are in each node's memory, out of reach).",
        )
    )
    reset.add_argument("--address", metavar="IP", help="buckets keyed by this client address")
    reset.add_argument("--user", metavar="NAME", help="buckets keyed by this account (its id and its name)")
    reset.add_argument(
        "--class",
        dest="classes",
        action="append",
        choices=RATE_CLASSES,
        metavar="CLASS",
        help="only this ratelimits.<CLASS> (repeatable; default: every class)",
    )
    return parser


def where(config: Config) -> str:
    """The database ``config`` names, for a refusal: a SQLite file's absolute path, or PostgreSQL sans password."""
    path = Database.sqlite_path(config.database.dsn, config.data_path)
    if path is not None:
        return str(path.resolve())
    parts = urlsplit(config.database.dsn)
    return f"postgresql://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _versions(versions: tuple[int, ...]) -> str:
    return ", ".join(f"{v:03d}" for v in versions)


def _example_config() -> str:
    """``etc/umoc.yaml``: from a source checkout or where an installation put it."""
    here = Path(__file__).resolve().parent
    for candidate in (
        here / "umoc.yaml",  # setup.py installs etc/umoc.yaml there
        here.parent / "etc" / "umoc.yaml",
        Path(sys.prefix) / "share" / "umoc" / "umoc.yaml",
        Path(sys.prefix) / "etc" / "umoc" / "umoc.yaml",
    ):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise CommandError("the example configuration is not installed")


class Cli:
    """One run: the parsed arguments, the streams, and what was opened (closed by `close`)."""

    def __init__(self, args: argparse.Namespace, reactor: Any, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
        self.args = args
        self.reactor = reactor
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.tools: AdminTools | None = None
        self.storage: Storage | None = None

    def warn(self, line: str) -> None:
        print(f"umoc-admin: warning: {line}", file=self.stderr)

    def say(self, text: str) -> None:
        print(text, file=self.stdout)

    def result(self, text: str, data: Any) -> None:
        self.say(json.dumps(data) if self.args.json else text)

    def password(self) -> str:
        if self.args.password_stdin:
            line = self.stdin.readline()
            password = line[:-1] if line.endswith("\n") else line
            if not password:
                raise CommandError("no password on standard input")
            return password
        if not self.stdin.isatty():
            raise CommandError("give --password-stdin, or run in a terminal to be asked")
        first = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != first:
            raise CommandError("the passwords differ")
        return first

    # -- opening and closing --------------------------------------------------

    def open_storage(self, config: Config) -> Storage:
        """The configured database, refused if it is a SQLite file that is not there (never created here)."""
        path = Database.sqlite_path(config.database.dsn, config.data_path)
        if path is not None and not path.is_file():
            raise CommandError(
                f"no database at {path.resolve()}: umoc-admin never creates one; give the server's"
                f" --data-dir (or {DATA_DIR_ENV}) and --config, or start the server once to create it"
            )
        self.storage = open_storage(config, self.reactor)
        return self.storage

    async def status(self, config: Config, storage: Storage) -> SchemaStatus:
        """The schema's status; refused when there is no UMOC schema or it is newer than the code."""
        status = await storage.db.schema_status()
        if status.current is None:
            raise CommandError(
                f"no UMOC schema in {where(config)}: umoc-admin never creates one; check --config and --data-dir,"
                " or start the server once to create it"
            )
        if status.too_new:
            # The node's own refusal: a schema contracted past this code (a newer, compatible one is fine).
            raise SchemaTooNewError(status.refusal())
        return status

    async def open(self, config: Config) -> AdminTools:
        """The node's own services and `Administration` (see `build_admin`), on a schema that is the code's."""
        storage = self.open_storage(config)
        status = await self.status(config, storage)
        if status.pending:
            raise CommandError(
                f"the schema of {where(config)} is at version {status.current}, this UMOC needs {status.newest}:"
                " run `umoc-admin migrate` (or start the server) first; nothing was changed"
            )
        self.tools = await build_admin(
            config, self.reactor, lambda line: print(f"umoc-admin: warning: {line}", file=self.stderr), storage
        )
        return self.tools

    async def close(self) -> None:
        if self.tools is not None:
            await self.tools.close()
        elif self.storage is not None:
            self.storage.close()

    @property
    def redis_bus(self) -> bool:
        """Whether changes reach the running nodes through Redis now."""
        return self.tools is not None and self.tools.bus is not None

    def told(self, config: Config) -> str:
        """How running nodes learn of ended sessions, for the operator."""
        if self.redis_bus:
            return "running nodes were told through Redis"
        return f"running nodes close their sockets within sessions.check_interval ({config.sessions.check_interval:g}s)"

    # -- commands ---------------------------------------------------------------

    async def execute(self, config: Config) -> None:
        args = self.args
        if args.command == "port-db":
            await self.port_db(config)
            return
        if args.command in ("migrate", "schema-status"):
            await self.migrate(config)
            return
        if args.command == "ratelimit":
            await self.reset_ratelimits(config)
            return
        tools = await self.open(config)
        admin, services = tools.admin, tools.services
        name = getattr(args, "username", None)

        def ref() -> AccountRef:
            """The account the command names (every command that calls this has a ``username``)."""
            return AccountRef(args.username)

        if args.command == "create-user":
            user = await account.create_user(services, ACTOR, NewAccount(args.username, self.password(), args.admin))
            kind = "admin " if user.is_admin else ""
            self.result(f"Created {kind}user {user.username} (id {user.id})", user_json(user))
        elif args.command == "list-users":
            users = await admin.list_users(args.search, args.limit, args.offset)
            if args.json:
                self.say(json.dumps([user_json(u) for u in users]))
                return
            self.say(f"{'ID':>6}  {'USERNAME':<32}  ADMIN  ACTIVE  SESSIONS  LAST SEEN")
            for u in users:
                row = user_json(u)
                self.say(
                    f"{u.id:>6}  {u.username:<32}  {'yes' if u.is_admin else 'no':<5}  "
                    f"{'yes' if u.active else 'no':<6}  {u.sessions:>8}  {row['last_seen'] or '-'}"
                )
        elif args.command == "set-admin":
            user = await account.set_admin(services, ACTOR, AdminFlag(ref(), not args.off))
            self.result(f"{user.username} is {'an admin' if user.is_admin else 'not an admin'}", user_json(user))
        elif args.command == "deactivate":
            user, ended = await account.deactivate(services, ACTOR, ref())
            self.result(
                f"Deactivated {user.username}; {ended} sessions ended ({self.told(config)})",
                {"user": user_json(user), "sessions_ended": ended},
            )
        elif args.command == "reactivate":
            user = await account.reactivate(services, ACTOR, ref())
            self.result(f"Reactivated {user.username}", user_json(user))
        elif args.command == "reset-password":
            ended = await account.reset_password(services, ACTOR, PasswordReset(ref(), self.password()))
            self.result(
                f"Password of {name} reset; {ended} sessions ended ({self.told(config)})", {"sessions_ended": ended}
            )
        elif args.command == "revoke-sessions":
            ended = await account.revoke_sessions(services, ACTOR, ref())
            self.result(f"{ended} sessions of {name} ended ({self.told(config)})", {"sessions_ended": ended})
        elif args.command == "delete-user":
            deleted = await account.delete_user(services, ACTOR, AccountDeletion(ref(), args.erase))
            erased = "; its messages' content erased" if args.erase else ""
            self.result(
                f"Deleted {deleted['username']} (id {deleted['user_id']}): {deleted['sessions_ended']}"
                f" sessions ended, {deleted['groups_left']} groups left, {deleted['files_removed']} files"
                f" removed{erased} ({self.told(config)})",
                deleted,
            )
        elif args.command == "delete-message":
            try:
                deletion = Deletion(args.message_id)
            except UserError:
                raise UserError("Message not found", code="not_found") from None
            deleted = await messages.delete(services, ACTOR, deletion)
            where = (
                "members were told through Redis"
                if self.redis_bus
                else "members see it when they next load the chat (no Redis to tell running nodes)"
            )
            self.result(f"Deleted message {deleted['message_id']}; {where}", deleted)
        elif args.command == "audit":
            await self.audit(services)
        elif args.command == "legal-hold":
            await self.legal_hold(services)
        elif args.command == "registration":
            if args.mode is None:
                mode, source = await admin.registration_mode()
            else:
                record = RegistrationMode(None if args.mode == "default" else args.mode)
                mode, source = await account.set_registration_mode(services, ACTOR, record)
            origin = "set in the database" if source == "database" else "registration.mode in the configuration"
            self.result(f"Registration is {mode} ({origin})", {"mode": mode, "source": source})
        elif args.command == "create-bot":
            user, token = await bots.create(services, ACTOR, NewBot(args.username))
            self.result(token, {"user": user_json(user), "token": token})
        elif args.command == "bot-token":
            token = await bots.new_token_for(services, ACTOR, ref(), args.force)
            self.result(token, {"token": token})
        elif args.command == "revoke-bot-tokens":
            count = await bots.revoke_tokens(services, ACTOR, ref())
            self.result(f"{count} tokens of {name} revoked", {"revoked": count})
        elif args.command == "create-server-key":
            key = await serverapi.create_server_key(services, ACTOR, NewServerKey(args.name))
            self.result(key, {"name": args.name, "key": key})
        elif args.command == "delete-server-key":
            await serverapi.delete_server_key(services, ACTOR, NewServerKey(args.name))
            self.result(f"Server key {args.name} deleted", {"name": args.name, "deleted": True})
        elif args.command == "create-invite":
            code = await account.create_invite(services, ACTOR, NewInvite(args.uses))
            self.result(code, {"invite": code, "uses": args.uses})

    async def legal_hold(self, services: Any) -> None:
        """``legal-hold USER on|off [--reason]``, or ``legal-hold [--list]``."""
        args = self.args
        if args.username is None or args.list:
            if args.username is not None or args.state is not None:
                raise CommandError("--list takes no account: legal-hold --list")
            holds = await retention.legal_holds(services, ACTOR)
            shown = [
                {
                    "user_id": h.user_id,
                    "username": h.username,
                    "since": iso(h.created_at),
                    "by": h.created_by,
                    "reason": h.reason,
                }
                for h in holds
            ]
            if args.json:
                self.say(json.dumps({"holds": shown}))
                return
            self.say(f"{'ID':>6}  {'USERNAME':<32}  {'SINCE':<20}  {'BY':<20}  REASON")
            for h in shown:
                self.say(
                    f"{h['user_id']:>6}  {h['username']:<32}  {h['since']:<20}  {h['by']:<20}  {h['reason'] or '-'}"
                )
            return
        if args.state is None:
            raise CommandError("say on or off: legal-hold USER on|off")
        on = args.state == "on"
        username, changed = await retention.set_legal_hold(
            services, ACTOR, LegalHold(AccountRef(args.username), on, args.reason)
        )
        state = "on legal hold" if on else "not on legal hold"
        self.result(
            f"{username} is {state}" + ("" if changed else " (no change)"),
            {"username": username, "legal_hold": on, "changed": changed},
        )

    async def audit(self, services: Any) -> None:
        """``audit``: one page of the audit log, newest first; the next page's cursor last."""
        args = self.args

        def when(text: str | None, option: str) -> float | None:
            try:
                return None if text is None else parse_iso(text)
            except ValueError:
                raise CommandError(f"{option} must be an ISO 8601 time (e.g. 2026-12-01T00:00:00Z)") from None

        query = AuditQuery(
            args.cursor, args.limit, args.actor, args.action, when(args.since, "--since"), when(args.until, "--until")
        )
        rows, next_cursor = await audit.list_entries(services, ACTOR, query)
        entries = [audit.entry_json(r) for r in rows]
        if args.json:
            self.say(json.dumps({"entries": entries, "next_cursor": next_cursor}))
            return
        self.say(f"{'ID':>6}  {'TIME':<20}  {'ACTOR':<20}  {'FROM':<15}  {'ACTION':<22}  TARGET")
        for e in entries:
            target = f"{e['target_type']} {e['target_id']}" if e["target_type"] else "-"
            if e["chat_id"] is not None and e["target_type"] != "group":
                target += f" (group {e['chat_id']})"
            if e["details"]:
                target += " " + json.dumps(e["details"], sort_keys=True)
            actor = e["actor"]
            self.say(
                f"{e['id']:>6}  {e['created_at']:<20}  {actor['name']:<20}  {actor['address'] or '-':<15}  "
                f"{e['action']:<22}  {target}"
            )
        if next_cursor is not None:
            self.say(f"More: --cursor {next_cursor}")

    async def migrate(self, config: Config) -> None:
        """``migrate [--dry-run]`` and ``schema-status``: the only commands that look at a schema behind the code."""
        storage = self.open_storage(config)
        status = await self.status(config, storage)
        data: dict[str, Any] = {
            "version": status.current,
            "newest": status.newest,
            "pending": list(status.pending),
            "compat": status.compat,
        }
        if self.args.command == "migrate" and not self.args.dry_run and status.pending:
            data["version"] = await storage.db.migrate()
            data["applied"], data["pending"] = data["pending"], []
            self.result(
                f"Applied migrations {_versions(status.pending)} to {where(config)}: schema version {data['version']}",
                data,
            )
            return
        if not status.pending and status.current is not None and status.current > status.newest:
            self.result(
                f"Schema version {status.current} ({where(config)}): newer than this UMOC's {status.newest},"
                f" which may still run on it (compatibility version {status.compat})",
                data,
            )
        elif not status.pending:
            self.result(f"Schema version {status.current} ({where(config)}): up to date", data)
        elif self.args.command == "migrate":
            self.result(f"Would apply migrations {_versions(status.pending)} to {where(config)}; nothing changed", data)
        else:
            self.result(
                f"Schema version {status.current} ({where(config)}); this UMOC's is {status.newest};"
                f" pending: {_versions(status.pending)} (run `umoc-admin migrate`)",
                data,
            )

    async def reset_ratelimits(self, config: Config) -> None:
        """``ratelimit reset``: delete the selected buckets in Redis (the nodes' memory is out of reach)."""
        args = self.args
        if args.address is None and args.user is None:
            raise CommandError("give --address, --user or both")
        address = None
        if args.address is not None:
            try:
                address = str(ipaddress.ip_address(args.address))
            except ValueError:
                raise CommandError(f"not an IP address: {args.address}") from None
        if not config.redis.url:
            raise CommandError(
                "no redis.url: rate limits are kept in each node's memory, out of umoc-admin's reach;"
                " they refill by themselves (ratelimits.<class>), and restarting a node empties its buckets"
            )
        # The database too (checked like every command's), for the account and for the Redis the nodes use.
        tools = await self.open(config)
        user_id = name = None
        if args.user is not None:
            user = await tools.admin.user(args.user)
            user_id, name = user.id, user.username.lower()
        if tools.redis is None or tools.bus is None:
            raise CommandError("Redis is not reachable at redis.url: nothing was reset")
        selection = BucketSelection(tuple(args.classes or RATE_CLASSES), address, user_id, name)
        done = await ratelimits.reset(tools.redis, config.redis.prefix, ACTOR, selection)
        listed = ", ".join(done) if done else "none was held (a full bucket is not kept)"
        self.result(f"Reset {len(done)} rate-limit buckets on every node: {listed}", {"reset": done})

    async def port_db(self, config: Config) -> None:
        args = self.args
        source = args.source or config.database.dsn or f"sqlite:{config.data_path / 'umoc.sqlite3'}"
        if not source.startswith("sqlite:"):
            raise CommandError("--from must be sqlite:PATH (the configured database is not SQLite)")
        path = Path(source[len("sqlite:") :])
        if not path.is_file():
            raise CommandError(f"no SQLite database at {path.resolve()}")
        if not args.target.startswith(("postgresql://", "postgres://")):
            raise CommandError("--to must be a postgresql:// DSN")
        # The source is read as it is: never created or migrated here.  It must be at the code's version,
        # because the target (new and empty, the one database umoc-admin may fill) is migrated to it.
        db = Database.sqlite(path)
        try:
            status = await db.schema_status()
        finally:
            db.close()
        if not status.up_to_date:
            raise CommandError(
                f"the SQLite database {path.resolve()} is at schema version {status.current or 0}, this UMOC's is"
                f" {status.newest}: start the server on it once (or `umoc-admin migrate` with it configured) first"
            )
        target = Database.postgres(args.target, 1, 1)
        try:
            await target.migrate()
        finally:
            target.close()
        report = await threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), port_sqlite_to_postgres, path, args.target
        )
        uploads = config.uploads_path.resolve()
        files = [f for f in uploads.rglob("*") if f.is_file()] if uploads.is_dir() else []
        data = {
            "already_copied": report.already_copied,
            "rows": report.rows,
            "sequences": report.sequences,
            "uploads_directory": str(uploads),
            "upload_files": len(files),
            "upload_bytes": sum(f.stat().st_size for f in files),
        }
        if args.json:
            self.say(json.dumps(data))
            return
        if report.already_copied:
            self.say("The target already holds exactly these rows: nothing to do.")
        else:
            self.say(f"Copied {path} into PostgreSQL:")
        for table, count in report.rows.items():
            self.say(f"  {table:<20} {count:>10} rows")
        for column, following in report.sequences.items():
            self.say(f"  sequence {column} continues at {following}")
        self.say(
            f"Uploaded files are not in the database: copy {uploads} ({len(files)} files, "
            f"{data['upload_bytes']} bytes) to the uploads directory every node shares "
            "(uploads.directory under server.data_dir), then set database.dsn to the PostgreSQL DSN."
        )


def log_changes(config: Config, stream: TextIO) -> None:
    """Log the changes this process makes on ``stream``, in the node's ``logging.format`` and ``level``.

    Only the loggers of `CHANGE_LOGGERS`: the same lines a node logs for
    the same change made through its admin API, not the chatter of the
    services the commands run on.
    """

    def is_change(event: LogEvent) -> PredicateResult:
        namespace = event.get("log_namespace", "")
        return PredicateResult.maybe if namespace.startswith(CHANGE_LOGGERS) else PredicateResult.no

    changes = cast(ILogFilterPredicate, is_change)  # a plain callable is what FilteringLogObserver calls
    observer = FilteringLogObserver(log_observer(config.logging.level, config.logging.format, stream), [changes])
    globalLogBeginner.beginLoggingTo([observer], discardBuffer=True, redirectStandardIO=False)


def _stdout_gone(stdout: TextIO) -> None:
    """The reader left (``| head``): point the descriptor at /dev/null so that the flush at exit stays quiet."""
    try:
        fd = stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


async def run(
    argv: list[str],
    reactor: Any,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    begin_logging: Callable[[Config], None] | None = None,
) -> int:
    """Run one command; the exit status.  Used in-process by the tests and by `main`.

    ``begin_logging`` is given the configuration once it is loaded (`main`
    passes `log_changes`; the in-process tests log nothing).
    """
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage
        return int(exc.code or 0)
    cli = Cli(args, reactor, stdin, stdout, stderr)
    try:
        if args.command == "example-config":
            stdout.write(_example_config())
            stdout.flush()
            return 0
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(str(exc), file=stderr)
            return 2
        data_dir = data_dir_override(args.data_dir)
        if data_dir:
            config = with_overrides(config, server={"data_dir": data_dir})
        if begin_logging is not None:
            begin_logging(config)
        await cli.execute(config)
        stdout.flush()
        return 0
    except BrokenPipeError:
        # The reader stopped early (`list-users | head -1`): what was done stands, nothing to say.
        _stdout_gone(stdout)
        return 0
    except (CommandError, PortRefusedError, SchemaTooNewError) as exc:
        print(f"umoc-admin: {exc}", file=stderr)
    except UsernameTakenError:
        print("umoc-admin: username already taken", file=stderr)
    except UserError as exc:
        print(f"umoc-admin: {exc.message}", file=stderr)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, e.g. the database is down
        print(f"umoc-admin: {type(exc).__name__}: {exc}".rstrip(), file=stderr)
    finally:
        await cli.close()
    return 1


def main(argv: list[str] | None = None) -> None:
    """The ``umoc-admin`` console script."""
    argv = sys.argv[1:] if argv is None else argv

    def start(reactor: Any) -> defer.Deferred[None]:
        d = defer.ensureDeferred(run(argv, reactor, begin_logging=lambda config: log_changes(config, sys.stderr)))

        def finish(status: int) -> None:
            if status:
                raise SystemExit(status)

        return d.addCallback(finish)

    task.react(start)
