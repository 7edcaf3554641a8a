"""Stand-ins for a socket's transport, for Engine.IO and Socket.IO tests without a network."""

from __future__ import annotations

from typing import Any

from umoc.protocol.engineio import EnginePacket
from umoc.transport.engine import Outgoing


class FakeTransport:
    """An `EngineTransport` that records what it would send: packets, and the frames of messages."""

    name = "fake"

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False

    def send_outgoing(self, message: Outgoing) -> None:
        self.sent.extend(message.frames)

    def send_packets(self, packets: list[EnginePacket]) -> None:
        self.sent.extend(packets)

    def close(self) -> None:
        self.closed = True
