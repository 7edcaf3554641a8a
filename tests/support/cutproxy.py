"""A TCP proxy on 127.0.0.1 whose connections can be cut: what a node sees when its link to Redis breaks.

`cut` drops every connection through it at once (a reset) and stops
listening, so new ones are refused, until `restore` listens on the same port
again; the peer behind it, and everyone else connected to that peer
directly, go on as if nothing happened.  It runs in the reactor (unlike ``silentproxy``, whose partition
leaves connections open), which is enough for clients in the reactor too.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.protocols import portforward

__all__ = ["CutProxy"]


class _Server(portforward.ProxyServer):
    def connectionMade(self) -> None:
        self.factory.owner.connections.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.owner.connections.discard(self)
        super().connectionLost(reason)


class CutProxy:
    """Forwards ``127.0.0.1:<port>`` to ``(host, port)`` until `cut`."""

    def __init__(self, host: str, port: int) -> None:
        self._factory = portforward.ProxyFactory(host, port)
        self._factory.protocol = _Server
        self._factory.owner = self  # type: ignore[attr-defined]
        self.connections: set[_Server] = set()
        self._listening: Any = reactor.listenTCP(0, self._factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.port: int = self._listening.getHost().port

    def cut(self) -> Any:
        """Reset every connection through the proxy, and refuse new ones; fires once no longer listening."""
        for connection in list(self.connections):
            connection.transport.abortConnection()
        listening, self._listening = self._listening, None
        return listening.stopListening() if listening is not None else None

    def restore(self) -> None:
        """Listen again, on the same port."""
        if self._listening is None:
            self._listening = reactor.listenTCP(self.port, self._factory, interface="127.0.0.1")  # type: ignore[attr-defined]

    def stop(self) -> Any:
        return self.cut()
