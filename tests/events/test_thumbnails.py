"""Thumbnails of shared images: made after ``upload_file_complete``, described in the message, served to members.

In-process on both databases (the node on the real reactor, thumbnails in
its thread pool), and once over a real port with python-socketio.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import treq
from PIL import Image
from twisted.python import threadable

from tests.domain.test_thumbnails import image_bytes, png_bomb
from tests.support.chat import ChatCase, Person
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.inprocess import InProcessChatCase


class ThumbnailFlowMixin:
    @inline
    async def setUp(self) -> None:
        await super().setUp()  # type: ignore[misc]
        self.alice = await self.person("alice")
        self.bob = await self.person("bob")
        self.carol = await self.person("carol")

    async def share_image(
        self, sender: Person, recipient_id: int, is_group: bool, data: bytes, file_type: str
    ) -> dict[str, Any]:
        ready = await sender.call(
            "upload_file_prepare",
            recipient_id=recipient_id,
            is_group=is_group,
            file_name="photo",
            file_size=len(data),
            file_type=file_type,
        )
        put = await self.server.http(
            "PUT", ready["upload_url"], data, {"Authorization": f"Bearer {ready['upload_token']}"}
        )
        self.assertEqual(put.code, 201)
        return await sender.call(
            "upload_file_complete",
            file_id=ready["file_id"],
            recipient_id=recipient_id,
            is_group=is_group,
            file_name="photo",
            file_type=file_type,
        )

    async def fetch(self, url: str, who: Person | None) -> tuple[int, bytes, str | None]:
        headers = {} if who is None else {"X-Session-ID": who.login["sessionID"], "X-Session-Token": who.login["token"]}
        response = await self.server.http("GET", url, None, headers)
        return response.code, response.body, response.header("Content-Type")

    @inline
    async def test_each_image_format_gets_its_size_and_thumbnails_for_members_only(self) -> None:
        await self.befriend(self.alice, self.bob)
        group = await self.alice.call("create_group", name="Trip", member_ids=[self.bob.id])
        cases = [
            ("image/jpeg", image_bytes("JPEG", (1600, 1200))),
            ("image/png", image_bytes("PNG", (300, 900), mode="RGBA")),
            ("image/webp", image_bytes("WEBP", (500, 500))),
            ("image/gif", image_bytes("GIF", (100, 40), mode="P")),
        ]
        for file_type, data in cases:
            message = await self.share_image(self.alice, group["id"], True, data, file_type)
            received = await self.bob.client.expect("new_message")
            self.assertEqual(received["content"], message["content"])
            content = json.loads(received["content"])
            file_id = content["file_id"]
            self.assertEqual((content["width"], content["height"]), Image.open(io.BytesIO(data)).size)
            self.assertEqual(content["thumbnail_url"], f"/api/files/{file_id}/thumbnail?size=medium")
            for size, side in (("small", 64), ("medium", 320)):
                code, body, content_type = await self.fetch(f"/api/files/{file_id}/thumbnail?size={size}", self.bob)
                self.assertEqual(code, 200, file_type)
                self.assertEqual(content_type, "image/png" if file_type == "image/png" else "image/jpeg")
                self.assertEqual(
                    max(Image.open(io.BytesIO(body)).size), min(side, max(content["width"], content["height"]))
                )
            # Outsiders get the file's own 404, and without a session 401.
            self.assertEqual((await self.fetch(content["thumbnail_url"], self.carol))[0], 404)
            self.assertEqual((await self.fetch(content["url"], self.carol))[0], 404)
            self.assertEqual((await self.fetch(content["thumbnail_url"], None))[0], 401)
        code, _, _ = await self.fetch(f"/api/files/{file_id}/thumbnail?size=huge", self.bob)
        self.assertEqual(code, 400)

    @inline
    async def test_a_bomb_or_a_lie_about_the_type_gets_no_thumbnail_but_stays_downloadable(self) -> None:
        await self.befriend(self.alice, self.bob)
        for file_type, data in (("image/png", png_bomb(100_000, 100_000)), ("image/jpeg", b"<html>not a jpeg</html>")):
            message = await self.share_image(self.alice, self.bob.id, False, data, file_type)
            content = json.loads(message["content"])
            self.assertEqual(set(content), {"file_id", "file_name", "file_size", "file_type", "url"})
            self.assertEqual((await self.fetch(content["url"], self.bob))[:2], (200, data))
            thumbnail = f"/api/files/{content['file_id']}/thumbnail?size=small"
            self.assertEqual((await self.fetch(thumbnail, self.bob))[0], 404)

    @inline
    async def test_a_png_declared_as_a_file_is_not_decoded(self) -> None:
        await self.befriend(self.alice, self.bob)
        data = image_bytes("PNG", (50, 50))
        message = await self.share_image(self.alice, self.bob.id, False, data, "application/octet-stream")
        self.assertEqual(message["type"], "file")
        self.assertNotIn("thumbnail_url", json.loads(message["content"]))

    @inline
    async def test_an_upload_its_thumbnails_and_their_download_touch_no_file_on_the_reactor_thread(self) -> None:
        """Moving the upload into place, encoding, writing and serving its thumbnails: all in worker threads."""
        await self.befriend(self.alice, self.bob)
        data = image_bytes("JPEG", (1600, 1200))
        root = str(self.node.services.files.root)
        seen: list[tuple[str, bool]] = []
        save, replace, read_bytes = Image.Image.save, os.replace, Path.read_bytes

        def note(what: str, path: Any) -> None:
            if str(path).startswith(root):
                seen.append((f"{what} {Path(path).name}", threadable.isInIOThread()))

        def saving(image: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
            note("save", fp)
            save(image, fp, *args, **kwargs)

        def replacing(source: Any, target: Any) -> None:
            note("replace", target)
            replace(source, target)

        def reading(path: Path) -> bytes:
            note("read", path)
            return read_bytes(path)

        self.patch(Image.Image, "save", saving)
        self.patch(os, "replace", replacing)
        self.patch(Path, "read_bytes", reading)
        message = await self.share_image(self.alice, self.bob.id, False, data, "image/jpeg")
        file_id = json.loads(message["content"])["file_id"]
        for size in ("small", "medium"):
            self.assertEqual((await self.fetch(f"/api/files/{file_id}/thumbnail?size={size}", self.bob))[0], 200)
        kinds = sorted({what.split()[0] for what, _ in seen})
        self.assertEqual(kinds, ["read", "replace", "save"])
        self.assertEqual(len(seen), 1 + 2 * 2 + 2)  # the upload moved; 2 thumbnails saved and moved; 2 read
        self.assertEqual([what for what, on_reactor in seen if on_reactor], [])


for_each_backend(ThumbnailFlowMixin, InProcessChatCase, globals())


class ThumbnailOverTheWireTests(ChatCase):
    """python-socketio and HTTP over a real port: the photo's message, then its thumbnail."""

    backend = "sqlite"

    @inline
    async def test_a_shared_photo_is_thumbnailed_and_served(self) -> None:
        alice, bob = await self.person("alice"), await self.person("bob")
        await self.befriend(alice, bob)
        data = image_bytes("JPEG", (4000, 3000))
        ready = await alice.call(
            "upload_file_prepare",
            recipient_id=bob.id,
            is_group=False,
            file_name="p.jpg",
            file_size=len(data),
            file_type="image/jpeg",
        )
        put = await treq.put(
            self.server.url + ready["upload_url"],
            data=data,
            headers={"Authorization": f"Bearer {ready['upload_token']}"},
            persistent=False,
        )
        await put.content()
        self.assertEqual(put.code, 201)
        await alice.call(
            "upload_file_complete",
            file_id=ready["file_id"],
            recipient_id=bob.id,
            is_group=False,
            file_name="p.jpg",
            file_type="image/jpeg",
        )
        content = json.loads((await bob.client.expect("new_message"))["content"])
        self.assertEqual((content["width"], content["height"]), (4000, 3000))
        got = await treq.get(
            self.server.url + content["thumbnail_url"],
            headers={"X-Session-ID": bob.login["sessionID"], "X-Session-Token": bob.login["token"]},
            persistent=False,
        )
        body = await got.content()
        self.assertEqual(got.code, 200)
        self.assertEqual(Image.open(io.BytesIO(body)).size, (320, 240))
