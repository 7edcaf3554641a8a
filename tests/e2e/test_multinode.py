"""Two nodes on one PostgreSQL database and one Redis: deliveries, session ends and presence cross nodes."""

from __future__ import annotations

from typing import Any

import treq

from tests.support.cluster import ClusterTestCase
from tests.support.deferreds import blocking, eventually, inline, sleep
from tests.support.server import Server


class MultiNodeTests(ClusterTestCase):
    @inline
    async def setUp(self) -> None:
        await super().setUp()
        self.nodes: list[Server] = [
            await self.start_node(self.node_config(engineio={"recovery_window": 60})) for _ in range(2)
        ]
        self.a, self.b = self.nodes

    @inline
    async def test_event_emitted_on_one_node_reaches_a_socket_on_the_other(self) -> None:
        alice = await self.a.user("alice")
        client = await self.connect_to(self.a, alice)
        self.b.services.hub.emit_to_users([alice["user_id"]], "new_message", {"content": "hello from B", "n": 1})
        self.assertEqual(await client.expect("new_message"), {"content": "hello from B", "n": 1})
        self.b.services.hub.emit_to_users([alice["user_id"]], "blob", {"data": b"\x00\x01binary"})
        self.assertEqual(await client.expect("blob"), {"data": b"\x00\x01binary"})

    @inline
    async def test_event_from_the_other_node_is_kept_for_recovery_with_its_offset(self) -> None:
        alice = await self.a.user("alice")
        client = await self.connect_to(self.a, alice)
        self.b.services.hub.emit_to_users([alice["user_id"]], "notice", {"n": 1})
        self.assertEqual(await client.expect("notice"), {"n": 1})
        offsets = list(self.a.services.hub.recovery._seq_by_offset)
        self.assertEqual(len(offsets), 1)
        self.assertTrue(offsets[0].startswith(self.b.services.hub.recovery._node))

    @inline
    async def test_node_does_not_deliver_its_own_publication_twice(self) -> None:
        alice = await self.a.user("alice")
        client = await self.connect_to(self.a, alice)
        self.a.services.hub.emit_to_users([alice["user_id"]], "notice", {"n": 1})
        self.assertEqual(await client.expect("notice"), {"n": 1})
        await client.expect_none("notice", within=0.3)

    @inline
    async def test_ending_a_session_on_one_node_closes_its_socket_on_the_other(self) -> None:
        alice = await self.a.user("alice")
        client = await self.connect_to(self.a, alice)
        self.b.services.sessions.end(alice["sessionID"], "Your session was ended by a newer login")
        status = await client.expect("session_status")
        self.assertEqual(status, {"valid": False, "message": "Your session was ended by a newer login"})
        await eventually(lambda: not self.a.services.hub.is_local(alice["user_id"]))
        self.assertFalse(self.a.services.hub.is_local(alice["user_id"]))

    @inline
    async def test_logout_through_one_node_closes_the_socket_held_by_the_other(self) -> None:
        alice = await self.a.user("alice")
        client = await self.connect_to(self.a, alice)
        code, _ = await self.b.post("/api/logout", {"sessionID": alice["sessionID"], "token": alice["token"]})
        self.assertEqual(code, 200)
        self.assertEqual((await client.expect("session_status"))["valid"], False)

    @inline
    async def test_presence_sees_a_user_online_on_the_other_node_and_offline_after(self) -> None:
        alice = await self.a.user("alice")
        bob = await self.b.user("bob")
        uid = alice["user_id"]
        self.assertEqual(await self.b.services.presence.online_among([uid, bob["user_id"]]), set())
        client = await self.connect_to(self.a, alice)
        await self._until(lambda: self.b.services.presence.online_among([uid]), {uid})
        # A second socket on node B: the user does not "come online" again.
        second = await self.connect_to(self.b, await self.b.login("alice"))
        self.assertFalse(await self.b.services.presence.socket_opened(uid))
        await blocking(client.close)
        await sleep(0.1)
        self.assertEqual(await self.a.services.presence.online_among([uid]), {uid}, "still online through B")
        await blocking(second.close)
        await self._until(lambda: self.a.services.presence.online_among([uid]), set())

    @inline
    async def test_crashed_node_users_go_offline_when_its_heartbeat_lapses(self) -> None:
        alice = await self.a.user("alice")
        await self.connect_to(self.a, alice)
        uid = alice["user_id"]
        await self._until(lambda: self.b.services.presence.online_among([uid]), {uid})
        # Simulate A's crash: its hash stops being refreshed and expires.
        key = self.a.services.presence._key

        async def crashed() -> set[int]:
            await self.a.service.node.cluster.redis.call("execute_command", "PEXPIRE", key, 50)
            await sleep(0.1)
            return await self.b.services.presence.online_among([uid])

        # A's own periodic heartbeat (every presence_ttl / 3) may refresh the hash in the meantime: expire it again.
        self.assertEqual(await eventually(crashed, set()), set())
        # A is alive after all: its next heartbeat puts alice back.
        await self.a.services.presence.heartbeat()
        self.assertEqual(await self.b.services.presence.online_among([uid]), {uid})

    @inline
    async def test_every_presence_key_expires_by_itself(self) -> None:
        alice = await self.a.user("alice")
        await self.connect_to(self.a, alice)
        await self._until(lambda: self.b.services.presence.online_among([alice["user_id"]]), {alice["user_id"]})
        redis, prefix = self.a.service.node.cluster.redis, self.a.services.config.redis.prefix
        keys = await redis.call("keys", prefix + "presence:*")
        self.assertEqual(len(keys), 4, keys)  # A's hash and roster, the sets of nodes and of rosters
        for key in keys:
            self.assertGreater(int(await redis.call("execute_command", "PTTL", key)), 0, key)

    @inline
    async def test_readyz_reports_redis(self) -> None:
        response = await treq.get(self.a.url + "/readyz", persistent=False)
        body = await response.json()
        self.assertEqual(response.code, 200)
        self.assertEqual(body, {"database": True, "redis": True, "status": "ok"})

    @inline
    async def test_rate_limits_are_shared_between_nodes(self) -> None:
        limiter_a, limiter_b = self.a.services.ratelimiter, self.b.services.ratelimiter
        answers = []
        for i in range(12):
            allowed, _ = await (limiter_a if i % 2 else limiter_b).can_do_action("login", "name:shared")
            answers.append(allowed)
        self.assertEqual(answers, [True] * 10 + [False] * 2)

    async def _until(self, probe: Any, expected: Any) -> None:
        self.assertEqual(await eventually(probe, expected), expected)
