"""What the Socket.IO transport calls: who may connect, and what connect, events and disconnect do.

`UmocSocketApp` implements ``umoc.transport.socketio.SocketApp``.  A CONNECT
is authenticated through the `SessionManager` (``sessionID`` and ``token``
in the CONNECT auth payload, else in the URL query); events go to the one
route table; connects and disconnects keep the hub and presence in step and
announce ``user_status`` transitions to friends.  `UmocSocketApp.idle` lets
a stopping node wait for the events and announcements under way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Coroutine

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from umoc.domain import notices
from umoc.domain.services import Services
from umoc.domain.status import StatusAnnouncer
from umoc.errors import UserError
from umoc.events.router import Router
from umoc.ratelimit import trusted_networks
from umoc.transport.socketio import AuthError, ClientSocket, Identity, SocketIOConnection

__all__ = ["UmocSocketApp", "UserIdentity"]

log = Logger()


@dataclass(frozen=True, slots=True)
class UserIdentity(Identity):
    """An `Identity` with where the change feed stood when the user connected.

    Read before the socket joins the hub, so every change after it either
    reaches the socket live or is after ``cursor`` in the feed (usually both):
    a client that syncs from it misses nothing.  None when the database did
    not answer in time (the connect itself needs no database when the
    session is cached).
    """

    cursor: str | None = None


def _credentials(connection: SocketIOConnection, auth: Any) -> tuple[str, str]:
    """sessionID and token from the CONNECT auth payload, else from the URL query."""
    source: Any = auth if isinstance(auth, dict) and "sessionID" in auth else connection.engine.query
    session_id, token = source.get("sessionID"), source.get("token")
    if not isinstance(session_id, str) or not isinstance(token, str):
        raise AuthError("Missing sessionID or token", "not_authenticated")
    if not 0 < len(session_id) <= 64 or not 0 < len(token) <= 256:
        raise AuthError("Invalid session", "not_authenticated")
    return session_id, token


def _no_position(failure: Failure) -> None:
    """A connect goes on without a feed position when the database is away (``cursor`` is null)."""
    failure.trap(UserError)
    return None


class UmocSocketApp:
    """The `SocketApp` of the chat server."""

    namespaces = frozenset({"/"})

    def __init__(self, services: Services, router: Router, status: StatusAnnouncer) -> None:
        self._services = services
        self.router = router
        self._status = status
        self._background: set[defer.Deferred[None]] = set()

    def authenticate(self, connection: SocketIOConnection, auth: Any) -> defer.Deferred[Identity]:
        return defer.ensureDeferred(self._authenticate(connection, auth))

    async def _authenticate(self, connection: SocketIOConnection, auth: Any) -> Identity:
        services = self._services
        # Per address, but per user for a trusted network (one address for a whole company): there
        # the bucket is taken once the session says who connects.
        trusted = connection.engine.remote_ip in trusted_networks(services.config.ratelimits.trusted_networks)
        if not trusted:
            await self._take_connect(f"ip:{connection.engine.remote_ip}")
        session_id, token = _credentials(connection, auth)
        # Asked alongside the session check, so an uncached session costs no extra wait.
        position = services.storage.feed.position()
        position.addErrback(_no_position)
        try:
            record = await services.sessions.check(session_id, token)
        except UserError as exc:  # an invalid session, or a database past its deadline
            log.info(
                "Socket refused from {client}: {reason}",
                event="connect_refused",
                reason=exc.message,
                client=connection.engine.remote_ip,
            )
            raise AuthError(exc.message, exc.code) from None
        if trusted:
            await self._take_connect(f"user:{record.user_id}")
        cursor = await position
        if services.hub.session_socket_count(session_id) >= services.config.engineio.max_sockets_per_session:
            raise AuthError("Too many connections for this session", "conflict")
        return UserIdentity(record.user_id, record.username, record.id, record.expires_at, cursor)

    async def _take_connect(self, key: str) -> None:
        allowed, retry_after = await self._services.ratelimiter.can_do_action("connect", key)
        if not allowed:
            self._services.metrics.refused("connect")
            raise AuthError("Too many connection attempts; try again later", "rate_limited", retry_after)

    def on_connect(self, socket: ClientSocket) -> None:
        log.info(
            "Socket connected for {username} from {client}",
            event="connect",
            username=socket.username,
            user_id=socket.user_id,
            client=socket.remote_ip,
        )
        self._services.hub.add(socket)
        socket.tell(
            notices.CONNECTION_SUCCESSFUL(
                {
                    "user_id": socket.user_id,
                    "username": socket.username,
                    "session_expires": int(socket.identity.session_expires),
                    "cursor": socket.identity.cursor if isinstance(socket.identity, UserIdentity) else None,
                }
            )
        )
        self._in_background(self._status.socket_opened(socket.user_id, socket.username))

    def on_event(self, socket: ClientSocket, event: str, args: list[Any], ack_id: int | None) -> None:
        self.router.dispatch(socket, event, args, ack_id)

    def on_disconnect(self, socket: ClientSocket, reason: str) -> None:
        self.router.forget(socket)
        self._services.hub.remove(socket)
        self._in_background(self._status.socket_closed(socket.user_id, socket.username))

    def idle(self) -> defer.Deferred[list[tuple[bool, Any]]]:
        """Fires when the events running now and the status announcements under way are done."""
        return defer.DeferredList([self.router.idle(), *self._background], consumeErrors=True)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        d = defer.ensureDeferred(work)
        d.addErrback(lambda f: log.failure("Error announcing a user's status", f))
        if not d.called:
            self._background.add(d)
            d.addBoth(lambda _: self._background.discard(d))
