"""TOTP end to end: set up, enable, log in with ``totp``, replay and wrong codes, disable; codes from pyotp."""

from __future__ import annotations

import json
import time
from typing import Any

import pyotp
import treq

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline, sleep
from tests.support.server import ServerTestCase

PASSWORD = "correct horse battery"


class TotpTestsMixin:
    config_overrides = {"ratelimits": {"login_account": {"rate": 1, "per": 3600, "burst": 3}}}

    async def account(self, path: str, login: dict[str, Any], body: Any = None) -> tuple[int, Any]:
        headers = {"X-Session-ID": login["sessionID"], "X-Session-Token": login["token"]}
        response = await treq.post(
            self.server.url + "/api/account/totp/" + path, json=body or {}, headers=headers, persistent=False
        )
        return response.code, json.loads(await response.text())

    async def login(self, **extra: Any) -> tuple[int, Any]:
        return await self.server.post("/api/login", {"username": "alice", "password": PASSWORD, **extra})

    @inline
    async def test_setup_enable_login_with_codes_and_disable(self) -> None:
        if time.time() % 30 > 26:  # the codes below are of this step and its neighbours: not across a boundary
            await sleep(30 - time.time() % 30 + 0.1)
        first = await self.server.user("alice")
        code, body = await self.account("setup", {**first, "token": "wrong"})
        self.assertEqual(code, 401)
        code, setup = await self.account("setup", first)
        self.assertEqual(code, 200, setup)
        self.assertTrue(setup["otpauth_uri"].startswith("otpauth://totp/UMOC:alice?secret=" + setup["secret"]))
        app = pyotp.TOTP(setup["secret"])
        now = time.time()
        code, body = await self.account("enable", first, {"code": "000000" if app.now() != "000000" else "111111"})
        self.assertEqual((code, body["error"]), (400, "Invalid TOTP code"))
        self.assertEqual(await self.account("enable", first, {"code": app.at(now - 30)}), (200, {"enabled": True}))

        required = {"error": "TOTP code required", "code": "not_authenticated", "totp_required": True}
        self.assertEqual(await self.login(), (401, required))
        code, answer = await self.login(totp=app.at(now))
        self.assertEqual(code, 200, answer)
        code, body = await self.login(totp=app.at(now))  # the same code again: spent
        self.assertEqual((code, body.get("error"), body.get("totp_required")), (401, "Invalid TOTP code", True), body)

        code, body = await self.account("disable", answer, {"code": "123"})
        self.assertEqual(code, 400)
        self.assertEqual(await self.account("disable", answer, {"code": app.at(now + 30)}), (200, {"enabled": False}))
        code, _ = await self.login()
        self.assertEqual(code, 200)

    @inline
    async def test_wrong_codes_count_against_the_login_limits_even_from_a_known_client(self) -> None:
        login = await self.server.user("alice")
        _, setup = await self.account("setup", login)
        app = pyotp.TOTP(setup["secret"])
        self.assertEqual((await self.account("enable", login, {"code": app.now()}))[0], 200)
        # This client logged in before (known: ratelimits.login_account would not count a wrong password),
        # and that first login took one of the bucket's three.
        wrong = "000000" if app.now() != "000000" else "111111"
        codes = [(await self.login(totp=wrong, device_token=login["device_token"]))[0] for _ in range(3)]
        self.assertEqual(codes, [401, 401, 429])

    @inline
    async def test_accounts_without_a_password_cannot_set_up_totp(self) -> None:
        login = await self.server.user("alice")
        users = self.server.services.storage.db

        def no_password(txn: Any) -> None:
            txn.execute("UPDATE users SET password_hash = '!' WHERE id = ?", (login["user_id"],))

        await users.run("test", no_password)
        code, body = await self.account("setup", login)
        self.assertEqual((code, body["code"]), (403, "forbidden"))


for_each_backend(TotpTestsMixin, ServerTestCase, globals())
