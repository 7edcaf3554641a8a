"""``umoc-admin port-db``: a populated SQLite database into a fresh PostgreSQL database.

The source is filled through the API (users, friends, direct and group
messages, a read receipt, a deleted message, a shared file); each user's
view (contacts, chats, every chat's history) is recorded; the copy goes
into a database made for the test with ``CREATE DATABASE``; a server
started on the copy (with the uploads directory copied, as the report
says) must show every user the same view, serve the same file bytes,
accept the old sessions, and hand out new ids past the copied ones.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import treq

from tests.support.admin import AdminCase
from tests.support.chat import Person
from tests.support.client import Client
from tests.support.databases import NO_POSTGRES, POSTGRES_DSN
from tests.support.deferreds import blocking, inline
from tests.support.server import test_config
from umoc.storage.database import Database

#: Fields that change with time or with who is online, not with the data copied.
VOLATILE = {"is_online", "online", "status", "last_seen", "server_time"}


def stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def throwaway_database(test: Any) -> str:
    """A new, empty PostgreSQL database on the test server, dropped when the test ends; its DSN."""
    name = "umoc_port_" + uuid.uuid4().hex[:12]

    def run(statement: str) -> None:
        conn = psycopg2.connect(POSTGRES_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.close()

    run(f"CREATE DATABASE {name}")
    test.addCleanup(run, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    parts = urlsplit(POSTGRES_DSN)
    return urlunsplit(parts._replace(path="/" + name))


class PortDbTests(AdminCase):
    backend = "sqlite"
    if not POSTGRES_DSN:
        skip = NO_POSTGRES

    async def populate(self) -> tuple[list[Person], dict[str, Any], bytes]:
        alice, bob, carol = await self.person("alice"), await self.person("bob"), await self.person("carol")
        await self.befriend(alice, bob)
        await self.befriend(alice, carol)
        first = await alice.call("send_message", recipient_id=bob.id, content="hello bob")
        await bob.call("send_message", recipient_id=alice.id, content="hi alice ✓")
        gone = await alice.call("send_message", recipient_id=bob.id, content="oops")
        await alice.call("delete_message", message_id=gone["message_id"])
        await bob.call("read_receipt", message_ids=[first["message_id"]], sender_id=alice.id)
        await carol.call("send_message", recipient_id=alice.id, content="carol here")
        group = await alice.call("create_group", name="Team", description="all of us", member_ids=[bob.id, carol.id])
        for person, text in ((alice, "welcome"), (bob, "thanks"), (carol, "hi all")):
            await person.call("send_message", recipient_id=group["id"], is_group=True, content=text)
        data = os.urandom(100_000)
        ready = await alice.call(
            "upload_file_prepare",
            recipient_id=group["id"],
            is_group=True,
            file_name="plan.pdf",
            file_size=len(data),
            file_type="application/pdf",
        )
        response = await treq.put(
            self.server.url + ready["upload_url"],
            data=data,
            headers={"Authorization": f"Bearer {ready['upload_token']}"},
            persistent=False,
        )
        await response.content()
        self.assertEqual(response.code, 201)
        shared = await alice.call(
            "upload_file_complete",
            file_id=ready["file_id"],
            recipient_id=group["id"],
            is_group=True,
            file_name="plan.pdf",
            file_type="application/pdf",
        )
        self.assertNotIn("error", shared)
        return [alice, bob, carol], json.loads(shared["content"]), data

    async def view(self, person: Person) -> dict[str, Any]:
        """Everything one user sees through the API."""
        seen: dict[str, Any] = {
            "contacts": await person.call("get_contacts"),
            "chats": await person.call("get_chats"),
        }
        chats = seen["chats"]["chats"] if isinstance(seen["chats"], dict) else seen["chats"]
        for chat in chats:
            key = f"{'group' if chat['is_group'] else 'direct'}:{chat['id']}"
            seen[key] = await person.call(
                "get_chat_history", chat_id=chat["id"], is_group=chat["is_group"], page_size=100
            )
            seen[key + ":info"] = await person.call("get_chat_info", chat_id=chat["id"], is_group=chat["is_group"])
        # Search answers the same from PostgreSQL's own index (the FTS5 tables are not copied).
        for word in ("hello", "HI", "here", "oops", "plan"):
            seen["search " + word] = await person.call("search_messages", query=word)
        return stable(seen)

    async def download(self, url: str, login: dict[str, Any]) -> tuple[int, bytes]:
        response = await treq.get(
            self.server.url + url,
            persistent=False,
            headers={"X-Session-ID": login["sessionID"], "X-Session-Token": login["token"]},
        )
        return response.code, await response.content()

    @inline
    async def test_port_round_trips_every_row_and_file_into_a_fresh_postgres_database(self) -> None:
        people, shared, data = await self.populate()
        before = {p.name: await self.view(p) for p in people}
        found = {w: len(before["alice"]["search " + w]["results"]) for w in ("hello", "HI", "oops", "plan")}
        self.assertEqual(found, {"hello": 1, "HI": 2, "oops": 0, "plan": 0})  # "hi alice", "hi all"; not the file
        histories = {
            k: [m["content"] for m in v["messages"]]
            for k, v in before["alice"].items()
            if k.count(":") == 1 and k not in ("contacts", "chats")
        }
        self.assertEqual(len(histories), 3, before["alice"])
        # alice-carol: 1; alice-bob: 2 (one deleted); the group: 3 and the file.
        self.assertEqual(sorted(map(len, histories.values())), [1, 2, 4])
        self.assertEqual(await self.download(shared["url"], people[1].login), (200, data))
        counts = {
            table: await self.scalar(f"SELECT COUNT(*) FROM {table}")
            for table in ("users", "sessions", "contacts", "chats", "messages", "message_reads", "user_chats", "files")
        }
        for client in self.clients:
            await blocking(client.close)
        await self.server.service.stopService()

        target = throwaway_database(self)
        code, out, err = await self.cli("--json", "port-db", "--to", target)
        self.assertEqual((code, err), (0, ""))
        report = json.loads(out)
        self.assertFalse(report["already_copied"])
        self.assertEqual({t: report["rows"][t] for t in counts}, counts)
        self.assertEqual([t for t in report["rows"] if "fts" in t], [])
        self.assertEqual(report["uploads_directory"], os.path.realpath(os.path.join(self.data_dir, "uploads")))
        self.assertEqual((report["upload_files"], report["upload_bytes"]), (1, len(data)))
        self.assertEqual(report["sequences"]["users.id"], counts["users"] + 1)
        # Run again: the target holds exactly these rows, so nothing is done.
        code, out, err = await self.cli("port-db", "--from", self.dsn, "--to", target)
        self.assertEqual((code, err), (0, ""))
        self.assertIn("nothing to do", out)
        self.assertIn(
            os.path.join(self.data_dir, "uploads"), out.replace(os.path.realpath(self.data_dir), self.data_dir)
        )

        new_dir = tempfile.mkdtemp(prefix="umoc-pg-")
        shutil.copytree(report["uploads_directory"], os.path.join(new_dir, "uploads"))
        config = test_config(new_dir, database={"dsn": target})
        self.server = await self.start_server(config, Database.postgres(target, 1, 5))
        copied = []
        for person in people:  # the sessions were copied too: the old logins still open sockets
            client = Client(self.server.url, person.login)
            self.clients.append(client)
            await blocking(client.connect)
            await client.expect("connection_successful")
            copied.append(Person(person.login, client))
        after = {p.name: await self.view(p) for p in copied}
        for name in before:
            self.assertEqual(after[name], before[name], name)
        self.assertEqual(await self.download(shared["url"], people[2].login), (200, data))
        self.assertEqual((await self.download(shared["url"], (await self.server.user("outsider"))))[0], 404)

        # New rows get ids past the copied ones (the sequences were set).
        dave = await self.server.register("dave")
        self.assertEqual(dave["user_id"], counts["users"] + 2)
        alice, bob, carol = copied
        sent = await alice.call("send_message", recipient_id=bob.id, content="after the move")
        self.assertNotIn("error", sent)
        self.assertEqual((await bob.client.expect("new_message"))["message_id"], sent["message_id"])
        group = await alice.call("create_group", name="New", member_ids=[carol.id])
        self.assertNotIn("error", group)

        # Now the target holds other data: a further port is refused and changes nothing.
        code, out, err = await self.cli("port-db", "--to", target)
        self.assertEqual(code, 1)
        self.assertIn("already holds data", err)

    @inline
    async def test_port_refuses_a_missing_source_or_a_non_postgres_target(self) -> None:
        code, _, err = await self.cli("port-db", "--from", "sqlite:/nonexistent/umoc.sqlite3", "--to", POSTGRES_DSN)
        self.assertEqual((code, err), (1, "umoc-admin: no SQLite database at /nonexistent/umoc.sqlite3\n"))
        code, _, err = await self.cli("port-db", "--to", "mysql://x")
        self.assertEqual((code, err), (1, "umoc-admin: --to must be a postgresql:// DSN\n"))
