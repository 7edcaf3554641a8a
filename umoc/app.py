"""The application: services wired together, and the Socket.IO side of UMOC.

`Application` is what handlers receive as ``ctx.app``: configuration, clock,
storage, the hub, the rate limiter and presence.  It also implements
`SocketApp`: who may connect, and what happens on connect, event and
disconnect.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from umoc.bus import Hub
from umoc.config import Config
from umoc.credentials import token_matches
from umoc.events import ROUTE_GROUPS
from umoc.events.router import Router, build_routes
from umoc.metrics import Metrics
from umoc.presence import LocalPresence, Presence
from umoc.ratelimit import MemoryRatelimiter, Ratelimiter
from umoc.storage import Storage
from umoc.transport.socketio import AuthError, ClientSocket, Identity, SocketIOConnection

__all__ = ["Application"]

log = Logger()

Hook = Callable[["Application", ClientSocket], Awaitable[None]]


def _credentials(connection: SocketIOConnection, auth: Any) -> tuple[str, str]:
    """sessionID and token from the CONNECT auth payload, else from the URL query."""
    source: Any = auth if isinstance(auth, dict) and "sessionID" in auth else connection.engine.query
    session_id, token = source.get("sessionID"), source.get("token")
    if not isinstance(session_id, str) or not isinstance(token, str):
        raise AuthError("Missing sessionID or token")
    if not 0 < len(session_id) <= 64 or not 0 < len(token) <= 256:
        raise AuthError("Invalid session")
    return session_id, token


class Application:
    """Everything a handler may use, and the `SocketApp` the transport talks to."""

    namespaces = frozenset({"/"})

    def __init__(
        self,
        config: Config,
        clock: IReactorTime,
        storage: Storage,
        ratelimiter: Ratelimiter | None = None,
        presence: Presence | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.storage = storage
        self.hub = Hub()
        self.metrics = Metrics()
        self.ratelimiter: Ratelimiter = ratelimiter or MemoryRatelimiter(clock, config.ratelimits)
        self.presence: Presence = presence or LocalPresence(self.hub)
        self.router = Router(self, build_routes(ROUTE_GROUPS))
        #: Called after a socket is accepted / after it is gone (presence, recovery...).
        self.connect_hooks: list[Hook] = []
        self.disconnect_hooks: list[Hook] = []
        #: scrypt runs here: two threads bound its CPU and its 16 MB a hash, whatever the login rate
        #: (in the reactor's shared pool every thread kept that memory for good).
        self.password_pool = ThreadPool(minthreads=0, maxthreads=2, name="umoc-passwords")
        self.metrics.gauges["connected_sockets"] = self.hub.socket_count
        self.metrics.gauges["connected_users"] = lambda: len(self.hub.by_user)
        from umoc.events import presence as presence_events

        presence_events.install(self)

    # -- SocketApp --------------------------------------------------------

    def authenticate(self, connection: SocketIOConnection, auth: Any) -> defer.Deferred[Identity]:
        return defer.ensureDeferred(self._authenticate(connection, auth))

    async def _authenticate(self, connection: SocketIOConnection, auth: Any) -> Identity:
        allowed, _ = await self.ratelimiter.can_do_action("connect", f"ip:{connection.engine.remote_ip}")
        if not allowed:
            raise AuthError("Too many connection attempts; try again later")
        session_id, token = _credentials(connection, auth)
        record = await self.storage.users.session(session_id)
        if record is None or not token_matches(token, record.token_hash):
            raise AuthError("Invalid session")
        if record.expires_at <= self.clock.seconds():
            raise AuthError("Session expired")
        if self.hub.session_socket_count(session_id) >= self.config.engineio.max_sockets_per_session:
            raise AuthError("Too many connections for this session")
        return Identity(record.user_id, record.username, record.id, record.expires_at)

    def on_connect(self, socket: ClientSocket) -> None:
        self.hub.add(socket)
        socket.emit(
            "connection_successful",
            {
                "user_id": socket.user_id,
                "username": socket.username,
                "session_expires": int(socket.identity.session_expires),
            },
        )
        for hook in self.connect_hooks:
            self._run_hook(hook, socket)

    def on_event(self, socket: ClientSocket, event: str, args: list[Any], ack_id: int | None) -> None:
        self.router.dispatch(socket, event, args, ack_id)

    def on_disconnect(self, socket: ClientSocket, reason: str) -> None:
        self.router.forget(socket)
        self.hub.remove(socket)
        for hook in self.disconnect_hooks:
            self._run_hook(hook, socket)

    def _run_hook(self, hook: Hook, socket: ClientSocket) -> None:
        d = defer.ensureDeferred(hook(self, socket))
        d.addErrback(lambda f: log.failure("Error in a connection hook", f))

    # -- sessions ---------------------------------------------------------

    def end_session(self, session_id: str, message: str = "Your session has expired or is invalid") -> None:
        """A session was revoked or expired: tell its sockets and close them, on every node."""
        self.hub.end_session(session_id, message)
