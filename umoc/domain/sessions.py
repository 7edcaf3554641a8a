"""Login sessions: the one place that creates, checks and ends them.

Both edges use it: the HTTP API registers, logs in and out and checks the
session of a download; the Socket.IO edge checks a socket's session at
CONNECT and on ``verify_session``.  Ending a session (logout, a newer login
past ``sessions.max_per_user``, expiry) tells its sockets on every node.

Password hashing runs on a two-thread pool of its own: Argon2id is slow and
takes 19 MiB a hash on purpose, so the bound keeps a login storm from
eating the reactor's shared pool or memory.  The hashes waiting for that
pool are bounded too (``sessions.password_queue``): past the bound a login,
registration or password check is refused at once with
`PasswordQueueFullError` (503 with ``Retry-After`` over HTTP, ``error``
with ``retry_after`` on a socket) rather than queued, so a storm of guesses
costs a bounded wait to everyone instead of an unbounded one (and unbounded
memory: every queued job holds its request).  A login whose stored hash is
an older kind (scrypt) or weaker parameters stores a fresh hash, unless the
queue is full: then it waits for the next login.

Registration follows ``registration.mode`` (open, closed, invite), which an
administrator's setting in the database overrides; the check and the
invite's use happen in the transaction that creates the account.  A
deactivated account can neither log in nor use a session.

Sessions ended without this node being told (``umoc-admin`` on a node with
no Redis, or while Redis was away) are noticed by `sweep`, a periodic task
every ``sessions.check_interval``: one query for the sessions of this
node's sockets, and the sockets of those gone are closed.
"""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from twisted.internet import threads
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from umoc.cluster.hub import Hub
from umoc.config import SessionsConfig
from umoc.credentials import (
    DUMMY_HASH,
    hash_password,
    needs_rehash,
    new_token,
    token_digest,
    token_matches,
    verify_password,
)
from umoc.errors import UserError
from umoc.records.sessions import NewSession
from umoc.storage.database import IntegrityError
from umoc.storage.users import (
    AccountDeactivatedError,
    Admission,
    RegistrationRefusedError,
    SessionRecord,
    User,
    UsernameTakenError,
    UserStore,
)

__all__ = [
    "AccountDisabledError",
    "InvalidCredentialsError",
    "InvalidSessionError",
    "Login",
    "PasswordQueueFullError",
    "RegistrationRefusedError",
    "SessionManager",
    "UsernameTakenError",
]

log = Logger()

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")
#: The namespace of the session ids derived from a token's digest (`SessionManager.token_session`).
_TOKEN_SESSIONS = uuid.UUID("6f1c7a52-2b8e-4d0a-9c7e-3f5b1d2e8a40")


class InvalidSessionError(UserError):
    """A session id and token that do not open a live session."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_authenticated")


class InvalidCredentialsError(UserError):
    """A login with an unknown name or a wrong password (the same answer for both)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_authenticated")


