"""The upgrade from long-polling to WebSocket, between the two transports.

Engine.IO's upgrade on the wire (the WebSocket carries the same ``sid``)::

    WebSocket  2probe  ->
               <-  3probe       polling is released (its pending GET answers)
    WebSocket  5       ->       upgrade: polling's queue moves to the WebSocket

Anything else on the probing WebSocket refuses the upgrade and polling
carries on.  The two transports only meet here, through the two small
interfaces below, so neither imports the other.
"""

from __future__ import annotations

from typing import Protocol

from umoc.protocol.engineio import EnginePacket, EnginePacketType
from umoc.transport.engine import EngineSession, EngineTransport

__all__ = ["PollingSide", "UpgradeProbe", "WebSocketSide"]


class WebSocketSide(EngineTransport, Protocol):
    """The WebSocket that wants to take over a polling session (and carries it once it has)."""

    probe: UpgradeProbe | None

    def refuse_upgrade(self) -> None: ...

    def send_packets(self, packets: list[EnginePacket]) -> None: ...

    def send_frame(self, frame: str | bytes) -> None: ...


class PollingSide(Protocol):
    """The long-polling transport being replaced."""

    probe: UpgradeProbe | None
    upgrading: bool

    def release(self) -> None: ...

    def take_queue(self) -> list[str | bytes]: ...

    def discard(self) -> None: ...


class UpgradeProbe:
    """The probe/upgrade exchange on a WebSocket that wants to replace polling."""

    def __init__(self, session: EngineSession, polling: PollingSide, websocket: WebSocketSide) -> None:
        self.session = session
        self.polling = polling
        self.websocket = websocket
        self.probed = False

    def on_frame(self, frame: str | bytes) -> None:
        if self.session.closed:
            self.websocket.refuse_upgrade()
        elif not self.probed and frame == "2probe":
            self.probed = True
            self.websocket.send_packets([EnginePacket(EnginePacketType.PONG, "probe")])
            self.polling.release()
        elif self.probed and frame == "5":
            self._complete()
        else:
            self.fail()

    def _complete(self) -> None:
        websocket, polling, session = self.websocket, self.polling, self.session
        websocket.probe = polling.probe = None
        backlog = polling.take_queue()
        polling.discard()
        session.transport = websocket
        for frame in backlog:
            websocket.send_frame(frame)

    def fail(self) -> None:
        self.polling.upgrading = False
        self.polling.probe = self.websocket.probe = None
        self.websocket.refuse_upgrade()

    def on_close(self) -> None:
        """The probing WebSocket went away: polling carries on."""
        self.polling.upgrading = False
        self.polling.probe = None
