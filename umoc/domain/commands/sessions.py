"""Sessions: log in, log out, and the limits that keep guessing a password slow.

``POST /api/login`` and ``/api/logout`` only parse and call these (and a
later sign-in edge, such as OIDC, would too); the password rules, hashing
off the reactor, the dummy hash that keeps an unknown name as slow as a
wrong password, and the session limit are the `SessionManager`'s.

Login limits, and why they are keyed as they are: attempts are counted per
client address (``ratelimits.login``: one address cannot try many
accounts fast) and per (username, address) (``ratelimits.login_name``: one
address cannot guess one account fast).  Guessing one account from many
addresses is bounded per account (``ratelimits.login_account``), but only
for clients the account does not know.  A plain per-account limit would let
anybody lock any owner out by failing on purpose (OWASP's "account lockout"
denial of service); a proof of work or a captcha would need every client to
change, and a delay alone bounds nothing (the guesses just wait in
parallel).  So this follows OWASP's "device cookies" instead::

    login {username, password, device_token?} from a client (the actor, named by its address)
      known client?  the address, or the device token, logged into this account within
                     sessions.trusted_client_ttl (marks in Redis when configured: every node sees them)
        yes -> no per-account bucket: the owner at home or on their own phone is never held back
        no  -> ratelimits.login_account, keyed by the account: RateLimitedError (429 + Retry-After)
      success -> the address and the device token are marked known for the account;
                 the answer carries "device_token" (a new one unless a well-formed one was sent)

Addresses in ``ratelimits.trusted_networks`` (a company behind one NAT:
thousands of people, one address) skip ``ratelimits.login``, the one
bucket keyed by the address alone (`check_address_limit`); ``login_name``
and ``login_account`` still hold them, so one colleague guessing another's
password is as slow as any stranger.

An attacker spread over many addresses shares one small bucket per account;
the owner keeps logging in from any client that has logged in before (a
client that keeps its ``device_token`` is known wherever it connects from).
The owner on a new device during an attack waits ``Retry-After``, like any
stranger: the price of not knowing them.  The device token is a random
secret kept only as a digest; it is no credential (the password is still
needed), it only spares its holder the per-account bucket.  Every hash
waits in a bounded queue (``sessions.password_queue``): past it,
`PasswordQueueFullError`.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, TypeVar

from twisted.logger import Logger

from umoc.credentials import new_token, token_digest
from umoc.domain.commands.account import PasswordsDisabledError
from umoc.domain.oidc import Started
from umoc.domain.services import Services
from umoc.domain.sessions import AccountDisabledError, InvalidCredentialsError, InvalidSessionError
from umoc.domain.totp import matching_step
from umoc.errors import UserError
from umoc.ratelimit import trusted_networks
from umoc.records import Actor
from umoc.records.sessions import LoginAttempt, OidcCallback, SessionCredentials, TokenCredentials
from umoc.storage.users import SessionRecord

__all__ = [
    "RateLimitedError",
    "check_address_limit",
    "check_limit",
    "client_actor",
    "is_trusted",
    "login",
    "logout",
    "token_session",
]

log = Logger()

#: What `new_token` makes: a ``device_token`` of any other form was not issued here and is ignored.
DEVICE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
#: The `umoc.ratelimit` kind under which clients known to an account are remembered.
KNOWN_CLIENTS = "login_known"
TOO_MANY = "Too many requests; try again later"
TOO_MANY_ON_ACCOUNT = "Too many login attempts on this account; try again later, or from a device that logged in before"


class RateLimitedError(UserError):
    """A limit of `umoc.ratelimit` is spent: HTTP 429 with ``Retry-After`` (whole seconds, at least 1)."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, code="rate_limited", retry_after=retry_after)
        self.headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))}


async def check_limit(
    services: Services, kind: str, key: str, client: str, username: str | None = None, message: str = TOO_MANY
) -> None:
    """Take one from ``kind``'s bucket for ``key``; `RateLimitedError` (logged, counted) when it is empty."""
    allowed, retry_after = await services.ratelimiter.can_do_action(kind, key)
    if not allowed:
        services.metrics.refused(kind)
        log.warn(
            "Refused {kind} from {client}: rate limited",
            event="rate_limited",
            kind=kind,
            client=client,
            username=username,
        )
        raise RateLimitedError(message, retry_after)


