"""``/api/admin/`` rendered in-process: 401 without a session, 403 for a non-admin, the operations for an admin."""

from __future__ import annotations

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from tests.support.web import Response, exchange, request
from umoc.credentials import new_token, token_digest
from umoc.records.sessions import NewSession


class _AdminSessions(NodeTestCase):
    use_clock = False  # creating users hashes passwords on the hashing pool

    async def session_of(self, name: str, admin: bool) -> dict[str, str]:
        user = await self.user(name)
        await self.storage.admin.set_admin(user.id, admin)
        token, now = new_token(), self.clock.seconds()
        await self.storage.users.create_session(
            NewSession(user.id, f"s-{name}", token_digest(token), now, now + 3600), 3
        )
        return {"X-Session-ID": f"s-{name}", "X-Session-Token": token}

    async def admin_call(self, method: str, path: str, headers: dict[str, str], body: object = None) -> Response:
        return await request(self.node.site, method, "/api/admin/" + path, body, headers)


class AdminResourceTests(_AdminSessions):
    @inline
    async def test_no_session_401_non_admin_403_admin_200(self) -> None:
        self.assertEqual((await self.admin_call("GET", "users", {})).code, 401)
        plain = await self.session_of("plain", admin=False)
        self.assertEqual((await self.admin_call("GET", "users", plain)).code, 403)
        boss = await self.session_of("boss", admin=True)
        answer = await self.admin_call("GET", "users", boss)
        self.assertEqual(answer.code, 200)
        self.assertEqual(sorted(u["username"] for u in answer.json()["users"]), ["boss", "plain"])

    @inline
    async def test_an_admin_creates_users_sets_registration_and_makes_invites(self) -> None:
        boss = await self.session_of("boss", admin=True)
        created = await self.admin_call("POST", "users", boss, {"username": "carol", "password": "long enough pw"})
        self.assertEqual((created.code, created.json()["user"]["username"]), (201, "carol"))
        mode = await self.admin_call("PUT", "registration", boss, {"mode": "invite"})
        self.assertEqual((mode.code, mode.json()["mode"]), (200, "invite"))
        invite = await self.admin_call("POST", "invites", boss, {})
        self.assertEqual(invite.code, 201)
        self.assertTrue(invite.json()["invite"])
        refused = await self.admin_call("POST", "users", boss, {"username": "c\x00", "password": "long enough pw"})
        self.assertEqual(refused.code, 400)


class AuditLogTestsMixin:
    """The admin API's changes are in the audit log with the admin and their address, listed paged and filtered."""

    @inline
    async def test_admin_api_changes_are_audited_and_listed(self) -> None:
        boss = await self.session_of("boss", admin=True)
        plain = await self.session_of("plain", admin=False)
        created = await self.admin_call("POST", "users", boss, {"username": "carol", "password": "long enough pw"})
        self.assertEqual(created.code, 201)
        carol = created.json()["user"]["user_id"]
        self.assertEqual((await self.admin_call("POST", "deactivate", boss, {"username": "carol"})).code, 200)
        self.assertEqual((await self.admin_call("PUT", "registration", boss, {"mode": "closed"})).code, 200)
        listed = await self.admin_call("GET", "audit", boss)
        self.assertEqual(listed.code, 200)
        entries = listed.json()["entries"]
        self.assertEqual([e["action"] for e in entries], ["registration_mode.set", "user.deactivate", "user.create"])
        boss_id = (await self.storage.admin.find("boss")).id  # type: ignore[union-attr]
        self.assertEqual(
            entries[1]["actor"], {"user_id": boss_id, "name": "boss", "via": "admin_api", "address": "127.0.0.1"}
        )
        self.assertEqual((entries[1]["target_type"], entries[1]["target_id"]), ("user", str(carol)))
        self.assertEqual(entries[0]["details"], {"mode": "closed"})
        # Paged newest first, and filtered.
        first = (await self.admin_call("GET", "audit?limit=2", boss)).json()
        self.assertEqual(len(first["entries"]), 2)
        rest = (await self.admin_call("GET", f"audit?limit=2&cursor={first['next_cursor']}", boss)).json()
        self.assertEqual(([e["action"] for e in rest["entries"]], rest["next_cursor"]), (["user.create"], None))
        only = (await self.admin_call("GET", "audit?action=user.deactivate&actor=BOSS", boss)).json()
        self.assertEqual([e["action"] for e in only["entries"]], ["user.deactivate"])
        later = (await self.admin_call("GET", "audit?since=2999-01-01T00:00:00Z", boss)).json()
        self.assertEqual(later["entries"], [])
        for query in ("cursor=abc", "action=nope", "since=yesterday", "limit=0"):
            self.assertEqual((await self.admin_call("GET", "audit?" + query, boss)).code, 400, query)
        self.assertEqual((await self.admin_call("GET", "audit", plain)).code, 403)


for_each_backend(AuditLogTestsMixin, _AdminSessions, globals())


class AdminInputBoundsTestsMixin:
    """Issue 22 G10: numbers the database cannot hold and NUL in ``search`` are a 400, on either database."""

    @inline
    async def test_out_of_range_numbers_and_nul_answer_400_with_an_error(self) -> None:
        boss = await self.session_of("boss", admin=True)
        huge, negative = str(2**70), "-1"
        for query in (
            f"users?offset={huge}",
            f"users?offset={negative}",
            f"users?limit={huge}",
            "users?offset=9223372036854775808",
            "users?search=a%00b",
            "users?search=" + "a" * 1000,
        ):
            answer = await exchange(self.node.site, "GET", "/api/admin/" + query, headers=boss)  # decodes %00
            self.assertEqual(answer.code, 400, query)
            self.assertIsInstance(answer.json()["error"], str)
        for user_id in (2**70, -1, 0, 2**63):
            for endpoint, body in (
                ("deactivate", {"user_id": user_id}),
                ("reactivate", {"user_id": user_id}),
                ("revoke_sessions", {"user_id": user_id}),
                ("reset_password", {"user_id": user_id, "password": "long enough pw"}),
            ):
                answer = await self.admin_call("POST", endpoint, boss, body)
                self.assertEqual(answer.code, 400, (endpoint, user_id))
                self.assertIn("user_id", answer.json()["error"])
        for path in (f"users/{2**70}", "users/-1"):
            self.assertIn((await self.admin_call("DELETE", path, boss)).code, (400, 404), path)
        # Within range everything still answers as before.
        self.assertEqual((await self.admin_call("GET", "users?offset=9223372036854775807", boss)).json(), {"users": []})
        self.assertEqual((await self.admin_call("POST", "deactivate", boss, {"user_id": 2**63 - 1})).code, 404)


for_each_backend(AdminInputBoundsTestsMixin, _AdminSessions, globals())
