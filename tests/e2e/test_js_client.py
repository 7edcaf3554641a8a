"""The official JavaScript socket.io-client 4.x, under Node, against a real UMOC server.

Needs ``node`` and ``npm install`` (package.json at the repo root lists
socket.io-client; .ci/run installs it).  The script is tests/js/two_clients.mjs.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from twisted.internet import utils

from tests.support.databases import for_each_backend
from tests.support.deferreds import inline
from tests.support.server import ServerTestCase

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "two_clients.mjs"
NEW_MESSAGE_KEYS = {
    "message_id",
    "sender_id",
    "sender_username",
    "recipient_id",
    "content",
    "type",
    "timestamp",
    "is_group",
    "display_name",
    "avatar_url",
    "reply_to",
    "mentions",
    "edited_at",
    "reactions",
}
NODE = shutil.which("node")
MISSING = (
    "node is not installed"
    if NODE is None
    else "node_modules/socket.io-client is missing: run npm install"
    if not (ROOT / "node_modules" / "socket.io-client").is_dir()
    else None
)


class JsClientTestsMixin:
    #: Recovery is off by default (offsets are an extra event argument); these tests turn it on.
    config_overrides = {"engineio": {"recovery_window": 120}}

    @inline
    async def test_two_js_clients_poll_upgrade_befriend_exchange_edit_react_reply_recover_and_disconnect(
        self,
    ) -> None:
        out, err, code = await utils.getProcessOutputAndValue(
            NODE, [str(SCRIPT), self.server.url, "alice", "bob"], env=dict(os.environ), path=str(ROOT)
        )
        self.assertEqual(code, 0, err.decode(errors="replace"))
        result = json.loads(out.decode().strip().splitlines()[-1])
        self.assertEqual([h["username"] for h in result["hello"]], ["alice", "bob"])
        self.assertEqual(result["transports"], ["websocket", "websocket"])
        self.assertEqual(result["pong"]["timestamp"], result["sentTimestamp"])
        self.assertEqual(result["pongEvent"], result["pong"])
        self.assertEqual(result["status"]["valid"], True)
        self.assertEqual(result["badStatus"]["valid"], False)
        alice, bob = result["hello"]
        self.assertEqual(result["contactAdded"], {"user_id": bob["user_id"], "username": "bob", "status": "NEW"})
        self.assertEqual(result["contactRequest"], {"user_id": alice["user_id"], "username": "alice"})
        self.assertEqual(
            result["contactAccepted"], {"user_id": alice["user_id"], "username": "alice", "status": "FRIEND"}
        )
        self.assertEqual(
            result["contactAcceptedForA"], {"user_id": bob["user_id"], "username": "bob", "status": "FRIEND"}
        )
        for sent, (sender, recipient, content) in zip(
            result["messages"], [(alice, bob, "Hello there!"), (bob, alice, "Hi, alice")], strict=True
        ):
            message = sent["ack"]
            self.assertEqual(set(message), NEW_MESSAGE_KEYS)
            self.assertEqual(
                {k: v for k, v in message.items() if k not in ("message_id", "timestamp")},
                {
                    "sender_id": sender["user_id"],
                    "sender_username": sender["username"],
                    "recipient_id": recipient["user_id"],
                    "content": content,
                    "type": "text",
                    "is_group": False,
                    "display_name": None,
                    "avatar_url": None,
                    "reply_to": None,
                    "mentions": [],
                    "edited_at": None,
                    "reactions": [],
                },
            )
            uuid.UUID(message["message_id"])
            self.assertRegex(message["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            self.assertEqual((sent["received"], sent["echoed"]), (message, message))
            self.assertTrue(sent["offsetIsString"])
        # Messaging v2: each side sees the other's edit, reactions and reply.
        first = result["messages"][0]["ack"]
        edited = result["edited"]
        self.assertEqual(
            (edited["ack"]["message_id"], edited["ack"]["chat_id"], edited["ack"]["content"]),
            (first["message_id"], bob["user_id"], "Hello there! (edited)"),
        )
        self.assertEqual(edited["echoed"], edited["ack"])
        self.assertEqual(edited["seen"], {**edited["ack"], "chat_id": alice["user_id"]})
        reacted = result["reacted"]
        self.assertEqual(reacted["ack"]["reactions"], [{"emoji": "👍", "count": 1, "user_ids": [bob["user_id"]]}])
        self.assertEqual(
            (reacted["seen"], reacted["echoed"]), ({**reacted["ack"], "chat_id": bob["user_id"]}, reacted["ack"])
        )
        replied = result["replied"]
        self.assertEqual(
            replied["ack"]["reply_to"],
            {
                "message_id": first["message_id"],
                "sender_id": alice["user_id"],
                "sender_username": "alice",
                "type": "text",
                "content": "Hello there! (edited)",
            },
        )
        self.assertEqual(replied["ack"]["mentions"], [alice["user_id"]])
        self.assertEqual(replied["seen"], replied["ack"])
        to_reply = result["reactedToReply"]
        self.assertEqual(to_reply["seen"]["reactions"], [{"emoji": "🎉", "count": 1, "user_ids": [alice["user_id"]]}])
        history = {m["message_id"]: m for m in result["historyForB"]["messages"]}
        self.assertEqual(
            (history[first["message_id"]]["content"], history[first["message_id"]]["reactions"]),
            ("Hello there! (edited)", reacted["ack"]["reactions"]),
        )
        self.assertIsNotNone(history[first["message_id"]]["edited_at"])
        reply = history[replied["ack"]["message_id"]]
        self.assertEqual(
            (reply["reply_to"], reply["mentions"], reply["reactions"]),
            (replied["ack"]["reply_to"], [alice["user_id"]], to_reply["ack"]["reactions"]),
        )
        self.assertTrue(result["recovered"])
        self.assertEqual(result["afterRecovery"]["timestamp"], 1)
        self.assertEqual(result["disconnectReasons"], ["io client disconnect", "io client disconnect"])


if MISSING:
    JsClientTestsMixin.skip = MISSING  # type: ignore[attr-defined]

for_each_backend(JsClientTestsMixin, ServerTestCase, globals())
