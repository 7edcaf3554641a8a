"""The in-process chat tests once more over a real port with python-socketio, where the wire is the point.

`tests.support.inprocess.LocalClient` and `tests.support.client.Client`
answer the same interface, so a mixin written for the in-process node runs
unchanged against the real server: here the direct-message and group flows
run over WebSocket frames on SQLite, proving that what the in-process tests
see is what a stock client receives.  The read state tests (issue 24) run
with two real clients logged in as the same user.
"""

from __future__ import annotations

from tests.events.test_groups import GroupTestsMixin
from tests.events.test_messages import DirectMessageTestsMixin
from tests.events.test_pins import PinTestsMixin
from tests.events.test_polls import PollTestsMixin
from tests.events.test_read_state import ReadStateTestsMixin
from tests.support.chat import ChatCase
from tests.support.deferreds import inline


class DirectMessagesOverTheWireTests(DirectMessageTestsMixin, ChatCase):
    backend = "sqlite"


class GroupsOverTheWireTests(GroupTestsMixin, ChatCase):
    backend = "sqlite"


class ReadStateOverTheWireTests(ReadStateTestsMixin, ChatCase):
    """Two python-socketio clients logged in as one user: each gets ``chat_read`` and ``chat_muted`` once."""

    backend = "sqlite"


class PinsOverTheWireTests(PinTestsMixin, ChatCase):
    """Issue 30: pins and polls with stock python-socketio clients."""

    backend = "sqlite"


class PollsOverTheWireTests(PollTestsMixin, ChatCase):
    backend = "sqlite"


class RolesAndModerationOverTheWireTests(ChatCase):
    """Issue 29's main flow with stock python-socketio clients: a role set, a mute, a ban, each told to all."""

    backend = "sqlite"

    @inline
    async def test_a_moderator_mutes_then_bans_a_member_and_every_client_hears_it(self) -> None:
        alice, bob, carol = [await self.person(n) for n in ("alice", "bob", "carol")]
        for other in (bob, carol):
            await self.befriend(alice, other)
        gid = (await alice.call("create_group", name="Wire", member_ids=[bob.id, carol.id]))["id"]
        made = await alice.call("set_member_role", chat_id=gid, user_id=bob.id, role="moderator")
        for person in (alice, bob, carol):
            self.assertEqual(await person.client.expect("member_role_changed"), made)
        spam = await carol.call("send_message", recipient_id=gid, content="spam", is_group=True)

        muted = await bob.call("mute_member", chat_id=gid, user_id=carol.id, duration=300)
        self.assertEqual(await carol.client.expect("member_muted"), muted)
        refused = await carol.call("send_message", recipient_id=gid, content="more", is_group=True)
        self.assertEqual((refused["error"], refused["code"]), ("You are muted in this group", "forbidden"))

        banned = await bob.call("ban_member", chat_id=gid, user_id=carol.id, reason="spam", delete_messages="all")
        for person in (alice, bob, carol):
            deleted = await person.client.expect("message_deleted")
            self.assertEqual((deleted["message_id"], deleted["deleted_by"]), (spam["message_id"], bob.id))
            self.assertEqual(await person.client.expect("member_banned"), banned)
            self.assertEqual(await person.client.expect("group_member_removed"), {"chat_id": gid, "user_id": carol.id})
        self.assertEqual([b["user_id"] for b in (await bob.call("get_bans", chat_id=gid))["bans"]], [carol.id])
