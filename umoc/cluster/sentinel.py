"""Finding the Redis master through Redis Sentinel, before every connection.

With ``redis.sentinels`` a node never names the master itself.  Every
connection it opens (the command connection, the bus subscription) goes
through `MasterEndpoint`, which first asks the sentinels where the master
of ``redis.master_name`` is, and the connection then checks with ROLE that
the server it reached is a master before anything is sent on it (a demoted
master that came back as a replica is refused, and the next attempt asks
again).

A failover therefore costs each connection one reconnect: the old master
dies (or Sentinel kills the clients of a demoted one), the connection is
lost, attempts fail fast while the sentinels report the master down
(``s_down``/``o_down``: no address is tried at all), and the first attempt
after the promotion reaches the new master.  Meanwhile the bus watch counts
a gap, rate limits answer from memory and presence from the hub, exactly as
for a Redis outage (see ``umoc.cluster.buswatch``).

Asking::

    -> SENTINEL MASTER <name>                      every sentinel with a live connection, at once
    <- [name, umoc, ip, 10.0.0.5, port, 6379, flags, master, ...]
    the first answer whose flags hold neither s_down nor o_down wins;
    all answered and none usable, or none connected: fail now (the caller backs off)
"""

from __future__ import annotations

from typing import Any, Sequence

import txredisapi
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

__all__ = ["FollowsFailover", "MasterEndpoint", "MasterOnly", "Sentinels"]

log = Logger()


class Sentinels:
    """One lazy connection per sentinel, and the question "where is the master now?"."""

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        master_name: str,
        clock: IReactorTime,
        timeout: float,
        password: str = "",
    ) -> None:
        self.master_name = master_name
        #: The master's password (the sentinels are asked without one).
        self.password = password or None
        self._clock = clock
        #: How long one discovery may take when a sentinel is connected but does not answer.
        self.timeout = timeout
        self.current: tuple[str, int] | None = None
        self._connections = [
            txredisapi.lazyConnection(
                host,
                port,
                reconnect=True,
                connectTimeout=max(1.0, timeout),
                replyTimeout=10.0,
                convertNumbers=False,
            )
            for host, port in addresses
        ]
        for conn in self._connections:
            # A sentinel restarted is asked again within half a second (txredisapi waits up to ten).
            conn._factory.initialDelay, conn._factory.maxDelay = 0.1, 0.5

    def master(self) -> defer.Deferred[tuple[str, int]]:
        """The master's address, as the first connected sentinel that knows a live one says."""
        live = [conn for conn in self._connections if conn._factory.size > 0]
        result: defer.Deferred[tuple[str, int]] = defer.Deferred()
        if not live:
            return defer.fail(txredisapi.MasterNotFoundError("no sentinel is connected"))
        pending = [len(live)]

        def answered(reply: Any) -> None:
            pending[0] -= 1
            if result.called:
                return
            address = _usable_master(reply)
            if address is not None:
                result.callback(address)
            elif not pending[0]:
                result.errback(txredisapi.MasterNotFoundError(f"no sentinel knows a live master {self.master_name!r}"))

        for conn in live:
            d = conn.execute_command("SENTINEL", "MASTER", self.master_name)
            d.addCallbacks(answered, lambda failure: answered(None))
        result.addTimeout(self.timeout, self._clock)
        result.addCallback(self._found)
        return result

    def _found(self, address: tuple[str, int]) -> tuple[str, int]:
        if address != self.current:
            log.info(
                "The Redis master {name} is at {host}:{port}", name=self.master_name, host=address[0], port=address[1]
            )
            self.current = address
        return address

    def close(self) -> defer.Deferred[Any]:
        return defer.gatherResults([conn.disconnect() for conn in self._connections], consumeErrors=True)


def _usable_master(reply: Any) -> tuple[str, int] | None:
    """``SENTINEL MASTER``'s flat list -> the address, unless the sentinel holds the master down."""
    if not isinstance(reply, list) or len(reply) % 2:
        return None  # an error reply (unknown master name) or nothing
    state = {_text(key): _text(value) for key, value in zip(reply[::2], reply[1::2], strict=True)}
    flags = set(state.get("flags", "").split(","))
    if "master" not in flags or flags & {"s_down", "o_down", "disconnected"}:
        return None
    try:
        return state["ip"], int(state["port"])
    except (KeyError, ValueError):
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@implementer(IStreamClientEndpoint)
class MasterEndpoint:
    """Connects to wherever the sentinels say the master is, asking anew on every attempt."""

    def __init__(self, reactor: Any, sentinels: Sentinels, timeout: float) -> None:
        self._reactor = reactor
        self._sentinels = sentinels
        self._timeout = timeout

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        d = self._sentinels.master()
        d.addCallback(
            lambda address: endpoints.HostnameEndpoint(
                self._reactor, address[0], address[1], timeout=self._timeout
            ).connect(factory)
        )
        return d


class MasterOnly:
    """A protocol mix-in: ROLE first, and a server that says it is no master is left at once.

    Sentinel's answer may be a moment old (a demoted master back as a
    replica, a switch under way); commands sent to a replica would fail
    and a subscription there would go quiet after the next switch.
    """

    transport: Any
    password: Any

    @defer.inlineCallbacks
    def connectionMade(self) -> Any:
        if self.password is not None:
            yield self.auth(self.password)  # type: ignore[attr-defined]
        try:
            role = yield self.execute_command("ROLE")  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - an error here is the base class's to report (a bad password)
            role = None
        if isinstance(role, list) and role and _text(role[0]) != "master":
            log.warn("Sentinel pointed at a Redis that is no master ({role}); asking again", role=_text(role[0]))
            self.transport.loseConnection()
            return None
        return (yield super().connectionMade())  # type: ignore[misc]


class FollowsFailover:
    """A factory mix-in: reconnect soon, the first retry at once (the address is asked anew), then at most 0.5 s apart.

    A failover is over within seconds, and while the master is held down
    an attempt costs one question to a sentinel and no connection, so
    waiting longer between attempts would only delay the recovery: the
    first attempt after the promotion comes within half a second of it.
    """

    initialDelay = 0.1
    maxDelay = 0.5

    def retryDelay(self, attempt: int) -> float:
        return 0.0 if attempt <= 1 else float(super().retryDelay(attempt))  # type: ignore[misc]