def is_trusted(services: Services, client: str) -> bool:
    """Whether ``client`` (an address as the gate resolved it) is in ``ratelimits.trusted_networks``."""
    return client in trusted_networks(services.config.ratelimits.trusted_networks)


async def check_address_limit(services: Services, kind: str, client: str) -> None:
    """`check_limit` on the bucket ``kind`` keyed by the client's address, unless the address is trusted.

    For limits that know nothing of the client but its address (``login``,
    ``register``): a trusted network (``ratelimits.trusted_networks``) is
    one address for a whole company, so counting it would hold everyone
    back for the few; it is not counted at all.
    """
    if not is_trusted(services, client):
        await check_limit(services, kind, f"ip:{client}", client)


def _known_keys(account: str, client: str, device_token: str | None) -> list[str]:
    """The marks that make a client known to an account: its address, and its device token's digest."""
    keys = [f"{account}|ip:{client}"]
    if device_token is not None:
        keys.append(f"{account}|dev:{token_digest(device_token)}")
    return keys


def client_actor(address: str) -> Actor:
    """Who logs in or out: nobody yet, a client known by its address (as the gate saw it)."""
    return Actor(None, address, "server_api")


async def login(services: Services, actor: Actor, attempt: LoginAttempt) -> dict[str, Any]:
    """A new session for the right name and password, within the login limits; the login answer.

    ``actor`` is the client (`client_actor`): its name is its address, which
    the limits and the known-client marks are keyed by.

    Raises `RateLimitedError`, `InvalidCredentialsError` (the same for an
    unknown name and a wrong password), `AccountDisabledError` or
    `PasswordQueueFullError`; each failure is logged and counted.
    """
    client, username = actor.name, attempt.username
    if not services.config.auth.password.enabled:
        raise PasswordsDisabledError()
    await check_address_limit(services, "login", client)
    account = username.lower()
    await check_limit(services, "login_name", f"{account}|{client}", client, username)
    sent = attempt.device_token
    device_token = sent if sent is not None and DEVICE_TOKEN.fullmatch(sent) else None
    limiter = services.ratelimiter
    if not await limiter.remembered(KNOWN_CLIENTS, _known_keys(account, client, device_token)):
        await check_limit(services, "login_account", account, client, username, TOO_MANY_ON_ACCOUNT)
    try:
        user_id, canonical_name = await services.sessions.check_credentials(username, attempt.password)
        await _second_factor(services, user_id, canonical_name, attempt.totp, client)
        session = await services.sessions.open_session(user_id, canonical_name)
    except TotpError:
        services.metrics.login(False)
        raise
    except InvalidCredentialsError:
        services.metrics.login(False)
        log.warn("Login failed for {username} from {client}", event="login_failed", username=username, client=client)
        raise
    except AccountDisabledError:
        services.metrics.login(False)
        log.warn(
            "Login refused for {username} from {client}: account deactivated",
            event="login_refused",
            reason="deactivated",
            username=username,
            client=client,
        )
        raise
    services.metrics.login(True)
    device_token = device_token or new_token()
    ttl = services.config.sessions.trusted_client_ttl
    for key in _known_keys(session.username.lower(), client, device_token):
        await limiter.remember(KNOWN_CLIENTS, key, ttl)
    log.info(
        "Login succeeded for {username} from {client}",
        event="login",
        username=session.username,
        user_id=session.user_id,
        client=client,
    )
    return {
        "sessionID": session.session_id,
        "token": session.token,
        "user_id": session.user_id,
        "username": session.username,
        "expires_at": int(session.expires_at),
        "device_token": device_token,
    }


class TotpError(UserError):
    """The right password of an account with TOTP on, and no code or a wrong one: 401 ``totp_required``."""

    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, code="not_authenticated")


TOTP_REQUIRED = "TOTP code required"
TOTP_WRONG = "Invalid TOTP code"


