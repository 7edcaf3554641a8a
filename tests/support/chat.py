"""Helpers for the chat tests: named users with sockets, friendships, database peeks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import treq

from tests.support.client import Client
from tests.support.deferreds import blocking
from tests.support.server import Server, ServerTestCase
from umoc.storage.database import Row

#: Every chat table, ordered: ``snapshot`` compares them to prove a refused event changed nothing.
SNAPSHOT_TABLES = {
    "contacts": "SELECT * FROM contacts ORDER BY owner_id, contact_id",
    "chats": "SELECT * FROM chats ORDER BY id",
    "messages": "SELECT * FROM messages ORDER BY seq",
    "message_reads": "SELECT * FROM message_reads ORDER BY message_seq, user_id",
    "message_deliveries": "SELECT * FROM message_deliveries ORDER BY message_seq, user_id",
    "user_chats": "SELECT * FROM user_chats ORDER BY user_id, chat_id",
    "files": "SELECT * FROM files ORDER BY id",
    "message_edits": "SELECT * FROM message_edits ORDER BY id",
    "message_reactions": "SELECT * FROM message_reactions ORDER BY message_seq, user_id, emoji",
    "unread_mentions": "SELECT * FROM unread_mentions ORDER BY user_id, chat_id, message_seq",
    "users": "SELECT id, display_name, status_text, avatar_file_id, send_delivery_receipts FROM users ORDER BY id",
}


@dataclass
class Person:
    """A registered, logged-in user with one connected socket (more can be opened)."""

    login: dict[str, Any]
    client: Client

    @property
    def id(self) -> int:
        return self.login["user_id"]

    @property
    def name(self) -> str:
        return self.login["username"]

    def call(self, event: str, **payload: Any) -> Any:
        """Emit with an ack, the payload carrying this socket's own sessionID."""
        return self.client.call(event, self.client.with_session(**payload))


class ChatCase(ServerTestCase):
    """A server plus helpers to make users, friendships and groups quickly."""

    async def person(self, name: str) -> Person:
        login, client = await self.connected_user(name)
        return Person(login, client)

    async def second_socket(self, person: Person) -> Client:
        client = await self.connect(person.login)
        await client.expect("connection_successful")
        return client

    async def befriend(self, a: Person, b: Person) -> None:
        added = await a.call("add_contact", contact_username=b.name)
        assert added.get("status") == "NEW", added
        accepted = await b.call("accept_contact", contact_id=a.id)
        assert accepted.get("status") == "FRIEND", accepted
        await a.client.expect("contact_accepted")
        for person in (a, b):
            for event in ("contact_added", "contact_request", "contact_accepted", "user_status"):
                person.client.drain(event)

    async def upload(
        self, person: Person, data: bytes, file_name: str = "me.png", file_type: str = "image/png", **target: Any
    ) -> dict[str, Any]:
        """``upload_file_prepare`` (``target``: the chat, or ``purpose``) and the PUT; answers the ready payload."""
        ready = await person.call(
            "upload_file_prepare", file_name=file_name, file_size=len(data), file_type=file_type, **target
        )
        assert "upload_url" in ready, ready
        response = await treq.put(
            self.server.url + ready["upload_url"],
            data=data,
            headers={"Authorization": f"Bearer {ready['upload_token']}"},
            persistent=False,
        )
        await response.content()
        assert response.code == 201, response.code
        return ready

    async def rows(self, sql: str, *params: Any) -> list[Row]:
        db = self.server.services.storage.db
        return await db.run("test", lambda txn: txn.execute(sql, params).fetchall())

    async def scalar(self, sql: str, *params: Any) -> Any:
        db = self.server.services.storage.db
        return await db.run("test", lambda txn: txn.scalar(sql, params))

    async def snapshot(self) -> dict[str, list[Row]]:
        """Every chat table's rows, to prove a refused event changed nothing."""
        return {name: await self.rows(sql) for name, sql in SNAPSHOT_TABLES.items()}


async def person_on(test: ServerTestCase, node: Server, name: str) -> Person:
    """A user registered, logged in and connected to one node of several (disconnected at cleanup)."""
    login = await node.user(name)
    client = Client(node.url, login)
    test.clients.append(client)
    await blocking(client.connect)
    await client.expect("connection_successful")
    return Person(login, client)
