"""File sharing end to end: Socket.IO events, HTTP upload and download, on both databases.

prepare -> PUT a few MiB -> complete -> the other member receives
``new_message`` with the file's JSON metadata -> downloads the same bytes;
outsiders are refused.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from tests.support.chat import Person
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase
from tests.support.server import ServerTestCase


class FileFlowMixin:
    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.alice = await self.person("alice")
        self.bob = await self.person("bob")
        self.carol = await self.person("carol")

    async def prepare(
        self,
        sender: Person,
        recipient_id: int,
        is_group: bool,
        size: int,
        file_name: str = "holiday.png",
        file_type: str = "image/png",
    ) -> dict[str, Any]:
        return await sender.call(
            "upload_file_prepare",
            recipient_id=recipient_id,
            is_group=is_group,
            file_name=file_name,
            file_size=size,
            file_type=file_type,
        )

    async def upload(self, ready: dict[str, Any], data: bytes) -> int:
        response = await self.server.http(
            "PUT", ready["upload_url"], data, {"Authorization": f"Bearer {ready['upload_token']}"}
        )
        return response.code

    async def download(self, url: str, who: Person) -> tuple[int, bytes]:
        response = await self.server.http(
            "GET", url, None, {"X-Session-ID": who.login["sessionID"], "X-Session-Token": who.login["token"]}
        )
        return response.code, response.body

    async def share(self, sender: Person, recipient_id: int, is_group: bool, data: bytes) -> dict[str, Any]:
        """prepare, upload, complete: the ack of upload_file_complete (the new_message payload)."""
        ready = await self.prepare(sender, recipient_id, is_group, len(data))
        self.assertEqual(await self.upload(ready, data), 201)
        return await sender.call(
            "upload_file_complete",
            file_id=ready["file_id"],
            recipient_id=recipient_id,
            is_group=is_group,
            file_name="holiday.png",
            file_type="image/png",
        )

    @inline
    async def test_direct_file_reaches_the_friend_who_downloads_the_same_bytes(self) -> None:
        await self.befriend(self.alice, self.bob)
        data = os.urandom(3 * 1024 * 1024 + 17)
        ready = await self.prepare(self.alice, self.bob.id, False, len(data))
        self.assertEqual(set(ready), {"file_id", "upload_url", "upload_token", "expires_in"})
        uuid.UUID(ready["file_id"])
        self.assertEqual(ready["upload_url"], f"/api/upload/{ready['file_id']}")
        self.assertEqual(ready["expires_in"], 3600)
        self.assertEqual(await self.alice.client.expect("file_upload_ready"), ready)
        self.assertEqual(await self.upload(ready, data), 201)
        message = await self.alice.call(
            "upload_file_complete",
            file_id=ready["file_id"],
            recipient_id=self.bob.id,
            is_group=False,
            file_name="holiday.png",
            file_type="image/png",
        )
        received = await self.bob.client.expect("new_message")
        self.assertEqual(received, message)
        self.assertEqual(received["type"], "image")
        self.assertEqual(received["sender_id"], self.alice.id)
        self.assertEqual(received["recipient_id"], self.bob.id)
        content = json.loads(received["content"])
        url = f"/api/files/{ready['file_id']}"
        self.assertEqual(
            content,
            {
                "file_id": ready["file_id"],
                "file_name": "holiday.png",
                "file_size": len(data),
                "file_type": "image/png",
                "url": url,
            },
        )
        self.assertEqual(await self.download(url, self.bob), (200, data))
        self.assertEqual((await self.download(url, self.carol))[0], 404)

    @inline
    async def test_group_file_is_downloadable_by_members_only(self) -> None:
        await self.befriend(self.alice, self.bob)
        group = await self.alice.call("create_group", name="Trip", member_ids=[self.bob.id])
        data = os.urandom(256 * 1024)
        message = await self.share(self.alice, group["id"], True, data)
        self.assertEqual(message["is_group"], True)
        received = await self.bob.client.expect("new_message")
        url = json.loads(received["content"])["url"]
        self.assertEqual(await self.download(url, self.bob), (200, data))
        self.assertEqual((await self.download(url, self.carol))[0], 404)

    @inline
    async def test_completing_twice_posts_one_message(self) -> None:
        await self.befriend(self.alice, self.bob)
        ready = await self.prepare(self.alice, self.bob.id, False, 10)
        self.assertEqual(await self.upload(ready, b"0123456789"), 201)
        payload = {
            "file_id": ready["file_id"],
            "recipient_id": self.bob.id,
            "is_group": False,
            "file_name": "holiday.png",
            "file_type": "image/png",
        }
        await self.alice.call("upload_file_complete", **payload)
        again = await self.alice.call("upload_file_complete", **payload)
        self.assertEqual(again, {"error": "File already shared", "code": "conflict"})
        await self.bob.client.expect("new_message")
        await self.bob.client.expect_none("new_message")

    @inline
    async def test_complete_before_the_bytes_arrived_is_refused_and_nothing_is_sent(self) -> None:
        await self.befriend(self.alice, self.bob)
        ready = await self.prepare(self.alice, self.bob.id, False, 10)
        answer = await self.alice.call(
            "upload_file_complete",
            file_id=ready["file_id"],
            recipient_id=self.bob.id,
            is_group=False,
            file_name="holiday.png",
            file_type="image/png",
        )
        self.assertEqual(answer, {"error": "The file has not arrived whole yet", "code": "conflict"})
        await self.bob.client.expect_none("new_message")

    @inline
    async def test_only_the_uploader_may_complete_and_only_for_the_prepared_chat(self) -> None:
        await self.befriend(self.alice, self.bob)
        await self.befriend(self.alice, self.carol)
        ready = await self.prepare(self.alice, self.bob.id, False, 10)
        self.assertEqual(await self.upload(ready, b"0123456789"), 201)
        common = {"file_id": ready["file_id"], "is_group": False, "file_name": "holiday.png", "file_type": "image/png"}
        self.assertEqual(
            await self.bob.call("upload_file_complete", recipient_id=self.alice.id, **common),
            {"error": "Unknown file", "code": "not_found"},
        )
        self.assertEqual(
            await self.alice.call("upload_file_complete", recipient_id=self.carol.id, **common),
            {"error": "The file was prepared for another chat", "code": "invalid_argument"},
        )
        renamed = {**common, "file_name": "other.png"}
        self.assertIn(
            "file_name", (await self.alice.call("upload_file_complete", recipient_id=self.bob.id, **renamed))["error"]
        )

    @inline
    async def test_strangers_and_outsiders_cannot_prepare(self) -> None:
        answer = await self.prepare(self.alice, self.bob.id, False, 10)
        self.assertIn("error", answer)
        await self.befriend(self.alice, self.bob)
        group = await self.alice.call("create_group", name="Trip", member_ids=[self.bob.id])
        self.assertIn("error", await self.prepare(self.carol, group["id"], True, 10))
        count = await self.server.services.storage.db.run("test", lambda t: t.scalar("SELECT COUNT(*) FROM files"))
        self.assertEqual(count, 0)


for_each_backend(FileFlowMixin, InProcessChatCase, globals())


class PrepareValidationTestsMixin:
    """Checks made before the chat is looked at."""

    @inline
    async def test_bad_names_types_and_sizes_get_error_and_store_nothing(self) -> None:
        _, client = await self.connected_user("alice")
        good = {"recipient_id": 2, "is_group": False, "file_name": "a.png", "file_size": 10, "file_type": "image/png"}
        cases = [
            ({"file_name": "../../etc/passwd"}, "file_name"),
            ({"file_name": "a\\b.png"}, "file_name"),
            ({"file_name": "a\x00.png"}, "file_name"),
            ({"file_name": "x" * 256}, "file_name"),
            ({"file_type": "text/html"}, "not allowed"),
            ({"file_type": "application/x-sh"}, "not allowed"),
            ({"file_size": 0}, "file_size"),
            ({"file_size": 25 * 1024 * 1024 + 1}, "too large"),
            ({"file_size": "10"}, "file_size"),
            ({"is_group": "no"}, "is_group"),
            ({"recipient_id": True}, "recipient_id"),
        ]
        for change, expected in cases:
            answer = await client.call("upload_file_prepare", client.with_session(**{**good, **change}))
            self.assertIn(expected, answer.get("error", ""), (change, answer))
        count = await self.server.services.storage.db.run("test", lambda t: t.scalar("SELECT COUNT(*) FROM files"))
        self.assertEqual(count, 0)

    @inline
    async def test_complete_for_an_unknown_file_is_an_error(self) -> None:
        _, client = await self.connected_user("alice")
        answer = await client.call(
            "upload_file_complete",
            client.with_session(
                file_id=str(uuid.uuid4()), recipient_id=2, is_group=False, file_name="a.png", file_type="image/png"
            ),
        )
        self.assertEqual(answer, {"error": "Unknown file", "code": "not_found"})


for_each_backend(PrepareValidationTestsMixin, ServerTestCase, globals())
