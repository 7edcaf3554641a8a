"""`umoc.transport.readydispatch`: the epoll reactor's lighter dispatch does what Twisted's did.

Each test builds its own `EPollReactor` (never the one trial runs on) and
turns it by hand with ``doIteration``, on real socket pairs.
"""

from __future__ import annotations

import gc
import socket
import weakref
from typing import Any

from twisted.internet import main
from twisted.internet.abstract import FileDescriptor
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.task import Clock
from twisted.python import context, log
from twisted.python.log import ILogContext
from twisted.trial import unittest

from umoc.transport import readydispatch


class _Reader(FileDescriptor):
    """One end of a socket pair: records each read and the log context it ran in."""

    def __init__(self, reactor: Any, sock: socket.socket, prefix: str, fail: BaseException | None = None) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.prefix = prefix
        self.fail = fail
        self.reads: list[bytes] = []
        self.systems: list[str] = []
        self.lost: list[Any] = []
        self.connected = 1

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:  # noqa: N802 (Twisted's name)
        return self.prefix

    def doRead(self) -> Any:  # noqa: N802 (Twisted's name)
        self.systems.append(context.get(ILogContext)["system"])
        data = self.sock.recv(4096)
        if not data:
            return main.CONNECTION_DONE
        self.reads.append(data)
        if self.fail is not None:
            raise self.fail
        return None

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        self.lost.append(reason)
        self.connected = 0
        self.reactor.removeReader(self)


class _BadLoss(_Reader):
    """A reader whose ``connectionLost`` raises: the error escapes ``_doReadOrWrite``."""

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        super().connectionLost(reason)
        raise ValueError("connectionLost failed")


class ReadyDispatchTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = EPollReactor()
        self.addCleanup(self._unbuild)
        self.sockets: list[socket.socket] = []

    def _unbuild(self) -> None:
        reactor = self.reactor
        for selectable in list(reactor.getReaders()) + list(reactor.getWriters()):
            reactor.removeReader(selectable)
            reactor.removeWriter(selectable)
        reactor.waker.connectionLost(None)
        reactor._poller.close()
        for sock in self.sockets:
            sock.close()

    def pair(self) -> tuple[socket.socket, socket.socket]:
        a, b = socket.socketpair()
        a.setblocking(False)
        self.sockets += [a, b]
        return a, b

    def reader(self, prefix: str, cls: type[_Reader] = _Reader, **kw: Any) -> tuple[_Reader, socket.socket]:
        mine, theirs = self.pair()
        reader = cls(self.reactor, mine, prefix, **kw)
        self.reactor.addReader(reader)
        return reader, theirs

    def turn(self) -> None:
        self.reactor.doIteration(0.5)

    def test_installs_once_on_epoll_only(self) -> None:
        self.assertFalse(readydispatch.installed(self.reactor))
        self.assertTrue(readydispatch.install(self.reactor))
        self.assertTrue(readydispatch.installed(self.reactor))
        self.assertFalse(readydispatch.install(self.reactor))
        self.assertFalse(readydispatch.install(Clock()))

    def test_reads_run_in_their_descriptors_log_context(self) -> None:
        """Each ready descriptor is read in ``{"system": its logPrefix()}``, as under `log.callWithLogger`."""
        readydispatch.install(self.reactor)
        one, one_peer = self.reader("Proto,1,127.0.0.1")
        two, two_peer = self.reader("Proto,2,127.0.0.1")
        legacy: list[dict[str, Any]] = []
        log.addObserver(legacy.append)
        self.addCleanup(log.removeObserver, legacy.append)
        one_peer.send(b"hello")
        two_peer.send(b"world")
        self.turn()
        self.assertEqual((one.reads, two.reads), ([b"hello"], [b"world"]))
        self.assertEqual((one.systems, two.systems), (["Proto,1,127.0.0.1"], ["Proto,2,127.0.0.1"]))
        # Outside a dispatch the reactor's own context is back.
        self.assertEqual(context.get(ILogContext)["system"], "-")
        # The same on the next events (the context kept for the descriptor).
        one_peer.send(b"again")
        self.turn()
        self.assertEqual(one.systems, ["Proto,1,127.0.0.1"] * 2)

    def test_legacy_log_event_in_a_read_names_the_connection(self) -> None:
        readydispatch.install(self.reactor)
        events: list[dict[str, Any]] = []
        log.addObserver(events.append)
        self.addCleanup(log.removeObserver, events.append)
        reader, peer = self.reader("Proto,7,10.0.0.7")
        original = reader.doRead

        def read_and_log() -> Any:
            log.msg("a legacy line")
            return original()

        reader.doRead = read_and_log  # type: ignore[method-assign]
        peer.send(b"x")
        self.turn()
        lines = [e for e in events if e.get("message") == ("a legacy line",)]
        self.assertEqual([e["system"] for e in lines], ["Proto,7,10.0.0.7"])

    def test_a_failing_read_is_logged_and_closed_the_others_served(self) -> None:
        """As before: ``_doReadOrWrite`` logs the error and drops that descriptor; the next one is still read."""
        readydispatch.install(self.reactor)
        bad, bad_peer = self.reader("Bad,1,127.0.0.1", fail=RuntimeError("boom"))
        good, good_peer = self.reader("Good,2,127.0.0.1")
        bad_peer.send(b"x")
        good_peer.send(b"y")
        self.turn()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(bad.lost), 1)
        self.assertEqual(good.reads, [b"y"])
        self.assertNotIn(bad, self.reactor.getReaders())

    def test_an_error_escaping_the_dispatch_is_logged_with_the_prefix(self) -> None:
        readydispatch.install(self.reactor)
        events: list[dict[str, Any]] = []
        log.addObserver(events.append)
        self.addCleanup(log.removeObserver, events.append)
        closing, closing_peer = self.reader("Closing,1,127.0.0.1", cls=_BadLoss)
        good, good_peer = self.reader("Good,2,127.0.0.1")
        closing_peer.close()  # EOF: CONNECTION_DONE, then the raising connectionLost
        good_peer.send(b"y")
        self.turn()
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertIn("Closing,1,127.0.0.1", [e.get("system") for e in events if e.get("isError")])
        self.assertEqual(good.reads, [b"y"])

    def test_a_closed_descriptor_is_not_kept_alive(self) -> None:
        readydispatch.install(self.reactor)
        reader, peer = self.reader("Proto,1,127.0.0.1")
        peer.send(b"x")
        self.turn()
        gone = weakref.ref(reader)
        self.reactor.removeReader(reader)
        del reader
        gc.collect()
        self.assertIsNone(gone())

    def test_a_new_descriptor_on_a_reused_number_gets_its_own_context(self) -> None:
        readydispatch.install(self.reactor)
        first, peer = self.reader("First,1,127.0.0.1")
        peer.send(b"x")
        self.turn()
        self.reactor.removeReader(first)
        second = _Reader(self.reactor, first.sock, "Second,2,127.0.0.1")  # same descriptor number
        self.reactor.addReader(second)
        peer.send(b"y")
        self.turn()
        self.assertEqual(second.systems, ["Second,2,127.0.0.1"])
