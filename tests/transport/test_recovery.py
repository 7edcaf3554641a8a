"""Connection state recovery: pid/offset reconnects get exactly what the socket missed."""

from __future__ import annotations

import json
import socket as socket_module
from typing import Any

from twisted.internet import task
from twisted.trial import unittest

from tests.support.databases import for_each_backend
from tests.support.deferreds import blocking, inline, sleep
from tests.support.fakes import FakeSocket
from tests.support.rawclient import RawWebSocket
from tests.support.server import ServerTestCase, credentials
from umoc.protocol.socketio import encode_event
from umoc.transport.engine import Outgoing
from umoc.transport.recovery import RecoveryStore
from umoc.transport.socketio import Identity

WINDOW = 120.0


def identity(user_id: int = 1, session_id: str = "s1") -> Identity:
    return Identity(user_id, "alice", session_id, 1e12)


class RecoveryStoreTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.store = RecoveryStore(self.clock, WINDOW)

    def broadcast(self, user_ids: list[int], n: int) -> tuple[str, Outgoing]:
        offset = self.store.next_offset()
        message = Outgoing.from_socketio(encode_event("new_message", {"n": n}, offset))
        self.store.record(offset, user_ids, message)
        return offset, message

    def connected(self, user_id: int = 1, session_id: str = "s1") -> FakeSocket:
        sock = FakeSocket(user_id, session_id, pid=self.store.new_pid())
        self.store.attach(sock)  # type: ignore[arg-type]
        return sock

    def test_missed_broadcasts_after_the_offset_are_replayed_in_order(self) -> None:
        sock = self.connected()
        seen, _ = self.broadcast([1], 0)
        self.store.detach(sock, "transport close")  # type: ignore[arg-type]
        missed = [self.broadcast([1, 2], n)[1] for n in range(1, 4)]
        self.broadcast([2], 99)  # someone else's
        restored = self.store.restore({"pid": sock.pid, "offset": seen}, identity(), "/")
        assert restored is not None
        self.assertEqual((restored.sid, restored.pid), (sock.sid, sock.pid))
        self.assertEqual(restored.missed, missed)

    def test_without_an_offset_everything_since_connect_is_replayed(self) -> None:
        self.broadcast([1], 0)
        sock = self.connected()
        first = self.broadcast([1], 1)[1]
        self.store.detach(sock, "ping timeout")  # type: ignore[arg-type]
        restored = self.store.restore({"pid": sock.pid}, identity(), "/")
        assert restored is not None
        self.assertEqual(restored.missed, [first])

    def test_a_pid_recovers_once(self) -> None:
        sock = self.connected()
        self.store.detach(sock, "transport close")  # type: ignore[arg-type]
        self.assertIsNotNone(self.store.restore({"pid": sock.pid}, identity(), "/"))
        self.assertIsNone(self.store.restore({"pid": sock.pid}, identity(), "/"))

    def test_another_login_session_cannot_use_the_pid(self) -> None:
        sock = self.connected()
        self.store.detach(sock, "transport close")  # type: ignore[arg-type]
        self.assertIsNone(self.store.restore({"pid": sock.pid}, identity(1, "other"), "/"))
        self.assertIsNone(self.store.restore({"pid": sock.pid}, identity(), "/chat"))

    def test_chosen_disconnects_are_not_recoverable(self) -> None:
        for reason in ("client namespace disconnect", "session ended", "client close"):
            sock = self.connected()
            self.store.detach(sock, reason)  # type: ignore[arg-type]
            self.assertIsNone(self.store.restore({"pid": sock.pid}, identity(), "/"), reason)

    def test_nothing_is_recovered_after_the_window(self) -> None:
        sock = self.connected()
        seen, _ = self.broadcast([1], 0)
        self.store.detach(sock, "transport close")  # type: ignore[arg-type]
        self.clock.advance(WINDOW + 1)
        self.assertIsNone(self.store.restore({"pid": sock.pid, "offset": seen}, identity(), "/"))

    def test_unknown_or_pruned_offsets_are_not_recovered(self) -> None:
        store = RecoveryStore(self.clock, WINDOW, max_entries=2)
        sock = FakeSocket(1, "s1", pid=store.new_pid())
        store.attach(sock)  # type: ignore[arg-type]
        offsets = []
        for n in range(4):
            offset = store.next_offset()
            store.record(offset, [1], Outgoing(["4" + str(n)]))
            offsets.append(offset)
        store.detach(sock, "transport close")  # type: ignore[arg-type]
        self.assertIsNone(store.restore({"pid": sock.pid, "offset": "nope"}, identity(), "/"))
        self.assertIsNone(store.restore({"pid": sock.pid, "offset": offsets[0]}, identity(), "/"))
        restored = store.restore({"pid": sock.pid, "offset": offsets[2]}, identity(), "/")
        assert restored is not None
        self.assertEqual([m.frames for m in restored.missed], [["43"]])

    def test_broadcasts_for_users_without_sockets_here_are_not_kept(self) -> None:
        self.broadcast([7], 0)
        self.assertEqual(len(self.store._log), 0)

    def test_keepers_are_the_users_whose_sockets_here_may_come_back(self) -> None:
        self.assertEqual(self.store.keepers([1, 2, 3]), frozenset())
        gone = self.connected(1)
        self.connected(3, "s3")
        self.store.detach(gone, "transport close")  # type: ignore[arg-type]
        self.assertEqual(self.store.keepers(iter([3, 2, 1, 1])), frozenset({1, 3}))
        offset = self.store.next_offset()
        self.store.record(offset, [1, 2, 3], Outgoing(["42"]), keepers=frozenset({3}))
        self.assertEqual([entry.users for entry in self.store._log], [frozenset({3})])

    def test_events_relayed_from_another_node_are_kept_under_their_own_offset(self) -> None:
        from umoc.cluster.hub import Hub

        hub = Hub(recovery=self.store)
        sock = self.connected()
        remote = Outgoing.from_socketio(encode_event("new_message", {"n": 1}, "othernode-1"))
        hub.deliver_local([1], remote, "othernode-1")
        hub.deliver_local([1], remote, "othernode-1")  # a repeat is not kept twice
        hub.emit_to_users([1], "new_message", {"n": 2})
        self.store.detach(sock, "transport close")  # type: ignore[arg-type]
        restored = self.store.restore({"pid": sock.pid, "offset": "othernode-1"}, identity(), "/")
        assert restored is not None
        self.assertEqual(len(restored.missed), 1)
        self.assertIn('"n":2', restored.missed[0].frames[0])

    def test_a_half_open_socket_is_closed_then_recovered(self) -> None:
        sock = self.connected()
        seen, _ = self.broadcast([1], 0)
        missed = self.broadcast([1], 1)[1]

        def close(reason: str, notify: bool = True) -> None:
            self.store.detach(sock, reason)  # type: ignore[arg-type]

        sock.connection.engine.close = close  # type: ignore[method-assign]
        restored = self.store.restore({"pid": sock.pid, "offset": seen}, identity(), "/")
        assert restored is not None
        self.assertEqual(restored.missed, [missed])


