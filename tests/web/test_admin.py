"""``/api/admin/`` rendered in-process: 401 without a session, 403 for a non-admin, the operations for an admin."""

from __future__ import annotations

from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from tests.support.web import Response, request
from umoc.credentials import new_token, token_digest
from umoc.records.sessions import NewSession


class AdminResourceTests(NodeTestCase):
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
