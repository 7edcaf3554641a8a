"""Reports over the wire: python-socketio clients report, moderators hear, admins resolve over HTTP; webhooks.

One real server on either database, a real webhook receiver: the main
flow of ``report`` end to end, with its refusals, its evidence surviving the
message's deletion, and both webhooks.
"""

from __future__ import annotations

import json
from typing import Any

import treq

from tests.support.admin import PASSWORD, AdminCase
from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.push import WebhookReceiver, serve, until

SECRET = "s3cret-for-the-report-tests"


class ReportsMixin:
    @inline
    async def setUp(self) -> None:
        self.hooks = WebhookReceiver(SECRET)
        await serve(self, self.hooks)
        self.shared_config = {
            # A loaded machine's late answer is no reason to deliver again: the test counts one delivery.
            "webhook_delivery": {"backoff": "0.05s", "max_attempts": 3, "timeout": "20s"},
            "webhooks": [
                {"url": self.hooks.url + "/hook", "secret": SECRET, "events": ["report.created", "report.resolved"]}
            ],
        }
        await super().setUp()
        await self.cli_ok("create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD)
        root = await self.server.login("root")
        self.admin_headers = {"X-Session-ID": root["sessionID"], "X-Session-Token": root["token"]}

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = self.server.url + "/api/admin/" + path
        if method == "GET":
            response = await treq.get(url, headers=self.admin_headers, persistent=False)
        else:
            response = await treq.post(url, json=body, headers=self.admin_headers, persistent=False)
        return response.code, json.loads(await response.text())

    async def webhook(self, event: str, report_id: str) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [
                h["data"] for h in self.hooks.received if h["event"] == event and h["data"]["report_id"] == report_id
            ]

        await until(lambda: len(found()) == 1, what=f"the {event} webhook of report {report_id}")
        return found()[0]

    @inline
    async def test_a_reported_message_reaches_moderators_admins_and_webhooks_and_is_resolved(self) -> None:
        alice, bob, carol = [await self.person(n) for n in ("alice", "bob", "carol")]
        await self.befriend(alice, bob)
        await self.befriend(alice, carol)
        group = await alice.call("create_group", name="Team", member_ids=[bob.id, carol.id])
        gid = group["id"]
        sent = await bob.call("send_message", recipient_id=gid, content="buy cheap pills", is_group=True)
        # Refusals change nothing.
        refused = await carol.call("report", target="message", category="spam")
        self.assertEqual((refused["error"], refused["code"]), ("Missing 'message_id'", "invalid_argument"))
        self.assertEqual(
            (await carol.call("report", target="message", category="rude", message_id=sent["message_id"]))["code"],
            "invalid_argument",
        )
        acked = await carol.call(
            "report", target="message", category="spam", message_id=sent["message_id"], reason="an ad"
        )
        self.assertEqual(set(acked), {"report_id"})
        report_id = acked["report_id"]
        # The group's moderators (its admin, alice) hear of it; the others do not.
        told = await alice.client.expect("report_created")
        self.assertEqual(told, {"report_id": report_id, "chat_id": gid, "category": "spam"})
        await bob.client.expect_none("report_created")
        created = await self.webhook("report.created", report_id)
        self.assertEqual(
            created,
            {
                "report_id": report_id,
                "reporter_id": carol.id,
                "target": "message",
                "category": "spam",
                "message_id": sent["message_id"],
                "user_id": bob.id,
                "chat_id": gid,
                "is_group": True,
            },
        )
        # The sender deletes the message: the evidence stays in the report.
        await bob.call("delete_message", message_id=sent["message_id"])
        code, listed = await self.admin("GET", "reports")
        self.assertEqual(code, 200)
        (shown,) = listed["reports"]
        self.assertEqual((shown["report_id"], shown["status"], shown["reason"]), (report_id, "open", "an ad"))
        self.assertEqual((shown["evidence"]["content"], shown["evidence"]["sender_id"]), ("buy cheap pills", bob.id))
        # Resolved by banning the sender from the reported group (root is no member of it); once only.
        code, resolved = await self.admin(
            "POST", f"reports/{report_id}/resolve", {"action": "ban_member", "note": "ads"}
        )
        self.assertEqual(code, 200, resolved)
        self.assertEqual((resolved["report"]["status"], resolved["report"]["action"]), ("resolved", "ban_member"))
        banned = await bob.client.expect("member_banned")
        self.assertEqual((banned["chat_id"], banned["user_id"]), (gid, bob.id))
        self.assertEqual(await alice.client.expect("group_member_removed"), {"chat_id": gid, "user_id": bob.id})
        code, again = await self.admin("POST", f"reports/{report_id}/resolve", {"action": "dismiss"})
        self.assertEqual((code, again["code"]), (409, "conflict"))
        self.assertEqual((await self.admin("POST", "reports/999999/resolve", {"action": "dismiss"}))[0], 404)
        self.assertEqual((await self.admin("POST", f"reports/{report_id}/resolve", {"action": "nuke"}))[0], 400)
        # A ban, not a deactivation: bob's account is active, he is out of the group and cannot be added back.
        bob_now = [u for u in (await self.admin("GET", "users?search=bob"))[1]["users"] if u["username"] == "bob"]
        self.assertTrue(bob_now[0]["active"])
        bans = await alice.call("get_bans", chat_id=gid)
        self.assertEqual([b["user_id"] for b in bans["bans"]], [bob.id])
        readd = await alice.call("add_group_member", chat_id=gid, user_id=bob.id)
        self.assertIn("error", readd)
        self.assertEqual((await self.webhook("report.resolved", report_id))["action"], "ban_member")
        self.assertEqual((await self.admin("GET", "reports"))[1]["reports"], [])
        self.assertEqual(len((await self.admin("GET", "reports?status=resolved"))[1]["reports"]), 1)
        # The resolution and its ban are in the audit log, by root from its address.
        code, audit = await self.admin("GET", "audit")
        actions = [(e["action"], e["actor"]["name"], e["actor"]["via"]) for e in audit["entries"]]
        self.assertEqual(
            actions[:2], [("report.resolve", "root", "admin_api"), ("group.ban_member", "root", "admin_api")]
        )
        self.assertEqual(audit["entries"][0]["actor"]["address"], "127.0.0.1")

    @inline
    async def test_user_and_chat_reports_need_something_the_reporter_can_see(self) -> None:
        alice, dave = await self.person("alice"), await self.person("dave")
        user_report = await alice.call("report", target="user", category="harassment", user_id=dave.id)
        self.assertIn("report_id", user_report)
        self.assertEqual(
            (await alice.call("report", target="user", category="other", user_id=999999))["code"], "not_found"
        )
        refused = await alice.call("report", target="chat", category="other", chat_id=424242, is_group=True)
        self.assertEqual(refused["code"], "not_found")
        code, listed = await self.admin("GET", "reports?status=all")
        self.assertEqual(
            [(r["target"], r["user_id"], r["evidence"]) for r in listed["reports"]], [("user", dave.id, None)]
        )
        code, refused_action = await self.admin(
            "POST", f"reports/{user_report['report_id']}/resolve", {"action": "delete_message"}
        )
        self.assertEqual((code, refused_action["code"]), (400, "invalid_argument"))
        # A user report names no group to ban from; deactivating is its own action.
        path = f"reports/{user_report['report_id']}/resolve"
        code, refused_ban = await self.admin("POST", path, {"action": "ban_member"})
        self.assertEqual((code, refused_ban["code"]), (400, "invalid_argument"))
        code, resolved = await self.admin("POST", path, {"action": "deactivate_user"})
        self.assertEqual(code, 200, resolved)
        dave_now = [u for u in (await self.admin("GET", "users?search=dave"))[1]["users"] if u["username"] == "dave"]
        self.assertFalse(dave_now[0]["active"])


for_each_backend(ReportsMixin, AdminCase, globals())
