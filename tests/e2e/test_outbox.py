"""Nothing lost after the commit: ``kill -9`` of a real ``twistd umoc`` right after the ``send_message`` ack.

The webhook receiver and the Web Push endpoint are down when the message is
sent (their ports closed: connections refused); the server is killed with
SIGKILL as soon as the sender has its ack, then started again on the same
files with the receivers up.  The webhook and the push arrive all the same:
both are delivered from the change feed, whose consumers store their
positions only after their deliveries are done.  A receiver that got a
webhook whose answer the killed server never read gets it again, with the
same ``id``.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from typing import Any

import socketio
import treq
from twisted.internet import endpoints, reactor
from twisted.web import resource, server

from tests.e2e.test_twistd import DaemonCase
from tests.support.deferreds import blocking, eventually, inline, sleep
from tests.support.push import PushService, WebhookReceiver, until

SECRET = "s3cret-for-the-outbox-tests"


class HoldingReceiver(resource.Resource):
    """Records each webhook body when it arrives; answers none while ``holding`` (a receiver that died mid-way)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.holding = True
        self.received: list[dict[str, Any]] = []

    def render_POST(self, request: Any) -> Any:
        self.received.append(json.loads(request.content.read()))
        if self.holding:
            return server.NOT_DONE_YET
        return b"ok"


