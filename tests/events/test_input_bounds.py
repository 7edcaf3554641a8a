"""Every input is answered on both databases: NUL characters, numbers past any bound, foreign sessions.

Over the wire, with the stock python-socketio client: each bad value gets a
clear ``error`` (or HTTP 400/401) that names the field, never "Internal
server error", and nothing is stored.
"""

from __future__ import annotations

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase

NUL_MESSAGE = "the NUL character is not allowed"


class InputBoundsTestsMixin:
    @inline
    async def test_nul_in_any_text_field_is_refused_with_the_same_error(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        before = await self.snapshot()
        cases = [
            ("send_message", {"recipient_id": bob.id, "content": "hi\x00there", "type": "text"}, "content"),
            ("add_contact", {"contact_username": "bo\x00b"}, "contact_username"),
            ("create_group", {"name": "tr\x00ip", "member_ids": [bob.id]}, "name"),
            ("verify_session", {"token": "x\x00"}, "token"),
            (
                "upload_file_prepare",
                {
                    "recipient_id": bob.id,
                    "is_group": False,
                    "file_name": "a\x00.png",
                    "file_size": 3,
                    "file_type": "image/png",
                },
                "file_name",
            ),
        ]
        for event, payload, field in cases:
            answer = await alice.call(event, **payload)
            self.assertEqual(answer, {"error": f"Invalid '{field}': {NUL_MESSAGE}", "code": "invalid_argument"}, event)
        self.assertEqual(await self.snapshot(), before)

    @inline
    async def test_nul_over_http_is_400_or_401_never_500(self) -> None:
        for path, body in (
            ("/api/register", {"username": "ca\x00rol", "password": "correct horse battery"}),
            ("/api/register", {"username": "carol", "password": "correct\x00horse"}),
            ("/api/login", {"username": "ali\x00ce", "password": "correct horse battery"}),
        ):
            code, answer = await self.server.post(path, body)
            self.assertEqual(code, 400, (path, body))
            self.assertIn("NUL", answer["error"])
        code, _ = await self.server.post("/api/logout", {"sessionID": "a\x00", "token": "t"})
        self.assertEqual(code, 400)

    @inline
    async def test_numbers_past_every_bound_are_refused(self) -> None:
        alice = await self.person("alice")
        for since in (10**400, -(10**400), 1e300, -1e300):
            answer = await alice.call("sync", since=since)
            self.assertEqual(answer, {"error": "Invalid 'since': out of range", "code": "invalid_argument"}, since)
        answer = await alice.call("ping", timestamp=10**400)
        self.assertIn("Invalid 'timestamp'", answer["error"])
        answer = await alice.call("get_chat_history", chat_id=1, page=10**30)
        self.assertIn("Invalid 'page'", answer["error"])

    @inline
    async def test_verify_session_with_another_session_id_is_not_valid(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        answer = await alice.client.call("verify_session", {"sessionID": bob.client.session_id})
        self.assertEqual(answer, {"valid": False, "message": "Your session has expired or is invalid"})
        self.assertEqual(await alice.client.expect("session_status"), answer)
        self.assertEqual((await alice.call("verify_session"))["valid"], True)


for_each_backend(InputBoundsTestsMixin, InProcessChatCase, globals())
