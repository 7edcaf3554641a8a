"""Records validate themselves once, whichever edge built them."""

from __future__ import annotations

from twisted.trial import unittest

from tests.support.deferreds import inline
from tests.support.node import NodeTestCase
from umoc.domain.commands import account, bots
from umoc.errors import UserError
from umoc.records import Actor
from umoc.records.account import AccountRef, NewAccount, NewInvite, RegistrationMode
from umoc.records.bots import NewBot
from umoc.records.contacts import ContactChange, ContactRequest
from umoc.records.groups import GroupChange, GroupMember, NewGroup
from umoc.records.profiles import UNSET, ProfileChange, SettingsChange
from umoc.records.push import PushRegistration, PushRemoval


class RecordTests(unittest.TestCase):
    def refused(self, message: str, build: object, *args: object, **kwargs: object) -> None:
        with self.assertRaises(UserError) as caught:
            build(*args, **kwargs)  # type: ignore[operator]
        self.assertEqual(caught.exception.message, message)

    def test_contacts(self) -> None:
        self.assertEqual(ContactChange(5).contact_id, 5)
        self.refused("Invalid 'contact_id': expected an integer from 1 to 9223372036854775807", ContactChange, True)
        self.refused("Invalid 'contact_id': expected an integer from 1 to 9223372036854775807", ContactChange, 0)
        self.refused("Invalid 'contact_username': expected 1 to 64 characters", ContactRequest, "")
        self.refused("Invalid 'contact_username': the NUL character is not allowed", ContactRequest, "a\x00")

    def test_groups(self) -> None:
        group = NewGroup("  team  ", None, [3, 2, 3])
        self.assertEqual((group.name, group.member_ids), ("team", (3, 2)))
        self.refused("Invalid 'name': expected a non-blank name", NewGroup, "   ")
        self.refused("Invalid 'member_ids': expected a list of user ids", NewGroup, "team", None, [1, True])
        self.refused("Nothing to update: give 'name', 'description', 'extra' or a setting", GroupChange, 1)
        self.assertEqual(GroupChange(1, description="").description, "")
        self.refused("Invalid 'user_id': expected an integer from 1 to 9223372036854775807", GroupMember, 1, -1)

    def test_profiles(self) -> None:
        change = ProfileChange(display_name="  Alice  ", status_text="")
        self.assertEqual(change.fields(), {"display_name": "Alice", "status_text": None})
        self.assertIs(change.avatar_file_id, UNSET)
        self.refused(
            "Nothing to update: give 'display_name', 'status_text', 'avatar_file_id' or 'extra'", ProfileChange
        )
        self.refused(
            "Invalid 'display_name': no control characters or line breaks allowed", ProfileChange, "two\nlines"
        )
        self.refused("Invalid 'avatar_file_id': expected a UUID string", ProfileChange, avatar_file_id="nope")
        self.assertEqual(ProfileChange(avatar_file_id="").fields(), {"avatar_file_id": None})
        self.refused("Invalid 'send_delivery_receipts': expected true or false", SettingsChange, 1)

    def test_push(self) -> None:
        self.refused("Missing 'subscription'", PushRegistration.parse, {"kind": "webpush"})
        self.refused("Missing 'app_id' or 'pushkey'", PushRegistration.parse, {"kind": "gateway", "app_id": "x"})
        gateway = PushRegistration.parse({"kind": "gateway", "app_id": "a", "pushkey": "k", "gateway": None})
        self.assertEqual(gateway.gateway, "default")
        self.refused(
            "Invalid 'subscription.endpoint': expected an https:// URL",
            PushRegistration.parse,
            {"kind": "webpush", "subscription": {"endpoint": "ftp://x", "keys": {"p256dh": "a", "auth": "b"}}},
        )
        self.refused("Invalid 'registration_id': expected a UUID string", PushRemoval, "x")

    def test_account(self) -> None:
        self.refused("'is_admin' must be true or false", NewAccount, "bob", "pw", 1)
        self.refused("uses must be 1-1000", NewInvite, 0)
        self.refused("mode must be one of open, closed, invite", RegistrationMode, "sometimes")
        self.assertIsNone(RegistrationMode(None).mode)
        self.refused("'username' must be a string of 1-64 characters", AccountRef, "")
        self.refused("'username' must be a string of 1-64 characters", NewBot, "x" * 65)


class AdminCommandTests(NodeTestCase):
    """An administrator's commands refuse anyone else, whichever edge calls them."""

    @inline
    async def test_a_user_who_is_not_an_admin_is_refused(self) -> None:
        user = await self.user("mallory")
        mallory = Actor.user(user.id, "mallory", "server_api")
        for attempt in (
            account.deactivate(self.services, mallory, AccountRef(user.id)),
            account.create_invite(self.services, mallory, NewInvite(1)),
            bots.create(self.services, mallory, NewBot("robot")),
        ):
            with self.assertRaises(UserError) as caught:
                await attempt
            self.assertEqual(caught.exception.message, "Administrators only")
        with self.assertRaises(UserError) as caught:
            await account.register(self.services, mallory, NewAccount("eve", "correct horse", is_admin=True))
        self.assertEqual(caught.exception.message, "Only an administrator may create an administrator")

    @inline
    async def test_an_admin_cannot_deactivate_themselves(self) -> None:
        user = await self.user("root")
        root = Actor.operator("root", "admin_api", user.id)
        with self.assertRaises(UserError) as caught:
            await account.deactivate(self.services, root, AccountRef("root"))
        self.assertEqual(caught.exception.message, "You cannot deactivate your own account")
