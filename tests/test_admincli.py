"""Administration: ``umoc-admin`` on both databases, the admin HTTP API, registration modes.

The CLI runs in-process (`umoc.admincli.run`) against the database a real
server is using, the way an operator runs it next to a running node.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import uuid
from typing import Any

import treq
import yaml
from twisted.internet import reactor

from tests.support.admin import PASSWORD, AdminCase, TwoNodeAdminCase
from tests.support.chat import Person, person_on
from tests.support.client import Client
from tests.support.databases import for_each_backend
from tests.support.deferreds import blocking, inline
from tests.support.push import WebhookReceiver, serve, until
from tests.support.server import Server, ServerTestCase
from umoc import admincli

HOOK_SECRET = "s3cret-for-the-webhook-tests"


class AdminCliMixin:
    """Every ``umoc-admin`` command against a running node's database (one node, no Redis)."""

    @inline
    async def test_create_user_logs_in_and_carries_the_admin_flag(self) -> None:
        out = await self.cli_ok("create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
        self.assertIn("Created admin user root", out)
        await self.cli_ok("create-user", "plain", "--password-stdin", stdin=PASSWORD)
        login = await self.server.login("root")
        self.assertEqual(login["username"], "root")
        users = {u["username"]: u for u in await self.cli_json("list-users")}
        self.assertEqual((users["root"]["is_admin"], users["plain"]["is_admin"]), (True, False))
        self.assertEqual(users["root"]["sessions"], 1)
        code, _, err = await self.cli("create-user", "ROOT", "--password-stdin", stdin=PASSWORD)
        self.assertEqual((code, err), (1, "umoc-admin: username already taken\n"))
        code, _, err = await self.cli("create-user", "short", "--password-stdin", stdin="abc\n")
        self.assertEqual((code, err), (1, "umoc-admin: password must be 8-256 characters\n"))
        code, _, err = await self.cli("create-user", "nopass")
        self.assertEqual(code, 1)
        self.assertIn("--password-stdin", err)

    @inline
    async def test_create_user_works_while_registration_is_closed(self) -> None:
        await self.cli_ok("registration", "closed")
        await self.cli_ok("create-user", "staff", "--password-stdin", stdin=PASSWORD)
        await self.server.login("staff")

    @inline
    async def test_list_users_searches_names_case_insensitively_and_literally(self) -> None:
        for name in ("alice", "Malice", "bob", "al_x", "alyx"):
            await self.server.register(name)
        names = [u["username"] for u in await self.cli_json("list-users", "--search", "ALI")]
        self.assertEqual(names, ["alice", "Malice"])
        self.assertEqual([u["username"] for u in await self.cli_json("list-users", "--search", "l_")], ["al_x"])
        self.assertEqual(len(await self.cli_json("list-users")), 5)
        table = await self.cli_ok("list-users", "--search", "bob")
        self.assertIn("bob", table)
        self.assertNotIn("alice", table)

    @inline
    async def test_deactivate_closes_the_live_socket_and_refuses_login_until_reactivated(self) -> None:
        alice = await self.person("alice")
        bob = await self.person("bob")
        out = await self.cli_ok("deactivate", "alice")
        self.assertIn("1 sessions ended", out)
        # No Redis: the node notices within sessions.check_interval (0.2s here).
        await self.closed(alice.client, "Your session has ended")
        code, body = await self.server.post("/api/login", {"username": "alice", "password": PASSWORD})
        self.assertEqual(
            (code, body), (403, {"error": "This account has been deactivated", "code": "account_disabled"})
        )
        code, _ = await self.server.post("/api/login", {"username": "alice", "password": "wrong password"})
        self.assertEqual(code, 401, "a wrong password does not learn the account is deactivated")
        self.assertIsNone(await self.server.services.sessions.authenticate(alice.login["sessionID"], None))
        self.assertTrue(bob.client.sio.connected)
        users = {u["username"]: u for u in await self.cli_json("list-users")}
        self.assertEqual((users["alice"]["active"], users["alice"]["sessions"]), (False, 0))
        await self.cli_ok("reactivate", "alice")
        await self.server.login("alice")

    @inline
    async def test_reset_password_ends_sessions_and_only_the_new_password_works(self) -> None:
        alice = await self.person("alice")
        await self.cli_ok("reset-password", "alice", "--password-stdin", stdin="a brand new password\n")
        await self.closed(alice.client, "Your session has ended")
        code, _ = await self.server.post("/api/login", {"username": "alice", "password": PASSWORD})
        self.assertEqual(code, 401)
        await self.server.login("alice", "a brand new password")

    @inline
    async def test_revoke_sessions_ends_every_session_but_the_account_stays_usable(self) -> None:
        alice = await self.person("alice")
        second = await self.server.login("alice")
        out = await self.cli_ok("revoke-sessions", "alice")
        self.assertIn("2 sessions of alice ended", out)
        await self.closed(alice.client, "Your session has ended")
        self.assertIsNone(await self.server.services.sessions.authenticate(second["sessionID"], None))
        await self.server.login("alice")

    @inline
    async def test_bot_token_refuses_admins_and_people_unless_forced(self) -> None:
        """Issue 22 G15: ``bot-token`` no longer silently turns any account, an admin's too, into a bot."""
        await self.cli_ok("create-bot", "weatherbot")
        self.assertTrue((await self.cli_ok("bot-token", "weatherbot")).strip())
        await self.cli_ok("create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD)
        await self.server.register("alice")
        code, out, err = await self.cli("bot-token", "root")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("root is an administrator", err)
        self.assertIn("--force", err)
        code, out, err = await self.cli("bot-token", "alice")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("alice is not a bot", err)
        self.assertIn("without its password", err)
        self.assertIn("--force", err)
        rows = await self.server.services.storage.db.read(
            "test", lambda txn: txn.execute("SELECT username, is_bot FROM users ORDER BY id").fetchall()
        )
        self.assertEqual([(r[0], int(r[1])) for r in rows], [("weatherbot", 1), ("root", 0), ("alice", 0)])
        token = (await self.cli_ok("bot-token", "alice", "--force")).strip()
        self.assertTrue(token)
        self.assertTrue((await self.cli_ok("bot-token", "root", "--force")).strip())

    @inline
    async def test_unknown_user_or_message_exits_1_with_one_line(self) -> None:
        for argv in (
            ("deactivate", "nobody"),
            ("reactivate", "nobody"),
            ("revoke-sessions", "nobody"),
            ("set-admin", "nobody"),
        ):
            self.assertEqual(await self.cli(*argv), (1, "", "umoc-admin: No such user\n"))
        for message_id in (str(uuid.uuid4()), "nope"):
            self.assertEqual(await self.cli("delete-message", message_id), (1, "", "umoc-admin: Message not found\n"))

    @inline
    async def test_delete_message_soft_deletes_anybodys_message(self) -> None:
        alice = await self.person("alice")
        bob = await self.person("bob")
        await self.befriend(alice, bob)
        sent = await alice.call("send_message", recipient_id=bob.id, content="rude words")
        kept = await alice.call("send_message", recipient_id=bob.id, content="polite words")
        deleted = await self.cli_json("delete-message", sent["message_id"])
        self.assertEqual((deleted["message_id"], deleted["sender_id"]), (sent["message_id"], alice.id))
        history = await bob.call("get_chat_history", chat_id=alice.id)
        self.assertEqual([m["message_id"] for m in history["messages"]], [kept["message_id"]])
        self.assertIsNotNone(await self.scalar("SELECT deleted_at FROM messages WHERE id = ?", sent["message_id"]))
        code, _, err = await self.cli("delete-message", sent["message_id"])
        self.assertEqual((code, err), (1, "umoc-admin: Message not found\n"))

    @inline
    async def test_registration_modes_set_by_the_cli_apply_to_the_running_node(self) -> None:
        self.assertEqual(await self.cli_json("registration"), {"mode": "open", "source": "config"})
        self.assertEqual(await self.cli_json("registration", "closed"), {"mode": "closed", "source": "database"})
        code, body = await self.server.post("/api/register", {"username": "eve", "password": PASSWORD})
        self.assertEqual((code, body), (403, {"error": "Registration is closed", "code": "forbidden"}))
        await self.cli_ok("registration", "invite")
        code, body = await self.server.post("/api/register", {"username": "eve", "password": PASSWORD})
        self.assertEqual((code, body), (403, {"error": "Registration needs an invite code", "code": "invite_required"}))
        invite = (await self.cli_ok("create-invite")).strip()
        code, _ = await self.server.post(
            "/api/register", {"username": "eve", "password": PASSWORD, "invite": invite + "x"}
        )
        self.assertEqual(code, 403)
        code, _ = await self.server.post("/api/register", {"username": "eve", "password": PASSWORD, "invite": invite})
        self.assertEqual(code, 201)
        code, body = await self.server.post(
            "/api/register", {"username": "mallory", "password": PASSWORD, "invite": invite}
        )
        self.assertEqual((code, body), (403, {"error": "Invalid or used invite code", "code": "invite_required"}))
        twice = (await self.cli_json("create-invite", "--uses", "2"))["invite"]
        for name in ("carol", "dave"):
            code, _ = await self.server.post("/api/register", {"username": name, "password": PASSWORD, "invite": twice})
            self.assertEqual(code, 201)
        code, _ = await self.server.post("/api/register", {"username": "erin", "password": PASSWORD, "invite": twice})
        self.assertEqual(code, 403)
        self.assertEqual(await self.cli_json("registration", "default"), {"mode": "open", "source": "config"})
        await self.server.register("frank")

    @inline
    async def test_a_taken_name_does_not_spend_the_invite(self) -> None:
        await self.server.register("eve")
        await self.cli_ok("registration", "invite")
        invite = (await self.cli_ok("create-invite")).strip()
        code, _ = await self.server.post("/api/register", {"username": "EVE", "password": PASSWORD, "invite": invite})
        self.assertEqual(code, 409)
        code, _ = await self.server.post("/api/register", {"username": "eve2", "password": PASSWORD, "invite": invite})
        self.assertEqual(code, 201)

    @inline
    async def test_set_admin_and_example_config(self) -> None:
        await self.server.register("alice")
        self.assertTrue((await self.cli_json("set-admin", "alice"))["is_admin"])
        self.assertFalse((await self.cli_json("set-admin", "alice", "--off"))["is_admin"])
        out = await self.cli_ok("example-config")
        self.assertIn("registration:", out)
        yaml.safe_load(out)

    @inline
    async def test_bad_configuration_and_bad_usage_exit_2(self) -> None:
        code, _, _ = await self.cli("no-such-command")
        self.assertEqual(code, 2)
        path = os.path.join(tempfile.mkdtemp(), "bad.yaml")
        with open(path, "w") as f:
            f.write("registration: {mode: sometimes}\n")
        out, err = io.StringIO(), io.StringIO()
        code = await admincli.run(["--config", path, "list-users"], reactor, io.StringIO(), out, err)
        self.assertEqual(code, 2)
        self.assertIn("registration.mode", err.getvalue())


for_each_backend(AdminCliMixin, AdminCase, globals())


class RegistrationConfigTests(ServerTestCase):
    config_overrides = {
        "registration": {"mode": "closed"},
        "ratelimits": {"register": {"rate": 1, "per": 3600, "burst": 2}},
    }

    @inline
    async def test_configured_mode_applies_until_the_database_overrides_it(self) -> None:
        code, body = await self.server.post("/api/register", {"username": "eve", "password": PASSWORD})
        self.assertEqual((code, body), (403, {"error": "Registration is closed", "code": "forbidden"}))
        await self.server.services.storage.admin.set_registration_mode("open", 0)
        await self.server.register("eve")

    @inline
    async def test_too_many_registrations_answer_429_too_many_requests(self) -> None:
        for _ in range(2):
            await self.server.post("/api/register", {"username": "eve", "password": PASSWORD})
        response = await treq.post(
            self.server.url + "/api/register", json={"username": "x", "password": PASSWORD}, persistent=False
        )
        await response.content()
        self.assertEqual((response.code, response.phrase), (429, b"Too Many Requests"))
        self.assertTrue(response.headers.getRawHeaders("Retry-After"))


# -- the admin HTTP API -------------------------------------------------------


class AdminApiMixin:
    @inline
    async def setUp(self) -> None:
        await super().setUp()
        await self.cli_ok("create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD)
        self.root = await self.server.login("root")

    async def api(
        self, method: str, path: str, body: Any = None, login: dict[str, Any] | None = None, query: bool = False
    ) -> tuple[int, Any]:
        login = self.root if login is None else login
        headers: dict[str, str] = {}
        url = self.server.url + "/api/admin/" + path
        if login:
            if query:
                url += ("&" if "?" in url else "?") + f"sessionID={login['sessionID']}&token={login['token']}"
            else:
                headers = {"X-Session-ID": login["sessionID"], "X-Session-Token": login["token"]}
        kwargs: dict[str, Any] = {"headers": headers, "persistent": False}
        if body is not None:
            kwargs["json"] = body
        response = await treq.request(method, url, **kwargs)
        text = await response.text()
        return response.code, (json.loads(text) if text else None)

    @inline
    async def test_no_session_401_non_admin_403_admin_200(self) -> None:
        plain = await self.server.user("plain")
        for method, path, body in (
            ("GET", "users", None),
            ("POST", "deactivate", {"username": "plain"}),
            ("POST", "invites", {}),
            ("PUT", "registration", {"mode": "closed"}),
            ("POST", "delete_message", {"message_id": str(uuid.uuid4())}),
            ("DELETE", "users/1", None),
        ):
            code, answer = await self.api(method, path, body, login={})
            self.assertEqual(
                (code, answer), (401, {"error": "Invalid or expired session", "code": "not_authenticated"}), path
            )
            wrong = dict(self.root, token="x" * 43)
            self.assertEqual((await self.api(method, path, body, login=wrong))[0], 401, path)
            code, answer = await self.api(method, path, body, login=plain)
            self.assertEqual((code, answer), (403, {"error": "Administrators only", "code": "forbidden"}), path)
        self.assertEqual((await self.api("GET", "registration"))[0], 200)
        self.assertEqual((await self.api("GET", "registration", query=True))[0], 200)
        self.assertEqual((await self.api("GET", "nothing-here"))[0], 404)
        self.assertEqual((await self.api("DELETE", "invites"))[0], 405)

    @inline
    async def test_list_and_create_users(self) -> None:
        await self.server.register("alice")
        code, body = await self.api("POST", "users", {"username": "bob", "password": PASSWORD, "is_admin": True})
        self.assertEqual(code, 201)
        self.assertEqual((body["user"]["username"], body["user"]["is_admin"]), ("bob", True))
        self.assertEqual((await self.api("POST", "users", {"username": "BOB", "password": PASSWORD}))[0], 409)
        code, body = await self.api("GET", "users?search=B&limit=10")
        self.assertEqual((code, [u["username"] for u in body["users"]]), (200, ["bob"]))
        code, body = await self.api("GET", "users")
        self.assertEqual([u["username"] for u in body["users"]], ["root", "alice", "bob"])
        self.assertEqual(
            set(body["users"][0]),
            {
                "user_id",
                "username",
                "is_admin",
                "active",
                "deactivated_at",
                "created_at",
                "last_seen",
                "sessions",
                "deleted_at",
            },
        )
        self.assertEqual((await self.api("GET", "users?limit=0"))[0], 400)

    @inline
    async def test_deactivate_through_the_api_ends_the_socket_at_once(self) -> None:
        alice = await self.person("alice")
        code, body = await self.api("POST", "deactivate", {"user_id": alice.id})
        self.assertEqual((code, body["sessions_ended"], body["user"]["active"]), (200, 1, False))
        await self.closed(alice.client, "Your account has been deactivated")
        code, _ = await self.server.post("/api/login", {"username": "alice", "password": PASSWORD})
        self.assertEqual(code, 403)
        self.assertEqual((await self.api("POST", "reactivate", {"username": "alice"}))[0], 200)
        await self.server.login("alice")
        code, body = await self.api("POST", "deactivate", {"username": "root"})
        self.assertEqual(
            (code, body), (400, {"error": "You cannot deactivate your own account", "code": "invalid_argument"})
        )
        self.assertEqual((await self.api("POST", "deactivate", {"username": "nobody"}))[0], 404)
        self.assertEqual((await self.api("POST", "deactivate", {}))[0], 400)

    @inline
    async def test_reset_password_and_revoke_sessions(self) -> None:
        alice = await self.person("alice")
        code, body = await self.api("POST", "reset_password", {"username": "alice", "password": "another password"})
        self.assertEqual((code, body), (200, {"sessions_ended": 1}))
        await self.closed(alice.client, "Your password was reset by an administrator")
        login = await self.server.login("alice", "another password")
        client = await self.connect(login)
        await client.expect("connection_successful")
        code, body = await self.api("POST", "revoke_sessions", {"user_id": alice.id})
        self.assertEqual((code, body), (200, {"sessions_ended": 1}))
        await self.closed(client, "Your session was ended by an administrator")
        self.assertEqual((await self.api("POST", "reset_password", {"username": "alice", "password": "x"}))[0], 400)

    @inline
    async def test_delete_message_tells_the_members_at_once(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        sent = await alice.call("send_message", recipient_id=bob.id, content="spam")
        code, body = await self.api("POST", "delete_message", {"message_id": sent["message_id"]})
        self.assertEqual(code, 200)
        for person in (alice, bob):
            event = await person.client.expect("message_deleted")
            self.assertEqual((event["message_id"], event["sender_id"]), (sent["message_id"], alice.id))
        self.assertEqual((await self.api("POST", "delete_message", {"message_id": sent["message_id"]}))[0], 404)

    @inline
    async def test_registration_mode_and_invites(self) -> None:
        code, body = await self.api("PUT", "registration", {"mode": "invite"})
        self.assertEqual((code, body), (200, {"mode": "invite", "source": "database"}))
        self.assertEqual((await self.api("PUT", "registration", {"mode": "sometimes"}))[0], 400)
        code, body = await self.api("POST", "invites", {"uses": 1})
        self.assertEqual((code, body["uses"]), (201, 1))
        code, _ = await self.server.post(
            "/api/register", {"username": "eve", "password": PASSWORD, "invite": body["invite"]}
        )
        self.assertEqual(code, 201)
        self.assertEqual((await self.api("POST", "invites"))[0], 201, "the body is optional")
        self.assertEqual((await self.api("POST", "invites", {"uses": 0}))[0], 400)
        code, body = await self.api("PUT", "registration", {"mode": None})
        self.assertEqual((code, body), (200, {"mode": "open", "source": "config"}))

    @inline
    async def test_an_admin_who_loses_the_flag_is_refused_at_once(self) -> None:
        await self.cli_ok("set-admin", "root", "--off")
        self.assertEqual((await self.api("GET", "users"))[0], 403)


for_each_backend(AdminApiMixin, AdminCase, globals())


# -- several nodes: the CLI tells them through Redis ------------------------------


class AdminAcrossNodesTests(TwoNodeAdminCase):
    """Two nodes on one PostgreSQL and one Redis; ``umoc-admin`` publishes on their bus."""

    async def on(self, node: Server, name: str) -> Person:
        return await person_on(self, node, name)

    @inline
    async def test_deactivation_ends_live_sockets_on_every_node_at_once(self) -> None:
        alice_a = await self.on(self.a, "alice")
        login_b = await self.b.login("alice")
        client_b = Client(self.b.url, login_b)
        self.clients.append(client_b)
        await blocking(client_b.connect)
        await client_b.expect("connection_successful")
        out = await self.cli_ok("deactivate", "alice")
        self.assertIn("2 sessions ended (running nodes were told through Redis)", out)
        await self.closed(alice_a.client, "Your account has been deactivated")
        await self.closed(client_b, "Your account has been deactivated")

    @inline
    async def test_cli_deletion_reaches_members_on_both_nodes(self) -> None:
        alice, bob = await self.on(self.a, "alice"), await self.on(self.b, "bob")
        await self.befriend(alice, bob)
        sent = await alice.call("send_message", recipient_id=bob.id, content="spam")
        await self.cli_ok("delete-message", sent["message_id"])
        for person in (alice, bob):
            self.assertEqual((await person.client.expect("message_deleted"))["message_id"], sent["message_id"])

    @inline
    async def test_reset_password_and_revoke_reach_the_other_node(self) -> None:
        bob = await self.on(self.b, "bob")
        await self.cli_ok("revoke-sessions", "bob")
        await self.closed(bob.client, "Your session was ended by an administrator")


class EveryEdgeWebhooksMixin:
    """``umoc-admin``, the admin API and the socket and HTTP paths write the same feed rows: the same webhooks.

    The CLI sends nothing itself: the node tailing the ``webhooks`` consumer
    finds the CLI's changes in the feed (by its poll, as another process's).
    """

    @inline
    async def setUp(self) -> None:
        self.hooks = WebhookReceiver(HOOK_SECRET)
        await serve(self, self.hooks)
        self.shared_config = {
            "webhooks": [
                {
                    "url": self.hooks.url + "/hook",
                    "secret": HOOK_SECRET,
                    "events": ["user.registered", "message.created", "message.deleted"],
                }
            ],
            "webhook_delivery": {"backoff": "0.05s"},
            "feed": {"consumer_poll_interval": "0.2s", "consumer_lease": "1s"},
        }
        await super().setUp()

    def received(self, kind: str) -> list[dict[str, Any]]:
        return [h for h in self.hooks.received if h["event"] == kind]

    @inline
    async def test_user_registered_and_message_deleted_whichever_edge_made_them(self) -> None:
        await self.server.register("viahttp")
        await self.cli_ok("create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD)
        root = await self.server.login("root")
        headers = {"X-Session-ID": root["sessionID"], "X-Session-Token": root["token"]}
        response = await treq.post(
            self.server.url + "/api/admin/users",
            json={"username": "viaapi", "password": PASSWORD},
            headers=headers,
            persistent=False,
        )
        self.assertEqual(response.code, 201)
        await response.content()
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        # A message deleted before its message.created is rendered is never announced (the outbox renders
        # rows as they are then): let each webhook go first, or the deletion (the socket's, or the CLI's,
        # which no longer migrates before it acts and so is quicker) may win the race.
        first = await self.send(alice, bob)
        await until(lambda: len(self.received("message.created")) == 1, what="the first message's webhook")
        by_socket = await alice.call("delete_message", message_id=first["message_id"])
        second = await self.send(alice, bob)
        await until(lambda: len(self.received("message.created")) == 2, what="both messages' webhooks")
        by_cli = await self.cli_json("delete-message", second["message_id"])
        await until(lambda: len(self.received("message.deleted")) == 2, what="both deletions")
        await until(lambda: len(self.received("user.registered")) == 5, what="five registrations")
        names = sorted(h["data"]["username"] for h in self.received("user.registered"))
        self.assertEqual(names, ["alice", "bob", "root", "viaapi", "viahttp"])
        deleted = {h["data"]["message_id"]: h["data"] for h in self.received("message.deleted")}
        self.assertEqual(deleted[by_socket["message_id"]], {**by_socket, "deleted_by": alice.id})
        self.assertEqual(deleted[by_cli["message_id"]]["deleted_by"], None)
        self.assertEqual(len(self.received("message.created")), 2)
        ids = [h["id"] for h in self.hooks.received]
        self.assertEqual(len(ids), len(set(ids)), "each once")

    async def send(self, sender: Person, to: Person) -> dict[str, Any]:
        sent = await sender.call("send_message", recipient_id=to.id, content="to delete")
        self.assertIn("message_id", sent, sent)
        return sent


for_each_backend(EveryEdgeWebhooksMixin, AdminCase, globals())
