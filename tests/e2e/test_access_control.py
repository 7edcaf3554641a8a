"""Access control for every event and endpoint that names a chat, message, file or user.

One world per test, on SQLite and PostgreSQL: alice is friends with bob, dave
and eve; alice (admin), bob and dave were in a group until alice removed dave;
alice then blocked eve; bob has a request pending to dave; carol knows nobody.
Every refused attempt must answer ``error`` (404/401 over HTTP), tell nobody
anything, change no row, and answer a real id exactly as it answers a missing
one, so that outsiders cannot even learn what exists.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import treq

from tests.support.chat import ChatCase, Person
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline, sleep
from umoc.errors import CODES
from umoc.events.router import build_routes
from umoc.events.routes import ROUTE_GROUPS

MISSING_USER = 10**6
UNKNOWN_CHAT = "Unknown chat"
NOT_FRIENDS = "You can only send direct messages to your friends"
NOT_FOUND = "Message not found"
UNKNOWN_FILE = "Unknown file"
NO_REQUEST = "No pending contact request from this user"
ROLE_REFUSED = "Your role does not allow that"
FOREIGN_SESSION = "sessionID does not match this connection's session"


@dataclass
class World:
    alice: Person
    bob: Person
    carol: Person
    dave: Person
    eve: Person
    gid: int
    #: Message ids: direct alice->bob, bob->alice, alice->eve and eve->alice (before the block);
    #: in the group: dave's (before his removal), bob's before and after it.
    to_bob: str
    to_alice: str
    to_eve: str
    from_eve: str
    #: alice->eve, read by eve before the block.
    read_by_eve: str
    dave_in_group: str
    bob_before: str
    bob_after: str
    #: Files shared (completed): alice->bob, alice->group.
    direct_file: str
    group_file: str
    #: Files uploaded but never completed: by eve for alice, by dave for the group;
    #: alice's upload to bob prepared only (its token unspent).
    eve_file: str
    dave_file: str
    pending_file: dict[str, Any]

    @property
    def people(self) -> list[Person]:
        return [self.alice, self.bob, self.carol, self.dave, self.eve]


UPLOAD = {"file_name": "a.png", "file_size": 4, "file_type": "image/png"}
COMPLETE = {"file_name": "a.png", "file_type": "image/png"}


def group_targets(gid: int) -> tuple[dict[str, Any], ...]:
    """The group as a chat and as a recipient, and a missing group both ways: (chat, missing chat, to, to missing)."""
    return (
        {"chat_id": gid, "is_group": True},
        {"chat_id": gid + 1000, "is_group": True},
        {"recipient_id": gid, "is_group": True},
        {"recipient_id": gid + 1000, "is_group": True},
    )


def missing_message() -> str:
    return str(uuid.uuid4())


class AccessControlTestsMixin:
    config_overrides = {"ratelimits": {"enabled": False}}

    # -- the world -----------------------------------------------------------

    async def send(self, sender: Person, recipient_id: int, content: str, is_group: bool = False) -> str:
        sent = await sender.call("send_message", recipient_id=recipient_id, content=content, is_group=is_group)
        self.assertNotIn("error", sent)
        return sent["message_id"]

    async def prepare(self, sender: Person, recipient_id: int, is_group: bool) -> dict[str, Any]:
        ready = await sender.call(
            "upload_file_prepare",
            recipient_id=recipient_id,
            is_group=is_group,
            file_name="a.png",
            file_size=4,
            file_type="image/png",
        )
        self.assertNotIn("error", ready)
        return ready

    async def put(self, file_id: str, token: str | None, data: bytes = b"data") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = await treq.put(
            f"{self.server.url}/api/upload/{file_id}", data=data, headers=headers, persistent=False
        )
        return response.code, await response.json()

    async def get_file(self, file_id: str, who: Person | None, token: str | None = None) -> tuple[int, Any]:
        headers = (
            {}
            if who is None
            else {"X-Session-ID": who.login["sessionID"], "X-Session-Token": token or who.login["token"]}
        )
        response = await treq.get(f"{self.server.url}/api/files/{file_id}", headers=headers, persistent=False)
        body = await response.content()
        return response.code, (body if response.code == 200 else json.loads(body))

    async def uploaded(self, sender: Person, recipient_id: int, is_group: bool) -> str:
        ready = await self.prepare(sender, recipient_id, is_group)
        self.assertEqual((await self.put(ready["file_id"], ready["upload_token"]))[0], 201)
        return ready["file_id"]

    async def shared(self, sender: Person, recipient_id: int, is_group: bool) -> str:
        file_id = await self.uploaded(sender, recipient_id, is_group)
        done = await sender.call(
            "upload_file_complete",
            file_id=file_id,
            recipient_id=recipient_id,
            is_group=is_group,
            file_name="a.png",
            file_type="image/png",
        )
        self.assertNotIn("error", done)
        return file_id

    async def world(self) -> World:
        alice, bob, carol, dave, eve = [await self.person(n) for n in ("alice", "bob", "carol", "dave", "eve")]
        for friend in (bob, dave, eve):
            await self.befriend(alice, friend)
        group = await alice.call("create_group", name="Team", member_ids=[bob.id, dave.id])
        gid = group["id"]
        ids = dict(
            to_bob=await self.send(alice, bob.id, "to bob"),
            to_alice=await self.send(bob, alice.id, "to alice"),
            to_eve=await self.send(alice, eve.id, "to eve"),
            from_eve=await self.send(eve, alice.id, "from eve"),
            read_by_eve=await self.send(alice, eve.id, "read before the block"),
            dave_in_group=await self.send(dave, gid, "dave here", True),
            bob_before=await self.send(bob, gid, "before", True),
            direct_file=await self.shared(alice, bob.id, False),
            group_file=await self.shared(alice, gid, True),
            eve_file=await self.uploaded(eve, alice.id, False),
            dave_file=await self.uploaded(dave, gid, True),
            pending_file=await self.prepare(alice, bob.id, False),
        )
        self.assertNotIn("error", await alice.call("remove_group_member", chat_id=gid, user_id=dave.id))
        self.assertNotIn("error", await eve.call("read_receipt", message_ids=[ids["read_by_eve"]], sender_id=alice.id))
        self.assertNotIn("error", await alice.call("block_contact", contact_id=eve.id))
        self.assertEqual((await bob.call("add_contact", contact_username="dave"))["status"], "NEW")
        ids["bob_after"] = await self.send(bob, gid, "after", True)
        world = World(alice, bob, carol, dave, eve, gid, **ids)
        await self.settle(world)
        return world

    async def settle(self, world: World) -> None:
        """Let every event already sent arrive (a round trip on each socket), then forget them all."""
        # The status announcements of the connects (to friends made since) run beside the events: wait for them.
        await self.server.service.node.socketapp.idle()
        for person in world.people:
            await person.call("ping", timestamp=1)
        await sleep(0.1)
        for person in world.people:
            person.client.drain_all()

    async def assert_nobody_heard_anything(self, world: World, errors: Counter[str]) -> None:
        """The askers got their ``error`` events (``errors`` by username) and nothing else; nobody else got any."""
        await sleep(0.3)
        for person in world.people:
            received = person.client.drain_all()
            self.assertEqual(len(received.pop("error", [])), errors[person.name], person.name)
            self.assertEqual(received, {}, person.name)

    async def refused(
        self, cases: list[tuple[Person, str, dict[str, Any], str, dict[str, Any] | None]]
    ) -> Counter[str]:
        """Each case answers exactly ``expected``; with a second payload (a missing id), the very same answer.

        Returns how many ``error`` events each asker should have received.
        """
        errors: Counter[str] = Counter()
        for person, event, payload, expected, missing in cases:
            answer = await person.call(event, **payload)
            self.assertEqual(answer, {"error": expected, "code": answer.get("code")}, (person.name, event, payload))
            self.assertIn(answer["code"], CODES, (person.name, event, payload))
            errors[person.name] += 1
            if missing is not None:
                self.assertEqual(await person.call(event, **missing), answer, (person.name, event, missing))
                errors[person.name] += 1
        return errors

    # -- socket events -------------------------------------------------------

    @inline
    async def test_stranger_gets_the_same_error_for_real_and_missing_chats_messages_files_requests(self) -> None:
        w = await self.world()
        alice, bob, carol, gid = w.alice, w.bob, w.carol, w.gid
        before = await self.snapshot()
        direct, missing_direct = {"chat_id": alice.id}, {"chat_id": MISSING_USER}
        group, missing_group, to_group, to_no_group = group_targets(gid)
        to_alice = {"recipient_id": alice.id, "is_group": False}
        to_nobody = {"recipient_id": MISSING_USER, "is_group": False}
        text = {"content": "let me in", "type": "text"}
        upload = UPLOAD
        complete = COMPLETE
        errors = await self.refused(
            [
                (carol, "get_chat_info", direct, UNKNOWN_CHAT, missing_direct),
                (carol, "get_chat_info", group, UNKNOWN_CHAT, missing_group),
                (carol, "get_chat_history", direct, UNKNOWN_CHAT, missing_direct),
                (carol, "get_chat_history", group, UNKNOWN_CHAT, missing_group),
                (carol, "send_message", {**to_alice, **text}, NOT_FRIENDS, {**to_nobody, **text}),
                (carol, "send_message", {**to_group, **text}, UNKNOWN_CHAT, {**to_no_group, **text}),
                (carol, "typing", {**to_alice, "is_typing": True}, NOT_FRIENDS, {**to_nobody, "is_typing": True}),
                (carol, "typing", {**to_group, "is_typing": True}, UNKNOWN_CHAT, {**to_no_group, "is_typing": True}),
                (carol, "delete_message", {"message_id": w.to_bob}, NOT_FOUND, {"message_id": missing_message()}),
                (carol, "delete_message", {"message_id": w.bob_after}, NOT_FOUND, None),
                (
                    carol,
                    "read_receipt",
                    {"message_ids": [w.to_bob], "sender_id": alice.id},
                    NOT_FOUND,
                    {"message_ids": [missing_message()], "sender_id": alice.id},
                ),
                (carol, "read_receipt", {"message_ids": [w.bob_after], "sender_id": bob.id}, NOT_FOUND, None),
                (carol, "upload_file_prepare", {**to_alice, **upload}, NOT_FRIENDS, {**to_nobody, **upload}),
                (carol, "upload_file_prepare", {**to_group, **upload}, UNKNOWN_CHAT, {**to_no_group, **upload}),
                (
                    carol,
                    "upload_file_complete",
                    {"file_id": w.eve_file, **to_alice, **complete},
                    UNKNOWN_FILE,
                    {"file_id": str(uuid.uuid4()), **to_alice, **complete},
                ),
                (carol, "upload_file_complete", {"file_id": w.dave_file, **to_group, **complete}, UNKNOWN_FILE, None),
                (
                    carol,
                    "upload_file_complete",
                    {"file_id": w.pending_file["file_id"], "recipient_id": bob.id, "is_group": False, **complete},
                    UNKNOWN_FILE,
                    None,
                ),
                # bob's request went to dave, not to carol.
                (carol, "accept_contact", {"contact_id": bob.id}, NO_REQUEST, {"contact_id": MISSING_USER}),
                (carol, "reject_contact", {"contact_id": bob.id}, NO_REQUEST, {"contact_id": MISSING_USER}),
                (
                    carol,
                    "update_group",
                    {"chat_id": gid, "name": "Mine"},
                    UNKNOWN_CHAT,
                    {"chat_id": gid + 1000, "name": "Mine"},
                ),
                (
                    carol,
                    "add_group_member",
                    {"chat_id": gid, "user_id": carol.id},
                    UNKNOWN_CHAT,
                    {"chat_id": gid + 1000, "user_id": carol.id},
                ),
                (
                    carol,
                    "remove_group_member",
                    {"chat_id": gid, "user_id": bob.id},
                    UNKNOWN_CHAT,
                    {"chat_id": gid + 1000, "user_id": bob.id},
                ),
                (carol, "leave_group", {"chat_id": gid}, UNKNOWN_CHAT, {"chat_id": gid + 1000}),
            ]
        )
        sync = await carol.call("sync", since=0)
        self.assertEqual((sync["messages"], sync["has_more"]), ([], False))
        self.assertEqual(await carol.call("get_chats"), [])
        for answered in ("sync_result", "chats"):
            carol.client.drain(answered)
        self.assertEqual(await self.snapshot(), before)
        await self.assert_nobody_heard_anything(w, errors)

    @inline
    async def test_members_friends_and_the_blocked_cannot_act_beyond_their_rights(self) -> None:
        w = await self.world()
        alice, bob, dave, eve, gid = w.alice, w.bob, w.dave, w.eve, w.gid
        before = await self.snapshot()
        group, missing_group, to_group, to_no_group = group_targets(gid)
        text = {"content": "still here?", "type": "text"}
        upload = UPLOAD
        complete = COMPLETE
        errors = await self.refused(
            [
                # The removed member: the group is as unknown to him as a missing one.
                (dave, "get_chat_info", group, UNKNOWN_CHAT, missing_group),
                (dave, "get_chat_history", group, UNKNOWN_CHAT, missing_group),
                (dave, "send_message", {**to_group, **text}, UNKNOWN_CHAT, {**to_no_group, **text}),
                (dave, "typing", {**to_group, "is_typing": True}, UNKNOWN_CHAT, {**to_no_group, "is_typing": True}),
                (dave, "upload_file_prepare", {**to_group, **upload}, UNKNOWN_CHAT, {**to_no_group, **upload}),
                (dave, "upload_file_complete", {"file_id": w.dave_file, **to_group, **complete}, UNKNOWN_CHAT, None),
                (
                    dave,
                    "read_receipt",
                    {"message_ids": [w.bob_after], "sender_id": bob.id},
                    NOT_FOUND,
                    {"message_ids": [missing_message()], "sender_id": bob.id},
                ),
                (dave, "read_receipt", {"message_ids": [w.bob_before], "sender_id": bob.id}, NOT_FOUND, None),
                (dave, "delete_message", {"message_id": w.bob_before}, NOT_FOUND, None),
                (
                    dave,
                    "update_group",
                    {"chat_id": gid, "name": "Mine"},
                    UNKNOWN_CHAT,
                    {"chat_id": gid + 1000, "name": "Mine"},
                ),
                (
                    dave,
                    "add_group_member",
                    {"chat_id": gid, "user_id": dave.id},
                    UNKNOWN_CHAT,
                    {"chat_id": gid + 1000, "user_id": dave.id},
                ),
                (
                    dave,
                    "remove_group_member",
                    {"chat_id": gid, "user_id": bob.id},
                    UNKNOWN_CHAT,
                    {"chat_id": gid + 1000, "user_id": bob.id},
                ),
                (dave, "leave_group", {"chat_id": gid}, UNKNOWN_CHAT, {"chat_id": gid + 1000}),
                # A member who is not an admin.
                (bob, "update_group", {"chat_id": gid, "name": "Mine"}, ROLE_REFUSED, None),
                (bob, "update_group", {"chat_id": gid, "description": "mine"}, ROLE_REFUSED, None),
                (bob, "add_group_member", {"chat_id": gid, "user_id": dave.id}, ROLE_REFUSED, None),
                (bob, "remove_group_member", {"chat_id": gid, "user_id": alice.id}, ROLE_REFUSED, None),
                # Friends may not touch what is not theirs: others' messages, files and requests.
                (bob, "delete_message", {"message_id": w.to_bob}, NOT_FOUND, None),
                # In a group a member may not delete another's message (the owner may: issue 29).
                (bob, "delete_message", {"message_id": w.dave_in_group}, ROLE_REFUSED, None),
                (alice, "read_receipt", {"message_ids": [w.to_bob], "sender_id": alice.id}, NOT_FOUND, None),
                (alice, "read_receipt", {"message_ids": [w.to_bob], "sender_id": bob.id}, NOT_FOUND, None),
                (alice, "read_receipt", {"message_ids": [w.to_alice, w.to_bob], "sender_id": bob.id}, NOT_FOUND, None),
                (bob, "read_receipt", {"message_ids": [w.to_eve], "sender_id": alice.id}, NOT_FOUND, None),
                (
                    bob,
                    "upload_file_complete",
                    {"file_id": w.pending_file["file_id"], "recipient_id": alice.id, "is_group": False, **complete},
                    UNKNOWN_FILE,
                    None,
                ),
                (
                    alice,
                    "upload_file_complete",
                    {"file_id": w.eve_file, "recipient_id": alice.id, "is_group": False, **complete},
                    UNKNOWN_FILE,
                    None,
                ),
                (bob, "accept_contact", {"contact_id": dave.id}, NO_REQUEST, None),
                (bob, "reject_contact", {"contact_id": dave.id}, NO_REQUEST, None),
                (alice, "accept_contact", {"contact_id": bob.id}, NO_REQUEST, None),
                # The blocked user, and the blocker, can no longer reach each other.
                (eve, "send_message", {"recipient_id": alice.id, **text}, NOT_FRIENDS, None),
                (eve, "typing", {"recipient_id": alice.id, "is_typing": True}, NOT_FRIENDS, None),
                (
                    eve,
                    "upload_file_prepare",
                    {"recipient_id": alice.id, "is_group": False, **upload},
                    NOT_FRIENDS,
                    None,
                ),
                (
                    eve,
                    "upload_file_complete",
                    {"file_id": w.eve_file, "recipient_id": alice.id, "is_group": False, **complete},
                    NOT_FRIENDS,
                    None,
                ),
                (eve, "delete_message", {"message_id": w.to_eve}, NOT_FOUND, None),
                (eve, "accept_contact", {"contact_id": alice.id}, NO_REQUEST, None),
                (eve, "reject_contact", {"contact_id": alice.id}, NO_REQUEST, None),
                (eve, "add_contact", {"contact_username": "alice"}, "You cannot add this user", None),
                (alice, "send_message", {"recipient_id": eve.id, **text}, NOT_FRIENDS, None),
                (alice, "typing", {"recipient_id": eve.id, "is_typing": False}, NOT_FRIENDS, None),
                (
                    alice,
                    "add_group_member",
                    {"chat_id": gid, "user_id": eve.id},
                    "You can only add your friends to a group",
                    None,
                ),
            ]
        )
        # The removed member catches up on nothing from the group.
        sync = await dave.call("sync", since=0)
        self.assertEqual(sync["messages"], [])
        self.assertEqual([c for c in await dave.call("get_chats") if c["is_group"]], [])
        for answered in ("sync_result", "chats"):
            dave.client.drain(answered)
        self.assertEqual(await self.snapshot(), before)
        await self.assert_nobody_heard_anything(w, errors)

    @inline
    async def test_every_event_with_another_users_session_id_is_refused(self) -> None:
        w = await self.world()
        alice, carol = w.alice, w.carol
        before = await self.snapshot()
        # One payload valid for every event's schema, so the sessionID is all that is wrong.
        payload = {
            "sessionID": alice.client.session_id,
            "token": alice.login["token"],
            "recipient_id": w.bob.id,
            "chat_id": w.gid,
            "is_group": True,
            "content": "hi",
            "type": "text",
            "is_typing": True,
            "message_id": w.bob_after,
            "from_message_id": w.bob_after,
            "message_ids": [w.bob_after],
            "sender_id": w.bob.id,
            "contact_id": w.bob.id,
            "contact_username": "bob",
            "user_id": w.bob.id,
            "name": "x",
            "description": "x",
            "member_ids": [],
            "file_id": w.pending_file["file_id"],
            "file_name": "a.png",
            "file_size": 4,
            "file_type": "image/png",
            "since": 0,
            "limit": 10,
            "timestamp": 1,
            "page": 1,
            "page_size": 10,
            "emoji": "x",
            "option_ids": [0],
            "kind": "gateway",
            "app_id": "com.example",
            "pushkey": "k",
            "enabled": False,
            "registration_id": "00000000-0000-0000-0000-000000000000",
            "query": "hi",
            "code": "x",
            "role": "member",
            "password": "correct horse battery",
            "target": "message",
            "category": "spam",
            "thread_id": w.bob_after,
            "follow": True,
        }
        events = sorted(build_routes(ROUTE_GROUPS))
        self.assertIn("verify_session", events)
        for event in events:
            # ``kind`` names a push registration's kind, and a group's (issue 29): each valid for its event.
            kind = "group" if event in ("create_group", "update_group") else "gateway"
            answer = await carol.client.call(event, {**payload, "kind": kind})
            if event == "verify_session":  # the spec's answer to an invalid session
                self.assertEqual(answer, {"valid": False, "message": "Your session has expired or is invalid"})
            else:
                self.assertEqual(answer, {"error": FOREIGN_SESSION, "code": "invalid_argument"}, event)
        # Another user's token with one's own session is merely not valid.
        status = await carol.call("verify_session", token=alice.login["token"])
        self.assertEqual(status, {"valid": False, "message": "Your session has expired or is invalid"})
        carol.client.drain("session_status")
        self.assertEqual(await self.snapshot(), before)
        await self.assert_nobody_heard_anything(w, Counter(carol=len(events) - 1))

    # -- HTTP ------------------------------------------------------------------

    @inline
    async def test_downloads_and_uploads_refuse_others_alike_for_real_and_missing_files(self) -> None:
        w = await self.world()
        before = await self.snapshot()
        not_found = (404, {"error": "Not found", "code": "not_found"})
        # Members of the chat may download; everyone else gets what a missing file gets.
        self.assertEqual(await self.get_file(w.direct_file, w.bob), (200, b"data"))
        self.assertEqual(await self.get_file(w.group_file, w.bob), (200, b"data"))
        for file_id, who in [
            (w.direct_file, w.carol),
            (w.direct_file, w.dave),
            (w.group_file, w.carol),
            (w.group_file, w.dave),
            (w.group_file, w.eve),
            (w.eve_file, w.alice),
            (w.dave_file, w.bob),
            (w.pending_file["file_id"], w.bob),
            (str(uuid.uuid4()), w.alice),
        ]:
            self.assertEqual(await self.get_file(file_id, who), not_found, (file_id, who.name))
        # Someone else's token with one's own session id is no session at all.
        unauthorised = (401, {"error": "Invalid or expired session", "code": "not_authenticated"})
        self.assertEqual(await self.get_file(w.direct_file, w.bob, token=w.alice.login["token"]), unauthorised)
        self.assertEqual(await self.get_file(w.direct_file, None), unauthorised)
        self.assertEqual(await self.get_file(str(uuid.uuid4()), None), unauthorised)

        # Uploads: a token for another upload, or a session token, opens nothing; the
        # answer for a real upload is the answer for a missing one.
        pending = w.pending_file["file_id"]
        bobs = await self.prepare(w.bob, w.alice.id, False)
        w.bob.client.drain("file_upload_ready")
        after_prepare = await self.snapshot()
        refused = (401, {"error": "Invalid upload token", "code": "not_authenticated"})
        for token in (bobs["upload_token"], w.alice.login["token"], w.bob.login["token"]):
            self.assertEqual(await self.put(pending, token), refused)
            self.assertEqual(await self.put(str(uuid.uuid4()), token), refused)
        self.assertEqual(
            await self.put(pending, None), (401, {"error": "Missing upload token", "code": "not_authenticated"})
        )
        self.assertEqual(await self.snapshot(), after_prepare)
        self.assertEqual(before["files"], [r for r in after_prepare["files"] if r[0] != bobs["file_id"]])
        # The rightful tokens still work, each for its own upload only.
        self.assertEqual((await self.put(pending, w.pending_file["upload_token"]))[0], 201)
        self.assertEqual((await self.put(bobs["file_id"], bobs["upload_token"]))[0], 201)
        await self.assert_nobody_heard_anything(w, Counter())

    # -- blocks --------------------------------------------------------------

    @inline
    async def test_blocks_and_reads_across_a_block_are_never_announced(self) -> None:
        w = await self.world()
        alice, carol, eve = w.alice, w.carol, w.eve
        # Anyone may block anyone; only the blocker hears of it.
        self.assertEqual(await carol.call("block_contact", contact_id=alice.id), {"user_id": alice.id})
        self.assertEqual(await carol.client.expect("contact_blocked"), {"user_id": alice.id})
        self.assertEqual(await eve.call("block_contact", contact_id=alice.id), {"user_id": alice.id})
        # The blocked user may still mark what was sent to her read (her own unread
        # count), but the blocker is not told; nor is the blocked user told of the blocker's reads.
        reads = "SELECT COUNT(*) FROM message_reads r JOIN messages m ON m.seq = r.message_seq WHERE m.id = ?"
        for reader, sender, message_id in ((eve, alice, w.to_eve), (alice, eve, w.from_eve)):
            receipt = await reader.call("read_receipt", message_ids=[message_id], sender_id=sender.id)
            self.assertEqual((receipt["reader_id"], receipt["message_ids"]), (reader.id, [message_id]))
            self.assertEqual(await self.scalar(reads, message_id), 1)
        self.assertEqual([c["unread_count"] for c in await eve.call("get_chats")], [0])
        # Nor does either see the other's reads since the block in the history (reads before it stay).
        seen_by_alice = await alice.call("get_chat_history", chat_id=eve.id)
        self.assertEqual(
            [(m["content"], m["is_read"]) for m in seen_by_alice["messages"]],
            [("to eve", False), ("from eve", True), ("read before the block", True)],
        )
        seen_by_eve = await eve.call("get_chat_history", chat_id=alice.id)
        self.assertEqual(
            [(m["content"], m["is_read"]) for m in seen_by_eve["messages"]],
            [("to eve", True), ("from eve", False), ("read before the block", True)],
        )
        for person, answered in ((alice, "chat_history"), (eve, "chat_history"), (eve, "chats")):
            person.client.drain(answered)
        await sleep(0.3)
        for person in w.people:
            received = person.client.drain_all()
            received.pop("contact_blocked", None)
            # Each reader's own devices hear of their own badge (chat_read), of their chat with the other only.
            own = {eve.id: alice.id, alice.id: eve.id}
            for state in received.pop("chat_read", []):
                self.assertEqual(state["chat_id"], own[person.id], person.name)
            self.assertEqual(received, {}, person.name)


for_each_backend(AccessControlTestsMixin, ChatCase, globals())
