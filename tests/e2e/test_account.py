"""Account deletion and export over a real server, on both databases.

alice has a friend (bob), a group she administers (with bob and carol),
an uploaded file and messages; she deletes her account with
``delete_account`` (or an administrator does, through ``/api/admin/`` or
``umoc-admin``).  Her sockets hear ``account_deleted`` and close, her name
is free again, her messages stay in bob's history (emptied with
``erase``), her file is gone, and the group goes on without her.
"""

from __future__ import annotations

import json
import os
from typing import Any

import treq

from tests.support.admin import PASSWORD, AdminCase, TwoNodeAdminCase
from tests.support.chat import Person, person_on
from tests.support.client import Client
from tests.support.databases import for_each_backend
from tests.support.deferreds import blocking, eventually, inline


class AccountDeletionMixin:
    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.alice = await self.person("alice")
        self.bob = await self.person("bob")
        self.carol = await self.person("carol")
        await self.befriend(self.alice, self.bob)
        await self.befriend(self.alice, self.carol)
        group = await self.alice.call("create_group", name="Team", member_ids=[self.bob.id, self.carol.id])
        self.group_id = group["id"]
        self.direct = await self.alice.call(
            "send_message", recipient_id=self.bob.id, content="hello bob", is_group=False, type="text"
        )
        self.in_group = await self.alice.call(
            "send_message", recipient_id=self.group_id, content="hello team", is_group=True, type="text"
        )
        self.reply = await self.bob.call(
            "send_message",
            recipient_id=self.alice.id,
            content="hi alice",
            is_group=False,
            type="text",
            reply_to=self.direct["message_id"],
        )
        self.file_message = await self.share(self.alice, self.bob.id, b"alice's picture bytes")
        self.file_id = (
            self.file_message["file_id"]
            if "file_id" in self.file_message
            else json.loads(self.file_message["content"])["file_id"]
        )
        for person in (self.alice, self.bob, self.carol):
            person.client.drain_all()

    async def share(self, sender: Person, recipient_id: int, data: bytes) -> dict[str, Any]:
        ready = await self.upload(sender, data, recipient_id=recipient_id, is_group=False)
        return await sender.call(
            "upload_file_complete",
            file_id=ready["file_id"],
            recipient_id=recipient_id,
            is_group=False,
            file_name="me.png",
            file_type="image/png",
        )

    async def download(self, file_id: str, who: Person) -> int:
        response = await treq.get(
            f"{self.server.url}/api/files/{file_id}",
            headers={"X-Session-ID": who.login["sessionID"], "X-Session-Token": who.login["token"]},
            persistent=False,
        )
        await response.content()
        return response.code

    async def gone(self, client: Any) -> None:
        """``account_deleted`` first, then the session's end, then the socket closes."""
        self.assertEqual(await client.expect("account_deleted"), {})
        await self.closed(client, "Your account has been deleted")
        order = [e for e in client.order if e in ("account_deleted", "session_status")]
        self.assertEqual(order, ["account_deleted", "session_status"])

    async def check_deleted(self, erase: bool) -> None:
        """Everything the deletion of alice must have done, seen by the others and by the database."""
        alice, bob, carol = self.alice, self.bob, self.carol
        self.assertEqual(await bob.client.expect("contact_removed"), {"user_id": alice.id})
        self.assertEqual(await carol.client.expect("contact_removed"), {"user_id": alice.id})
        removed = {"chat_id": self.group_id, "user_id": alice.id}
        self.assertEqual(await bob.client.expect("group_member_removed"), removed)
        self.assertEqual(await carol.client.expect("group_member_removed"), removed)
        # Her name logs in no more, and is free for somebody new.
        code, _ = await self.server.post("/api/login", {"username": "alice", "password": PASSWORD})
        self.assertEqual(code, 401)
        again = await self.server.register("alice")
        self.assertNotEqual(again["user_id"], alice.id)
        await self.server.login("alice")
        # Her messages stay in bob's history, from a deleted user.
        history = await bob.call("get_chat_history", chat_id=alice.id, is_group=False)
        mine = {m["message_id"]: m for m in history["messages"]}
        self.assertEqual(len(mine), 3)
        sent = mine[self.direct["message_id"]]
        self.assertEqual((sent["sender_id"], sent["sender_username"]), (alice.id, f"deleted:{alice.id}"))
        if erase:
            self.assertEqual((sent["type"], sent["content"]), ("erased", ""))
            self.assertEqual(mine[self.file_message["message_id"]]["content"], "")
        else:
            self.assertEqual((sent["type"], sent["content"]), ("text", "hello bob"))
        quoted = mine[self.reply["message_id"]]["reply_to"]
        self.assertEqual(quoted["content"], "" if erase else "hello bob")
        self.assertEqual(quoted["sender_username"], f"deleted:{alice.id}")
        last = [c for c in await bob.call("get_chats") if not c["is_group"] and c["id"] == alice.id][0]
        self.assertEqual(last["last_message"]["content"], "" if erase else self.file_message["content"])
        group_history = await carol.call("get_chat_history", chat_id=self.group_id, is_group=True)
        self.assertEqual([m["content"] for m in group_history["messages"]], ["" if erase else "hello team"])
        # Her file is gone: 404 like an unknown id, and not on disk.
        self.assertEqual(await self.download(self.file_id, bob), 404)
        path = self.server.services.files.path_for(self.file_id)
        await eventually(lambda: not os.path.exists(path))
        # The group goes on: bob (the longest-standing member left) is its admin now.
        info = await bob.call("get_chat_info", chat_id=self.group_id, is_group=True)
        self.assertEqual([(m["user_id"], m["is_admin"]) for m in info["members"]], [(bob.id, True), (carol.id, False)])
        sent = await bob.call(
            "send_message", recipient_id=self.group_id, content="still here", is_group=True, type="text"
        )
        self.assertEqual((await carol.client.expect("new_message"))["message_id"], sent["message_id"])
        # Her id resolves to nothing usable.
        self.assertIn("error", await bob.call("get_profile", user_id=alice.id))
        self.assertIn("error", await bob.call("add_contact", contact_username=f"deleted:{alice.id}"))
        self.assertIn("error", await bob.call("block_contact", contact_id=alice.id))
        self.assertIn(
            "error", await bob.call("send_message", recipient_id=alice.id, content="?", is_group=False, type="text")
        )
        self.assertIn("error", await bob.call("add_group_member", chat_id=self.group_id, user_id=alice.id))
        self.assertIn("error", await bob.call("create_group", name="x", member_ids=[alice.id]))
        rows = await self.rows(
            "SELECT username, password_hash, deleted_at, display_name FROM users WHERE id = ?", alice.id
        )
        self.assertEqual(
            (rows[0]["username"], rows[0]["password_hash"], rows[0]["display_name"]), (f"deleted:{alice.id}", "", None)
        )
        self.assertIsNotNone(rows[0]["deleted_at"])
        for table in ("sessions", "push_registrations", "chat_mutes"):
            self.assertEqual(await self.scalar(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", alice.id), 0)
        self.assertEqual(
            await self.scalar("SELECT COUNT(*) FROM contacts WHERE owner_id = ? OR contact_id = ?", alice.id, alice.id),
            0,
        )
        self.assertEqual(await self.scalar("SELECT COUNT(*) FROM files WHERE uploader_id = ?", alice.id), 0)

    @inline
    async def test_delete_account_with_erase_ends_every_session_and_empties_her_messages(self) -> None:
        other_session = await self.server.login("alice")
        other = await self.connect(other_session)
        await other.expect("connection_successful")
        second = await self.second_socket(self.alice)
        await self.alice.call("update_profile", display_name="Alice A.", status_text="here")
        self.server.services.accounts.ERASE_BATCH = 2  # her three messages take two batches
        answer = await self.alice.call("delete_account", password=PASSWORD, erase=True)
        self.assertEqual(answer, {})
        for client in (self.alice.client, second, other):
            await self.gone(client)
        await self.check_deleted(erase=True)

    @inline
    async def test_a_session_sweep_between_the_deletion_and_its_end_still_says_why(self) -> None:
        """The deletion answers first and ends the sessions after; the periodic sweep may find them gone first."""
        services = self.server.services
        deleted = await services.accounts.delete(self.alice.id, False, "admin", finish=False)
        # This sweep, or the periodic one (every 0.2 s here) if it gets there first, closes the sockets: not a count
        # of this one's.  Either way they hear why before `finish` below could tell them.
        await services.sessions.sweep()
        await self.gone(self.alice.client)
        await services.accounts.finish(deleted)

    @inline
    async def test_delete_account_without_erase_keeps_her_messages(self) -> None:
        self.assertEqual(await self.alice.call("delete_account", password=PASSWORD), {})
        await self.gone(self.alice.client)
        await self.check_deleted(erase=False)

    @inline
    async def test_a_wrong_password_changes_nothing_and_attempts_are_limited(self) -> None:
        before = await self.snapshot()
        for _ in range(5):
            answer = await self.alice.call("delete_account", password="not my password", erase=True)
            self.assertEqual(answer, {"error": "Wrong password", "code": "not_authenticated"})
        limited = await self.alice.call("delete_account", password=PASSWORD)
        self.assertIn("Rate limit", limited["error"])
        self.assertEqual(await self.snapshot(), before)
        self.assertTrue(self.alice.client.sio.connected)
        await self.server.login("alice")
        self.assertEqual(await self.download(self.file_id, self.bob), 200)
        self.assertIn("error", await self.alice.call("delete_account", password=12345678))
        self.assertIn("error", await self.alice.call("delete_account", password=PASSWORD, erase="yes"))

    @inline
    async def test_an_admin_deletes_a_user_through_the_api(self) -> None:
        await self.cli_ok("create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD)
        root = await self.server.login("root")
        headers = {"X-Session-ID": root["sessionID"], "X-Session-Token": root["token"]}

        async def delete(path: str, who: dict[str, str] = headers) -> tuple[int, Any]:
            response = await treq.delete(f"{self.server.url}/api/admin/users/{path}", headers=who, persistent=False)
            return response.code, json.loads(await response.text())

        bob_headers = {"X-Session-ID": self.bob.login["sessionID"], "X-Session-Token": self.bob.login["token"]}
        self.assertEqual((await delete(str(self.alice.id), bob_headers))[0], 403)
        self.assertEqual((await delete(str(self.alice.id), {}))[0], 401)
        self.assertEqual((await delete(f"{self.alice.id}?erase=maybe"))[0], 400)
        self.assertEqual((await delete("999999"))[0], 404)
        self.assertEqual((await delete("abc"))[0], 404)
        self.assertEqual((await delete(str(root["user_id"])))[0], 400)
        code, body = await delete(f"{self.alice.id}?erase=true")
        self.assertEqual(
            (code, body),
            (
                200,
                {
                    "user_id": self.alice.id,
                    "username": "alice",
                    "erased": True,
                    "sessions_ended": 1,
                    "groups_left": 1,
                    "files_removed": 1,
                },
            ),
        )
        await self.gone(self.alice.client)
        await self.check_deleted(erase=True)
        self.assertEqual((await delete(str(self.alice.id)))[0], 400, "deleted already")
        users = {u["user_id"]: u for u in await self.cli_json("list-users")}
        self.assertIsNotNone(users[self.alice.id]["deleted_at"])
        code, _, err = await self.cli("reactivate", f"deleted:{self.alice.id}")
        self.assertEqual(
            (code, err), (1, "umoc-admin: This account has been deleted\n"), "a deleted account cannot be brought back"
        )

    @inline
    async def test_umoc_admin_delete_user(self) -> None:
        out = await self.cli_ok("delete-user", "alice")
        self.assertIn("Deleted alice", out)
        # No Redis here: the node closes her sockets within sessions.check_interval.
        await self.closed(self.alice.client, "Your session has ended")
        code, _ = await self.server.post("/api/login", {"username": "alice", "password": PASSWORD})
        self.assertEqual(code, 401)
        history = await self.bob.call("get_chat_history", chat_id=self.alice.id, is_group=False)
        self.assertIn("hello bob", [m["content"] for m in history["messages"]])
        self.assertEqual(await self.download(self.file_id, self.bob), 404)
        self.assertFalse(os.path.exists(self.server.services.files.path_for(self.file_id)))
        code, _, err = await self.cli("delete-user", "nobody")
        self.assertEqual((code, err), (1, "umoc-admin: No such user\n"))

    # -- export -----------------------------------------------------------------------

    async def export(self, who: dict[str, Any] | None, query: bool = False) -> tuple[int, Any, Any]:
        url, headers = self.server.url + "/api/export", {}
        if who is not None and query:
            url += f"?sessionID={who['sessionID']}&token={who['token']}"
        elif who is not None:
            headers = {"X-Session-ID": who["sessionID"], "X-Session-Token": who["token"]}
        response = await treq.get(url, headers=headers, persistent=False)
        text = await response.text()
        return response.code, response.headers, json.loads(text)

    @inline
    async def test_export_has_her_profile_contacts_groups_files_and_messages_only(self) -> None:
        self.server.services.accounts.EXPORT_PAGE = 2  # several pages of messages and files
        await self.alice.call("update_profile", display_name="Alice A.")
        await self.alice.call("edit_message", message_id=self.direct["message_id"], content="hello bob!")
        code, headers, data = await self.export(self.alice.login)
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json; charset=utf-8"])
        self.assertEqual(headers.getRawHeaders("content-disposition"), ['attachment; filename="umoc-export.json"'])
        self.assertEqual(headers.getRawHeaders("cache-control"), ["no-store"])
        self.assertEqual(set(data), {"exported_at", "profile", "contacts", "groups", "files", "messages"})
        profile = data["profile"]
        self.assertEqual(
            (profile["user_id"], profile["username"], profile["display_name"]), (self.alice.id, "alice", "Alice A.")
        )
        self.assertEqual(
            [(c["user_id"], c["status"]) for c in data["contacts"]],
            [(self.bob.id, "FRIEND"), (self.carol.id, "FRIEND")],
        )
        self.assertEqual(
            [(g["chat_id"], g["name"], g["role"]) for g in data["groups"]], [(self.group_id, "Team", "owner")]
        )
        self.assertEqual(
            [(f["file_id"], f["file_name"], f["chat_id"]) for f in data["files"]],
            [(self.file_id, "me.png", self.bob.id)],
        )
        messages = data["messages"]
        self.assertEqual(
            [m["message_id"] for m in messages],
            [self.direct["message_id"], self.in_group["message_id"], self.file_message["message_id"]],
        )
        first = messages[0]
        self.assertEqual(
            (first["chat_id"], first["is_group"], first["type"], first["content"], first["reply_to"]),
            (self.bob.id, False, "text", "hello bob!", None),
        )
        self.assertIsNotNone(first["edited_at"])
        self.assertEqual((messages[1]["chat_id"], messages[1]["is_group"]), (self.group_id, True))
        self.assertEqual(messages[0]["timestamp"], self.direct["timestamp"])
        # bob's export: his reply (with its reply_to id), none of alice's messages or files.
        code, _, theirs = await self.export(self.bob.login, query=True)
        self.assertEqual(code, 200)
        self.assertEqual(
            [(m["message_id"], m["reply_to"]) for m in theirs["messages"]],
            [(self.reply["message_id"], self.direct["message_id"])],
        )
        self.assertEqual(theirs["files"], [])
        self.assertEqual(theirs["groups"][0]["role"], "member")
        self.assertNotIn("hello team", json.dumps(theirs))
        code, _, carols = await self.export(self.carol.login)
        self.assertEqual((code, carols["messages"], carols["files"]), (200, [], []))
        self.assertEqual([c["user_id"] for c in carols["contacts"]], [self.alice.id])

    @inline
    async def test_export_needs_a_session_and_is_rate_limited(self) -> None:
        self.assertEqual(
            (await self.export(None))[:3:2], (401, {"error": "Invalid or expired session", "code": "not_authenticated"})
        )
        self.assertEqual((await self.export(dict(self.alice.login, token="x" * 43)))[0], 401)
        for _ in range(5):
            self.assertEqual((await self.export(self.alice.login))[0], 200)
        code, headers, body = await self.export(self.alice.login)
        self.assertEqual(code, 429)
        self.assertTrue(headers.getRawHeaders("retry-after"))
        self.assertEqual((await self.export(self.bob.login))[0], 200, "per user")
        await self.alice.call("delete_account", password=PASSWORD)
        await eventually(lambda: not self.alice.client.sio.connected)
        self.assertEqual((await self.export(self.alice.login))[0], 401)


for_each_backend(AccountDeletionMixin, AdminCase, globals())


class AccountAcrossNodesTests(TwoNodeAdminCase):
    """Two nodes on one PostgreSQL and one Redis: a deletion on one reaches sockets on the other at once."""

    @inline
    async def test_delete_account_on_one_node_ends_her_sessions_and_tells_her_friend_on_the_other(self) -> None:
        alice, bob = await person_on(self, self.a, "alice"), await person_on(self, self.b, "bob")
        await self.befriend(alice, bob)
        login_b = await self.b.login("alice")
        alice_b = Client(self.b.url, login_b)
        self.clients.append(alice_b)
        await blocking(alice_b.connect)
        await alice_b.expect("connection_successful")
        self.assertEqual(await alice.call("delete_account", password=PASSWORD), {})
        for client in (alice.client, alice_b):
            self.assertEqual(await client.expect("account_deleted"), {})
            await self.closed(client, "Your account has been deleted")
            self.assertEqual(
                [e for e in client.order if e in ("account_deleted", "session_status")],
                ["account_deleted", "session_status"],
            )
        self.assertEqual(await bob.client.expect("contact_removed"), {"user_id": alice.id})
        self.assertIsNone(await self.b.services.sessions.authenticate(login_b["sessionID"], None))
