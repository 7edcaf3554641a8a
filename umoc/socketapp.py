"""What the Socket.IO transport calls: who may connect, and what connect, events and disconnect do.

`UmocSocketApp` implements ``umoc.transport.socketio.SocketApp``.  A CONNECT
is authenticated through the `SessionManager` (``sessionID`` and ``token``
in the CONNECT auth payload, else in the URL query), or by a token alone in
the auth payload (``{"token"}``: the operator's identity provider's with
``auth.jwt`` on, or UMOC's own from the server API; `umoc.domain.identity`),
which gets a session of its own; events go to the one
route table; connects and disconnects keep the hub and presence in step and
announce ``user_status`` transitions to friends.  `UmocSocketApp.idle` lets
a stopping node wait for the events and announcements under way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    #: The subject of the token the socket connected with; None for a socket of a login's session.
    external_id: str | None = None
    #: The user's friends, read with ``cursor`` for the ``online`` announcement (None: not read with it);
    #: dropped once the socket is connected, so an idle socket does not hold them.
    friends: list[int] | None = None


def _bearer_token(auth: Any) -> str | None:
    """The token of a CONNECT auth payload ``{"token": "<JWT>"}`` (no ``sessionID``); None for any other."""
    if not isinstance(auth, dict) or "sessionID" in auth or "token" not in auth:
        return None
    token = auth["token"]
    if not isinstance(token, str) or not token:
        raise AuthError("Invalid token", "not_authenticated")
    return token


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


def _no_arrival(failure: Failure) -> tuple[None, None]:
    """`_no_position` for `StatusAnnouncer.arrival`: no cursor, and the friends are read when announcing."""
    failure.trap(UserError)
    return None, None


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
        bearer = _bearer_token(auth)
        external_id = None
        known = None
        if bearer is None:
            session_id, token = _credentials(connection, auth)
            known = services.sessions.cached_user(session_id)
        # Asked alongside the session check, so an uncached session costs no extra wait.  A cached one's
        # user is known already: the feed position and the user's friends (for the ``online`` announcement)
        # are then one read, shared with the other connects of the moment.
        arrival: defer.Deferred[Any] | None = None
        position: defer.Deferred[Any] | None = None
        if known is not None:
            arrival = self._status.arrival(known)
            arrival.addErrback(_no_arrival)
        else:
            position = services.storage.feed.position()
            position.addErrback(_no_position)
        try:
            if bearer is None:
                record = await services.sessions.check(session_id, token)
            else:
                record, external_id = await services.identities.socket_session(bearer)
                session_id = record.id
        except UserError as exc:  # an invalid session or token, or a database past its deadline
            log.info(
                "Socket refused from {client}: {reason}",
                event="connect_refused",
                reason=exc.message,
                client=connection.engine.remote_ip,
            )
            raise AuthError(exc.message, exc.code) from None
        if trusted:
            await self._take_connect(f"user:{record.user_id}")
        friends = None
        if arrival is not None:
            cursor, friends = await arrival  # read for ``known``: a session's user never changes
        else:
            assert position is not None
            cursor = await position
        if services.hub.session_socket_count(session_id) >= services.config.engineio.max_sockets_per_session:
            raise AuthError("Too many connections for this session", "conflict")
        return UserIdentity(record.user_id, record.username, record.id, record.expires_at, cursor, external_id, friends)

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
        identity = socket.identity
        friends = None
        if isinstance(identity, UserIdentity) and identity.friends is not None:
            friends = identity.friends
            socket.identity = replace(identity, friends=None)
        hello: dict[str, Any] = {
            "user_id": socket.user_id,
            "username": socket.username,
            "session_expires": int(identity.session_expires),
            "cursor": identity.cursor if isinstance(identity, UserIdentity) else None,
        }
        if isinstance(identity, UserIdentity) and identity.external_id is not None:
            hello["external_id"] = identity.external_id  # a token's socket: the subject it named
        socket.tell(notices.CONNECTION_SUCCESSFUL(hello))
        self._in_background(self._status.socket_opened(socket.user_id, socket.username, friends))

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