async def _second_factor(services: Services, user_id: int, username: str, code: str | None, client: str) -> None:
    """Nothing for an account without TOTP; else the code must be this moment's, and not used before.

    A wrong code is counted against the login limits as a wrong password
    is, and more: besides the buckets this attempt already took, it takes
    one from ``ratelimits.login_account`` even for a client the account
    knows (whoever sends it knows the password: only the codes stand
    between them and the account, from any address).
    """
    state = await services.storage.totp.state(user_id)
    if state.secret is None:
        return
    if code is None:
        log.info(
            "Login of {username} from {client}: TOTP code required",
            event="login_totp_required",
            username=username,
            client=client,
        )
        raise TotpError(TOTP_REQUIRED)
    step = matching_step(state.secret, code, services.clock.seconds())
    if step is None or not await services.storage.totp.use_step(user_id, step):
        log.warn(
            "Login failed for {username} from {client}: wrong TOTP code",
            event="login_failed",
            reason="totp",
            username=username,
            client=client,
        )
        await check_limit(services, "login_account", username.lower(), client, username, TOO_MANY_ON_ACCOUNT)
        raise TotpError(TOTP_WRONG)


async def token_session(services: Services, actor: Actor, record: TokenCredentials) -> dict[str, Any]:
    """An ordinary session for the user a valid token names (``POST /api/token/session``); the login answer.

    The token is checked as at CONNECT (`umoc.domain.identity`), within the
    ``ratelimits.login`` bucket of the client's address: a token is a
    credential, and guessing one must be as slow as guessing a password.
    Raises `TokenError` (``Invalid token``, ``Token expired``, ``Unknown key
    id``), `AccountDisabledError` or `RateLimitedError`.
    """
    await check_address_limit(services, "login", actor.name)
    signed_in = await _signed_in(services, services.identities.user_for(record.token))
    shown = await _open_signed_in(services, actor, signed_in.user, "token")
    return {**shown, "external_id": signed_in.token.subject}


async def oidc_start(services: Services, actor: Actor) -> Started:
    """Where to send the browser to sign in at the OIDC provider, and the state cookie (``GET /api/oidc/login``)."""
    await check_address_limit(services, "login", actor.name)
    return await services.oidc.start()


async def oidc_session(services: Services, actor: Actor, record: OidcCallback) -> dict[str, Any]:
    """A new ordinary session for the user the OIDC provider signed in (``GET /api/oidc/callback``).

    Raises `OidcError` (also for a token the provider signed that does not
    verify), `AccountDisabledError` or `RateLimitedError`.
    """
    await check_address_limit(services, "login", actor.name)
    signed_in = await _signed_in(services, services.oidc.finish(record.code, record.state, record.cookie, record.iss))
    return await _open_signed_in(services, actor, signed_in.user, "oidc")


T = TypeVar("T")


async def _signed_in(services: Services, verifying: Awaitable[T]) -> T:
    """What an identity check gives, counting a refusal as a failed login."""
    try:
        return await verifying
    except UserError:
        services.metrics.login(False)
        raise


async def _open_signed_in(services: Services, actor: Actor, user: Any, via: str) -> dict[str, Any]:
    """A new ordinary session for ``user``, whom a token or the OIDC provider vouched for; counted and logged."""
    session = await services.sessions.open_session(user.user_id, user.username)
    services.metrics.login(True)
    log.info(
        "Sign-in of {username} from {client} ({via})",
        event="login",
        username=user.username,
        user_id=user.user_id,
        client=actor.name,
        via=via,
    )
    return {
        "sessionID": session.session_id,
        "token": session.token,
        "user_id": session.user_id,
        "username": session.username,
        "expires_at": int(session.expires_at),
    }


async def logout(services: Services, actor: Actor, credentials: SessionCredentials) -> SessionRecord:
    """End the session its holder names (its sockets are told); `InvalidSessionError` if they do not match."""
    record = await services.sessions.logout(credentials.session_id, credentials.token)
    if record is None:
        raise InvalidSessionError("Invalid session")
    log.info(
        "Logout of {username} from {client}",
        event="logout",
        username=record.username,
        user_id=record.user_id,
        client=actor.name,
    )
    return record