class RecoveryTestsMixin:
    """A real server, a raw Socket.IO client, and a TCP connection cut mid-conversation."""

    #: Recovery is off by default (offsets are an extra event argument); these tests turn it on.
    config_overrides = {"engineio": {"recovery_window": 120}}

    def emit(self, user_id: int, n: int) -> None:
        self.server.services.hub.emit_to_users([user_id], "new_message", {"n": n})

    async def events(self, sock: RawWebSocket, count: int) -> list[list[Any]]:
        return [await blocking(sock.recv_json_packet, "42") for _ in range(count)]

    async def start(self) -> tuple[dict[str, Any], dict[str, Any], RawWebSocket, dict[str, Any]]:
        login = await self.server.user("alice")
        auth = credentials(login)
        sock, answer = await self.socketio_websocket(auth)
        self.assertEqual(set(answer), {"sid", "pid"})
        hello = await self.events(sock, 1)
        self.assertEqual(hello[0][0], "connection_successful")
        return login, auth, sock, answer

    @inline
    async def test_cut_connection_gets_exactly_the_ten_missed_events_once_in_order(self) -> None:
        login, auth, sock, answer = await self.start()
        user_id = login["user_id"]
        for n in (1, 2):
            self.emit(user_id, n)
        before = await self.events(sock, 2)
        self.assertEqual([e[1]["n"] for e in before], [1, 2])
        offset = before[-1][2]
        self.assertIsInstance(offset, str)

        def cut() -> None:
            sock.ws.sock.shutdown(socket_module.SHUT_RDWR)
            sock.ws.sock.close()

        await blocking(cut)
        for n in range(3, 13):
            self.emit(user_id, n)

        again, answer2 = await self.socketio_websocket({**auth, "pid": answer["pid"], "offset": offset})
        self.assertEqual(answer2, answer)  # same sid and pid: recovered
        replay = await self.events(again, 11)
        self.assertEqual([e[1]["n"] for e in replay[:10]], list(range(3, 13)))
        self.assertEqual(len({e[2] for e in replay[:10]}), 10)
        self.assertEqual(replay[10][0], "connection_successful")
        self.emit(user_id, 13)
        self.assertEqual((await self.events(again, 1))[0][1]["n"], 13)

    @inline
    async def test_half_open_connection_is_replaced_by_the_recovering_one(self) -> None:
        login, auth, sock, answer = await self.start()
        self.emit(login["user_id"], 1)
        offset = (await self.events(sock, 1))[0][2]
        for n in range(2, 12):  # written to a connection the client no longer reads
            self.emit(login["user_id"], n)
        again, answer2 = await self.socketio_websocket({**auth, "pid": answer["pid"], "offset": offset})
        self.assertEqual(answer2, answer)
        replay = await self.events(again, 11)
        self.assertEqual([e[1]["n"] for e in replay[:10]], list(range(2, 12)))
        self.assertTrue(await blocking(sock.closed_within, 3))

    @inline
    async def test_a_wrong_pid_or_a_client_disconnect_starts_afresh(self) -> None:
        login, auth, sock, answer = await self.start()
        self.emit(login["user_id"], 1)
        offset = (await self.events(sock, 1))[0][2]
        await blocking(sock.send, "41")
        await sleep(0.05)
        self.emit(login["user_id"], 2)
        again, answer2 = await self.socketio_websocket({**auth, "pid": answer["pid"], "offset": offset})
        self.assertNotEqual(answer2["pid"], answer["pid"])
        self.assertEqual((await self.events(again, 1))[0][0], "connection_successful")
        other, answer3 = await self.socketio_websocket({**auth, "pid": "made-up", "offset": offset})
        self.assertNotIn(answer3["pid"], (answer["pid"], "made-up"))

    @inline
    async def test_recovery_still_needs_valid_credentials(self) -> None:
        _, auth, sock, answer = await self.start()
        await blocking(sock.close)
        bad = await self.open_websocket()
        await blocking(bad.send, "40" + json.dumps({**auth, "token": "x" * 43, "pid": answer["pid"]}))
        self.assertEqual(
            await blocking(bad.recv_json_packet, "44"),
            {"message": "Invalid session", "data": {"code": "not_authenticated"}},
        )


for_each_backend(RecoveryTestsMixin, ServerTestCase, globals())


class RecoveryOffTests(ServerTestCase):
    config_overrides = {"engineio": {"recovery_window": 0}}

    @inline
    async def test_no_pid_and_no_offsets_when_recovery_is_off(self) -> None:
        login = await self.server.user("alice")
        sock, answer = await self.socketio_websocket(credentials(login))
        self.assertEqual(set(answer), {"sid"})
        await blocking(sock.recv_json_packet, "42")
        self.server.services.hub.emit_to_users([login["user_id"]], "new_message", {"n": 1})
        self.assertEqual(await blocking(sock.recv_json_packet, "42"), ["new_message", {"n": 1}])