class AccountDisabledError(UserError):
    """The right password for an account an administrator deactivated."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="account_disabled")


class PasswordQueueFullError(UserError):
    """Too many password hashes waiting on this node: try again in ``retry_after`` seconds.

    ``status`` and ``headers`` make the HTTP edge answer 503 with
    ``Retry-After``; on a socket the ``error`` event carries ``retry_after``.
    """

    status = 503
    #: Seconds to wait: a full queue drains in about this long (two threads, tens of ms a hash).
    RETRY_AFTER = 1

    def __init__(self) -> None:
        super().__init__(
            "The server is busy checking passwords; try again shortly", code="unavailable", retry_after=self.RETRY_AFTER
        )
        self.headers = {"Retry-After": str(self.RETRY_AFTER)}


@dataclass(frozen=True, slots=True)
class Login:
    """A new session: what the client needs to open sockets with it."""

    session_id: str
    token: str
    user_id: int
    username: str
    expires_at: float


class SessionManager:
    """Register, log in, authenticate, log out, end and expire sessions."""

    EXPIRY_BATCH = 1000

    #: Sent to the sockets of a session that `sweep` found gone.
    ENDED_ELSEWHERE = "Your session has ended"
    #: Seconds a sweep waits before closing a session it found gone for no reason it knows: the command that
    #: deleted it (on this node, or another whose bus message is under way) says why in that time.  Without
    #: it a sweep landing between an administrator's commit and the command's own `end` told the sockets
    #: only that their session had ended.
    UNEXPLAINED_GRACE = 1.0

    def __init__(
        self,
        users: UserStore,
        hub: Hub,
        clock: IReactorTime,
        config: SessionsConfig,
        registration_mode: str = "open",
        threads_reactor: IReactorFromThreads | None = None,
    ) -> None:
        self._users = users
        self._hub = hub
        self._clock = clock
        #: Where a password hash's result comes back from its thread: the reactor (``clock`` unless a test
        #: runs the node on a `Clock`, which cannot take calls from threads).
        self._threads_reactor: Any = threads_reactor or clock
        self._config = config
        #: ``registration.mode`` from the configuration (a setting in the database overrides it).
        self.registration_mode = registration_mode
        self.password_pool = ThreadPool(minthreads=0, maxthreads=2, name="umoc-passwords")
        #: Hashes handed to the pool and not finished yet (queued or running).
        self.hashing = 0
        #: Hashes refused because ``sessions.password_queue`` were already waiting.
        self.hashes_refused = 0
        #: Recently checked sessions: an authenticated connect costs no database round trip.
        self._cache: OrderedDict[str, tuple[SessionRecord, float]] = OrderedDict()
        #: Sessions already deleted whose end is told a moment later (`will_end`), with what their sockets hear.
        self._ending: dict[str, str] = {}
        #: Sessions a sweep found gone with no reason known yet, ended `UNEXPLAINED_GRACE` seconds later.
        self._unexplained: dict[str, IDelayedCall] = {}
        hub.session_end_listeners.append(self.forget)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self.password_pool.start()

    def stop(self) -> None:
        for call in self._unexplained.values():
            call.cancel()
        self._unexplained.clear()
        if self.password_pool.started and not self.password_pool.joined:
            self.password_pool.stop()

    def _in_pool(self, fn: Any, *args: Any) -> Any:
        """Run a hash on the password pool; `PasswordQueueFullError` when ``password_queue`` are waiting."""
        if self.hashing >= self._config.password_queue:
            self.hashes_refused += 1
            raise PasswordQueueFullError()
        self.hashing += 1
        d = threads.deferToThreadPool(self._threads_reactor, self.password_pool, fn, *args)
        d.addBoth(self._hashed)
        return d

    def _hashed(self, result: Any) -> Any:
        self.hashing -= 1
        return result

    # -- accounts and logins -----------------------------------------------------

    async def register(self, username: str, password: str, invite: str | None = None) -> User:
        """A new account by its owner, if the registration mode lets it in.

        `UserError` for a bad name or password, `UsernameTakenError` if
        taken, `RegistrationRefusedError` when registration is closed or the
        invite code (invite mode) is missing, unknown or used up.
        """
        _check_username(username)
        password_hash = await self.hash_new_password(password)
        admission = Admission(self.registration_mode, token_digest(invite) if invite else None)
        return await self._users.create(username, password_hash, self._clock.seconds(), admission)

    async def create_account(self, username: str, password: str, is_admin: bool = False) -> User:
        """A new account made by an administrator: whatever the registration mode."""
        _check_username(username)
        password_hash = await self.hash_new_password(password)
        return await self._users.create(username, password_hash, self._clock.seconds(), None, is_admin)

    async def hash_new_password(self, password: str) -> str:
        """The stored form of a new password; `UserError` when it is too short or too long."""
        if not 8 <= len(password) <= 256:
            raise UserError("password must be 8-256 characters", code="invalid_argument")
        return await self._in_pool(hash_password, password)

    async def login(self, username: str, password: str) -> Login:
        """A new session for correct credentials; the oldest sessions past the limit end."""
        user_id, canonical_name = await self.check_credentials(username, password)
        return await self.open_session(user_id, canonical_name)

    async def check_credentials(self, username: str, password: str) -> tuple[int, str]:
        """``(user_id, username as stored)`` for the right password of an active account.

        `InvalidCredentialsError` (the same work for an unknown name as for a
        wrong password) or `AccountDisabledError`; an old hash is replaced.
        """
        found = await self._users.credentials(username)
        ok = await self._in_pool(verify_password, password, found[2] if found else DUMMY_HASH)
        if found is None or not ok:
            raise InvalidCredentialsError("Invalid username or password")
        user_id, canonical_name, stored_hash, active = found
        if not active:
            raise AccountDisabledError("This account has been deactivated")
        if needs_rehash(stored_hash) and self.hashing < self._config.password_queue:
            fresh = await self._in_pool(hash_password, password)
            await self._users.replace_password_hash(user_id, stored_hash, fresh)
        return user_id, canonical_name

    async def open_session(self, user_id: int, username: str) -> Login:
        """A new ordinary session for a user who proved who they are (a password, a token); the oldest past
        ``sessions.max_per_user`` end.  `AccountDisabledError` for a deactivated account."""
        session_id, token = str(uuid.uuid4()), new_token()
        now = self._clock.seconds()
        expires_at = now + self._config.ttl
        try:
            revoked = await self._users.create_session(
                NewSession(user_id, session_id, token_digest(token), now, expires_at), self._config.max_per_user
            )
        except AccountDeactivatedError:
            raise AccountDisabledError("This account has been deactivated") from None
        for old in revoked:
            log.info(
                "Session of {username} revoked by a newer login",
                event="session_revoked",
                reason="newer_login",
                username=username,
                user_id=user_id,
            )
            self.end(old, "Your session was ended by a newer login")
        return Login(session_id, token, user_id, username, expires_at)

    async def token_session(self, user_id: int, token: str, expires_at: float) -> SessionRecord:
        """The session of a socket that connected with a token (``auth.jwt``): one per token, ending with it.

        Its id is derived from the token's digest, so a client reconnecting
        with the same token (socket.io-client does) gets the same session
        back rather than a new row each time; a session ended since (logout,
        revocation, expiry) is replaced by a new one, since the token was
        checked again.  No older session is revoked (``max_per_user``
        counts logins, not the tabs of a page that mints a token each).
        Its own token is random and handed to nobody: the socket holds the
        session, and ``POST /api/token/session`` gives an ordinary one.
        """
        session_id = str(uuid.uuid5(_TOKEN_SESSIONS, token_digest(token)))
        for attempt in range(2):
            try:
                record = await self.check(session_id, None)
            except InvalidSessionError:
                pass
            else:
                if record.user_id == user_id:
                    return record
            if attempt:
                session_id = str(uuid.uuid4())  # the derived id is spent (an expired row): a fresh one
            now = self._clock.seconds()
            new = NewSession(user_id, session_id, token_digest(new_token()), now, max(expires_at, now + 1))
            try:
                await self._users.create_session(new, None)
            except AccountDeactivatedError:
                raise AccountDisabledError("This account has been deactivated") from None
            except IntegrityError:
                continue  # the same token connecting on another node first, or an expired row of it
            return await self.check(session_id, None)
        raise InvalidSessionError("Invalid session")

    async def check_password(self, user_id: int, password: str) -> None:
        """`InvalidCredentialsError` unless ``password`` is the account's own (e.g. before deleting it).

        The same verification as a login, on the same bounded pool; a
        missing account costs the same work as a wrong password.
        """
        stored = await self._users.password_hash(user_id)
        ok = await self._in_pool(verify_password, password, stored or DUMMY_HASH)
        if not stored or not ok:
            raise InvalidCredentialsError("Wrong password")

    # -- checking -------------------------------------------------------------------

    async def check(self, session_id: str, token: str | None) -> SessionRecord:
        """The live session with this id, if ``token`` is its token (None: the id alone is enough).

        Raises `InvalidSessionError`: "Invalid session" for an unknown id or a
        wrong token (one answer, so nothing tells them apart), "Session
        expired" only to the holder of the right token.
        """
        if "\x00" in session_id:  # no session has one, and PostgreSQL would refuse the lookup
            raise InvalidSessionError("Invalid session")
        record = self._cached(session_id)
        if record is None:
            record = await self._users.session(session_id)
            if record is not None:
                self._remember(record)
        if record is None or (token is not None and not token_matches(token, record.token_hash)):
            raise InvalidSessionError("Invalid session")
        if record.expires_at <= self._clock.seconds():
            raise InvalidSessionError("Session expired")
        return record

    # -- the session cache ----------------------------------------------------------
    #
    # Bounded (CACHE_SIZE, least recently used out) and short-lived: an entry
    # is trusted for ``sessions.check_interval`` at most, the same bound the
    # periodic sweep gives a session ended where this node cannot hear it
    # (``umoc-admin`` with no Redis).  Every session ended here or announced on
    # the bus (logout, a newer login, expiry, revocation, deactivation) is
    # forgotten at once through the hub; expiry is checked on every use.

    CACHE_SIZE = 10_000

    def cached_user(self, session_id: str) -> int | None:
        """The user of a session in the cache, whether or not the cache still trusts it (a session's user
        never changes); None when it is not there.  Nothing is checked: `check` decides."""
        entry = self._cache.get(session_id)
        return None if entry is None else entry[0].user_id

    def _cached(self, session_id: str) -> SessionRecord | None:
        entry = self._cache.get(session_id)
        if entry is None:
            return None
        record, cached_at = entry
        if self._clock.seconds() - cached_at > self._config.check_interval:
            del self._cache[session_id]
            return None
        self._cache.move_to_end(session_id)
        return record

    def _remember(self, record: SessionRecord) -> None:
        self._cache[record.id] = (record, self._clock.seconds())
        if len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)

    def forget(self, session_id: str) -> None:
        """Drop a session from the cache (it ended, here or on another node): its end was told, so a sweep's
        pending `_end_unexplained` has nothing left to say."""
        self._cache.pop(session_id, None)
        pending = self._unexplained.pop(session_id, None)
        if pending is not None and pending.active():
            pending.cancel()

    async def authenticate(self, session_id: str, token: str | None) -> SessionRecord | None:
        """`check`, with None for every kind of invalid session."""
        try:
            return await self.check(session_id, token)
        except InvalidSessionError:
            return None

    # -- ending ---------------------------------------------------------------------

    async def logout(self, session_id: str, token: str) -> SessionRecord | None:
        """End a session its holder names; None when the id and token do not match a session."""
        record = await self._users.session(session_id) if "\x00" not in session_id else None
        if record is None or not token_matches(token, record.token_hash):
            return None
        await self._users.delete_session(session_id)
        self.end(session_id, "You have logged out")
        return record

    def end(self, session_id: str, message: str = "Your session has expired or is invalid") -> None:
        """A session was revoked or expired: tell its sockets and close them, on every node."""
        self._ending.pop(session_id, None)
        self._hub.end_session(session_id, message)

    def will_end(self, session_ids: list[str], message: str) -> None:
        """These sessions are deleted and `end` follows shortly: a sweep finding them first says ``message`` too.

        Without it a sweep running between the commit and `end` (an account
        deletion answers its caller first) told the sockets only that their
        session had ended, not why.
        """
        for session_id in session_ids:
            self._ending[session_id] = message

    def end_all(self, session_ids: list[str], message: str) -> None:
        """Sessions already deleted in the database (by an administrator): close their sockets everywhere."""
        for session_id in session_ids:
            self.end(session_id, message)

    async def sweep(self) -> int:
        """Close this node's sockets whose session no longer exists (a periodic task); how many sessions."""
        local = list(self._hub.by_session)
        if not local:
            return 0
        existing = await self._users.existing_sessions(local)
        # Only what is still open here: a session whose end was told (and its sockets closed) while the query
        # ran has nothing left to close, and a grace timer for it would outlive everything (and say nothing).
        gone = [s for s in local if s not in existing and self._hub.by_session.get(s)]
        for session_id in gone:
            message = self._ending.get(session_id)
            if message is not None:
                self._hub.end_session_local(session_id, message)
            elif session_id not in self._unexplained:
                self._unexplained[session_id] = self._clock.callLater(
                    self.UNEXPLAINED_GRACE, self._end_unexplained, session_id
                )
        return len(gone)

    def _end_unexplained(self, session_id: str) -> None:
        """A session the sweep found gone with no reason known here: close what is still open of it.

        The node that deleted it (an administrator's command on this node, or
        another node whose bus message is on its way) tells the reason within
        moments of its commit; only if nobody has by now do the sockets hear
        the generic `ENDED_ELSEWHERE` (``umoc-admin`` with no Redis, say).
        """
        self._unexplained.pop(session_id, None)
        if self._hub.by_session.get(session_id):
            self._hub.end_session_local(session_id, self._ending.get(session_id, self.ENDED_ELSEWHERE))

    async def expire(self) -> int:
        """Delete expired sessions and close their sockets (a periodic task); how many ended."""
        ended = 0
        while True:
            expired = await self._users.delete_expired_sessions(self._clock.seconds(), self.EXPIRY_BATCH)
            for session_id, user_id in expired:
                log.info(
                    "Session of user {user_id} expired", event="session_revoked", reason="expired", user_id=user_id
                )
                self.end(session_id, "Your session has expired")
            ended += len(expired)
            if len(expired) < self.EXPIRY_BATCH:
                return ended


def _check_username(username: str) -> None:
    if not USERNAME.fullmatch(username):
        raise UserError("username must be 3-32 characters of letters, digits, '_', '.' or '-'", code="invalid_argument")
