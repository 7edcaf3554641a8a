"""A server and ``umoc-admin`` on the same database (`AdminCase`), for the admin and port-db tests."""

from __future__ import annotations

import io
import json
import os
import tempfile
import uuid
from typing import Any

import yaml
from twisted.internet import reactor

from tests.support.chat import ChatCase
from tests.support.client import Client
from tests.support.databases import NO_CLUSTER, POSTGRES_DSN, REDIS_URL, postgres_schema
from tests.support.deferreds import eventually, inline
from tests.support.server import Server, test_config
from umoc import admincli
from umoc.storage.database import Database

__all__ = ["PASSWORD", "AdminCase", "TwoNodeAdminCase", "schema_dsn", "shared_database"]

PASSWORD = "correct horse battery"


def schema_dsn(schema: str) -> str:
    """``UMOC_TEST_POSTGRES`` with every table in ``schema`` (libpq's ``options``)."""
    joiner = "&" if "?" in POSTGRES_DSN else "?"
    return f"{POSTGRES_DSN}{joiner}options=-csearch_path%3D{schema}"


async def shared_database(test: Any, backend: str) -> tuple[str, Any]:
    """A DSN for the CLI and a factory of `Database` objects for servers, all on the same data."""
    if backend == "sqlite":
        path = os.path.join(tempfile.mkdtemp(prefix="umoc-admin-"), "umoc.sqlite3")
        return f"sqlite:{path}", lambda: Database.sqlite(path)
    schema = await postgres_schema(test)
    return schema_dsn(schema), lambda: Database.postgres(POSTGRES_DSN, 1, 5, schema=schema)


class AdminCase(ChatCase):
    """A server, and ``umoc-admin`` pointed at the same database by its own configuration file."""

    #: Extra configuration sections for the server and the CLI alike (``webhooks`` is a list).
    shared_config: dict[str, Any] = {}

    @inline
    async def setUp(self) -> None:
        self.clients: list[Client] = []
        self.addCleanup(self._disconnect_clients)
        self.dsn, self.open_db = await shared_database(self, self.backend)
        self.data_dir = tempfile.mkdtemp(prefix="umoc-srv-")
        self.server = await self.start_node(self.data_dir)
        self.config_path = self.write_config(self.data_dir)

    def sections(self, data_dir: str) -> dict[str, Any]:
        sections: dict[str, Any] = {"database": {"dsn": self.dsn}, "sessions": {"check_interval": 0.2}}
        for name, values in self.shared_config.items():
            if isinstance(values, dict):
                sections.setdefault(name, {}).update(values)
            else:
                sections[name] = values
        sections.setdefault("server", {})["data_dir"] = data_dir
        return sections

    async def start_node(self, data_dir: str) -> Server:
        return await self.start_server(test_config(data_dir, **self.sections(data_dir)), self.open_db())

    def write_config(self, data_dir: str) -> str:
        path = os.path.join(tempfile.mkdtemp(prefix="umoc-cfg-"), "umoc.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.sections(data_dir), f)
        return path

    async def cli(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await admincli.run(["--config", self.config_path, *argv], reactor, io.StringIO(stdin), out, err)
        return code, out.getvalue(), err.getvalue()

    async def cli_ok(self, *argv: str, stdin: str = "") -> str:
        code, out, err = await self.cli(*argv, stdin=stdin)
        self.assertEqual((code, err), (0, ""), out)
        return out

    async def cli_json(self, *argv: str, stdin: str = "") -> Any:
        return json.loads(await self.cli_ok("--json", *argv, stdin=stdin))

    async def closed(self, client: Client, message: str) -> None:
        """The socket was told its session ended with ``message``, and closed."""
        self.assertEqual(await client.expect("session_status"), {"valid": False, "message": message})
        await eventually(lambda: not client.sio.connected)
        self.assertFalse(client.sio.connected)


class TwoNodeAdminCase(AdminCase):
    """Two nodes (``a`` is ``server``, ``b``) on one PostgreSQL and one Redis, and ``umoc-admin`` beside them."""

    backend = "postgres"
    skip = NO_CLUSTER

    @inline
    async def setUp(self) -> None:
        prefix = f"umoc-test-{uuid.uuid4().hex}:"
        # A long check interval: what closes the sockets here is the bus, not the sweep.
        self.shared_config = {"redis": {"url": REDIS_URL, "prefix": prefix}, "sessions": {"check_interval": 3600}}
        await super().setUp()
        self.a = self.server
        self.b = await self.start_node(tempfile.mkdtemp(prefix="umoc-srv-"))
        for node in (self.a, self.b):
            await node.service.redis_service.subscribed()