class OutboxKillTests(DaemonCase):
    async def listen(self, root: Any, port: int = 0) -> int:
        """Serve ``root`` on 127.0.0.1 (``port``, or a free one); closed at cleanup."""
        site = server.Site(root)
        site.noisy = False
        listening = await endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site)
        self.addCleanup(listening.stopListening)
        root.url = f"http://127.0.0.1:{listening.getHost().port}"
        self.listening = listening
        return int(listening.getHost().port)

    async def closed_port(self, root: Any) -> int:
        """A port ``root`` will be served on later: down (connections refused) until then."""
        port = await self.listen(root)
        await self.listening.stopListening()
        return port

    async def start(self, data_dir: str, hook_url: str, events: list[str]) -> str:
        config = os.path.join(data_dir, "umoc.yaml")
        settings = {
            "ratelimits": {"enabled": False},
            # As in tests.support.server.test_config: a loaded machine's slow commit, or its reactor running late,
            # is no reason to refuse a write.
            "server": {"overload_wait": "20s", "overload_lag": "0s"},
            "webhooks": [{"url": hook_url, "secret": SECRET, "events": events}],
            "webhook_delivery": {"backoff": "0.2s", "max_backoff": "0.5s", "max_attempts": 100, "timeout": "2s"},
            "push": {
                "allow_insecure_endpoints": True,
                "backoff": "0.2s",
                "max_backoff": "0.5s",
                "max_attempts": 100,
                "timeout": "2s",
            },
            "outbound": {"allowed_hosts": ["127.0.0.0/8"]},
        }
        with open(config, "w") as f:
            json.dump(settings, f)  # JSON is YAML
        daemon = self.spawn("--config", config, "--listen", "tcp:0:interface=127.0.0.1", "--data-dir", data_dir)
        self.daemon = daemon
        return f"http://127.0.0.1:{await daemon.listening}"

    async def login(self, url: str, name: str) -> dict[str, Any]:
        body = {"username": name, "password": "long password"}
        response = await treq.post(url + "/api/register", json=body, persistent=False)
        await response.content()
        response = await treq.post(url + "/api/login", json=body, persistent=False)
        return await response.json()

    async def friends(self, url: str) -> tuple[socketio.Client, dict[str, Any], dict[str, Any]]:
        """Alice connected, Bob a friend of hers; Bob's socket is returned closed (he is offline)."""
        alice, bob = await self.login(url, "alice"), await self.login(url, "bob")
        a = await blocking(self.client, url, alice)
        b = await blocking(self.client, url, bob)
        await blocking(a.call, "add_contact", {"sessionID": alice["sessionID"], "contact_username": "bob"}, timeout=10)
        answer = await blocking(
            b.call, "accept_contact", {"sessionID": bob["sessionID"], "contact_id": alice["user_id"]}, timeout=10
        )
        self.assertEqual(answer["status"], "FRIEND", answer)
        self.bob_socket = b
        return a, alice, bob

    async def offline(self, a: socketio.Client, alice: dict[str, Any], bob: dict[str, Any]) -> None:
        """Wait until the server sees Bob gone: his contact entry, as Alice lists it, says offline.

        The push is decided by the same presence (`Presence.online_among`); a
        message sent before the server handled his disconnect is not pushed.
        """

        async def gone() -> bool:
            answer = await blocking(a.call, "get_contacts", {"sessionID": alice["sessionID"]}, timeout=10)
            return [c["is_online"] for c in answer["contacts"] if c["user_id"] == bob["user_id"]] == [False]

        self.assertTrue(await eventually(gone), "the server saw Bob go")

    async def kill_right_after_ack(self, a: socketio.Client, alice: dict[str, Any], bob: dict[str, Any]) -> str:
        payload = {"sessionID": alice["sessionID"], "recipient_id": bob["user_id"], "content": "after the commit"}
        sent = await blocking(a.call, "send_message", payload, timeout=10)
        self.process.signalProcess(signal.SIGKILL)
        self.assertIn("message_id", sent, sent)
        await self.daemon.ended
        return str(sent["message_id"])

    @inline
    async def test_a_webhook_to_a_receiver_that_was_down_arrives_after_kill_9_and_a_restart(self) -> None:
        hooks = WebhookReceiver(SECRET)
        port = await self.closed_port(hooks)
        data_dir = tempfile.mkdtemp(prefix="umoc-outbox-")
        hook_url = f"http://127.0.0.1:{port}/hook"
        url = await self.start(data_dir, hook_url, ["message.created"])
        a, alice, bob = await self.friends(url)
        message_id = await self.kill_right_after_ack(a, alice, bob)
        self.assertEqual(hooks.received, [], "the receiver was down")

        await self.listen(hooks, port)
        await self.start(data_dir, hook_url, ["message.created"])  # the same files
        await until(lambda: hooks.received, timeout=20, what="the webhook, after the restart")
        await sleep(0.5)
        created = [h for h in hooks.received if h["event"] == "message.created"]
        self.assertEqual([h["data"]["message_id"] for h in created], [message_id])
        self.assertEqual(created[0]["data"]["content"], "after the commit")
        self.assertEqual(hooks.problems, [])

    @inline
    async def test_a_webhook_sent_but_not_answered_before_kill_9_comes_again_with_the_same_id(self) -> None:
        hooks = HoldingReceiver()
        port = await self.listen(hooks)
        data_dir = tempfile.mkdtemp(prefix="umoc-outbox-")
        hook_url = f"http://127.0.0.1:{port}/hook"
        url = await self.start(data_dir, hook_url, ["message.created", "user.registered"])
        a, alice, bob = await self.friends(url)
        payload = {"sessionID": alice["sessionID"], "recipient_id": bob["user_id"], "content": "twice"}
        sent = await blocking(a.call, "send_message", payload, timeout=10)
        await until(
            lambda: any(h["event"] == "message.created" for h in hooks.received), what="the first, never answered"
        )
        self.process.signalProcess(signal.SIGKILL)
        await self.daemon.ended

        hooks.holding = False
        await self.start(data_dir, hook_url, ["message.created", "user.registered"])
        created = lambda: [h for h in hooks.received if h["event"] == "message.created"]  # noqa: E731
        await until(lambda: len(created()) >= 2, timeout=20, what="the same webhook again")
        first, again = created()[:2]
        self.assertEqual(first["data"]["message_id"], sent["message_id"])
        self.assertEqual((again["id"], again["data"]), (first["id"], first["data"]), "the same id: one to drop")
        # Deliveries run side by side (the outbox pipelines its batches): the registrations may come last.
        registered = lambda: {h["data"]["username"] for h in hooks.received if h["event"] == "user.registered"}  # noqa: E731
        await until(lambda: registered() == {"alice", "bob"}, what="both registrations")
        self.assertEqual(registered(), {"alice", "bob"})

    @inline
    async def test_a_web_push_to_an_endpoint_that_was_down_arrives_after_kill_9_and_a_restart(self) -> None:
        pushes = PushService()
        port = await self.closed_port(pushes)
        hooks = WebhookReceiver(SECRET)
        data_dir = tempfile.mkdtemp(prefix="umoc-outbox-")
        hook_url = f"http://127.0.0.1:{await self.closed_port(hooks)}/hook"
        url = await self.start(data_dir, hook_url, ["message.created"])
        a, alice, bob = await self.friends(url)
        subscription = pushes.subscribe("bob")
        answer = await blocking(
            self.bob_socket.call,
            "register_push",
            {"sessionID": bob["sessionID"], "kind": "webpush", "subscription": subscription.as_json()},
            timeout=10,
        )
        self.assertEqual(answer.get("kind"), "webpush", answer)
        await blocking(self.bob_socket.disconnect)
        await self.offline(a, alice, bob)
        message_id = await self.kill_right_after_ack(a, alice, bob)

        await self.listen(pushes, port)
        await self.start(data_dir, hook_url, ["message.created"])
        # Bob's contact request may be pushed too (registered before its push was decided): only messages count.
        message_pushes = lambda: [p["message_id"] for p in pushes.for_("bob") if "message_id" in p]  # noqa: E731
        await until(message_pushes, timeout=20, what="the push, after the restart")
        await sleep(0.5)
        self.assertEqual(message_pushes(), [message_id])
        self.assertEqual(pushes.problems, [])
