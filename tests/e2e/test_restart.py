"""A server stopped and started again on the same database keeps every acknowledged message."""

from __future__ import annotations

from tests.support.client import Client
from tests.support.databases import for_each_backend, reopenable_database
from tests.support.deferreds import blocking, inline
from tests.support.server import Server, ServerTestCase


class RestartTestsMixin:
    @inline
    async def test_messages_survive_a_restart(self) -> None:
        reopen = await reopenable_database(self, self.backend)
        server = await self.start_server(db=reopen())
        login_a = await server.user("alice")
        login_b = await server.user("bob")
        a = Client(server.url, login_a)
        b = Client(server.url, login_b)
        for client in (a, b):
            self.clients.append(client)
            await blocking(client.connect)
            await client.expect("connection_successful")
        await a.call("add_contact", a.with_session(contact_username="bob"))
        await b.call("accept_contact", b.with_session(contact_id=login_a["user_id"]))
        sent = await a.call("send_message", a.with_session(recipient_id=login_b["user_id"], content="persist me"))
        for client in (a, b):
            await blocking(client.close)
        await server.service.stopService()

        restarted: Server = await self.start_server(db=reopen())
        again = Client(restarted.url, await restarted.login("bob"))
        self.clients.append(again)
        await blocking(again.connect)
        await again.expect("connection_successful")
        history = await again.call("get_chat_history", again.with_session(chat_id=login_a["user_id"]))
        self.assertEqual(
            [(m["message_id"], m["content"]) for m in history["messages"]], [(sent["message_id"], "persist me")]
        )
        chats = await again.call("get_chats", again.with_session())
        self.assertEqual((chats[0]["unread_count"], chats[0]["last_message"]["message_id"]), (1, sent["message_id"]))


for_each_backend(RestartTestsMixin, ServerTestCase, globals())
