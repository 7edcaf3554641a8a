"""YAML configuration, read once into frozen dataclasses.

Every section has defaults, so ``twistd -n umoc`` runs with no file at all.
Unknown keys and wrong types are collected, each with its dotted path, and
reported together: a sysadmin fixes a config file in one pass, not one
restart per mistake.

Secrets need not be in the file.  Every string value may name environment
variables, ``${VAR}`` or ``${VAR:-default}`` (substituted in the parsed
values, never in the YAML text, so a variable cannot change the file's
structure); and each secret has a ``*_file`` twin (``database.dsn_file``,
``metrics.token_file``, ``redis.url_file``, ``webhooks[].secret_file``,
``auth.jwt.hmac_secret_file``, ``auth.oidc.client_secret_file``)
naming a file whose content is the value, as Docker secrets and systemd
credentials provide them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

__all__ = [
    "Config",
    "ConfigError",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "DATA_DIR_ENV",
    "data_dir_override",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "parse_host_port",
    "parse_redis_url",
    "RATE_CLASSES",
    "RedisTarget",
    "WEBHOOK_EVENTS",
]


class ConfigError(ValueError):
    """A configuration file that must not be started with; ``str()`` lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Duration(float):
    """Seconds; written in YAML as a number or ``"30s"``, ``"5m"``, ``"7d"``."""


class Size(int):
    """Bytes; written in YAML as a number or ``"512K"``, ``"25M"``, ``"1G"``."""


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: One origin in a CSP source list: scheme, host (a name, IPv4 or [IPv6]) and an optional port; no path,
#: no wildcard, nothing that could end the directive (";", spaces, quotes).
_CSP_ORIGIN = re.compile(r"(?:https?|wss?)://(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def parse_duration(value: Any) -> float:
    """``"7d"`` -> 604800.0; plain numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError('expected a duration like "30s" or "7d"')
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("expected a duration that is not negative")
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    raise ValueError('expected a duration like "30s" or "7d"')


def parse_size(value: Any) -> int:
    """``"25M"`` -> 26214400; plain numbers are bytes."""
    if isinstance(value, bool):
        raise ValueError('expected a size like "512K" or "25M"')
    if isinstance(value, int):
        if value < 0:
            raise ValueError("expected a size that is not negative")
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgKMG]?[bB]?)\s*", value)
        if match:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    raise ValueError('expected a size like "512K" or "25M"')


@dataclass(frozen=True)
class ServerConfig:
    """Where the one HTTP/WebSocket site listens and where data lives."""

    listen: str = "tcp:8080:interface=127.0.0.1"
    data_dir: str = "umoc-data"
    #: Browser origins allowed to open sockets and call /api/ (empty: any origin).
    allowed_origins: tuple[str, ...] = ()
    #: Trust X-Forwarded-For from these peer addresses or networks (a reverse proxy).
    trusted_proxies: tuple[str, ...] = ()
    #: Largest HTTP request body for the JSON endpoints.
    max_body: Size = Size(64 * 1024)
    #: One log line per HTTP request.  Off by default: long-polling clients make two
    #: requests per round trip, and the line costs more than the request itself.
    access_log: bool = False
    #: On SIGTERM, how long events already running may take to finish (and users be announced offline).
    shutdown_timeout: Duration = Duration(10)
    #: New writes (events that change state, the bot API, uploads) are refused at once, with
    #: ``code: "overloaded"`` (503 over HTTP), while the oldest write waiting to commit has waited longer
    #: than this; 0 turns the rule off.
    overload_wait: Duration = Duration(0.5)
    #: The same refusal while the reactor runs later than this (the node's own CPU is the backlog:
    #: frames wait in the kernel to be read); 0 turns the rule off and its timer with it.
    overload_lag: Duration = Duration(0.5)


@dataclass(frozen=True)
class MetricsConfig:
    """Who may read ``/metrics``."""

    #: Serve /metrics on this endpoint of its own (e.g. "tcp:9100:interface=127.0.0.1") instead of
    #: the API port; empty keeps it on the API port.
    listen: str = ""
    #: When set, /metrics answers only ``Authorization: Bearer <token>``.
    token: str = ""
    #: A file holding the token instead (its content, a trailing newline stripped).
    token_file: str = ""


@dataclass(frozen=True)
class DatabaseConfig:
    """SQLite file under data_dir by default; a PostgreSQL DSN for production."""

    dsn: str = ""
    #: A file holding the DSN instead (it carries the password): its content, a trailing newline stripped.
    dsn_file: str = ""
    pool_min: int = 1
    pool_max: int = 5
    #: Longest a transaction may take (waiting for a connection included) before the client gets an error.
    timeout: Duration = Duration(5)
    #: Longest a new PostgreSQL connection may take to open.
    connect_timeout: Duration = Duration(5)
    #: PostgreSQL TCP keepalives: probes after this much silence on a connection, ...
    keepalives_idle: Duration = Duration(10)
    #: ... this far apart; this many unanswered end the connection.
    keepalives_interval: Duration = Duration(5)
    keepalives_count: int = 3
    #: PostgreSQL ``tcp_user_timeout``: a connection whose sent data stays unacknowledged this long ends
    #: (0: the system's default).
    tcp_user_timeout: Duration = Duration(10)
    #: A pool thread still busy this long after its transaction's deadline counts as stuck; when every
    #: thread is, ``/healthz`` answers 503 so a supervisor restarts the node.
    stuck_timeout: Duration = Duration(30)
    #: SQLite's ``PRAGMA synchronous``: ``full`` fsyncs every commit (an acknowledged message survives a
    #: power loss); ``normal`` only at checkpoints (faster, a power loss can lose the last commits).
    sqlite_synchronous: str = "full"
    #: A PostgreSQL streaming replica for history, search, ``sync`` and exports (empty: all on ``dsn``); a
    #: user's reads go to the primary until the replica has replayed that user's last write.
    read_dsn: str = ""
    #: A file holding ``read_dsn`` instead (it carries the password).
    read_dsn_file: str = ""
    #: A replica further behind the primary than this (or not answering) is not read from: every read goes
    #: to the primary until it catches up.
    read_max_lag: Duration = Duration(5)


@dataclass(frozen=True)
class RedisConfig:
    """Rate-limit buckets, presence and fan-out between nodes; no url and no sentinels: one node alone."""

    url: str = ""
    #: A file holding the URL instead (it may carry the password).
    url_file: str = ""
    #: Redis Sentinel instead of ``url``: ``"HOST:PORT"`` of each sentinel, asked for the master on every
    #: (re)connect, so that a node follows a failover by itself.
    sentinels: tuple[str, ...] = ()
    #: The name the sentinels monitor the master under.
    master_name: str = "umoc"
    #: The master's (and replicas') password with ``sentinels`` (a ``url`` carries its own); the sentinels
    #: themselves are asked without one.
    password: str = ""
    #: Prepended to every key and channel, so several deployments (or test runs) can share one Redis.
    prefix: str = "umoc:"
    #: How long a request waits for Redis before answering from this node's memory instead.
    timeout: Duration = Duration(0.5)
    #: A node's presence entries vanish this long after its last heartbeat (a crashed node's users go offline).
    presence_ttl: Duration = Duration(30)
    #: How often a node checks its bus subscription with a self-ping (a gap is caught up from the database).
    bus_check_interval: Duration = Duration(1)

    @property
    def enabled(self) -> bool:
        """Whether this node shares Redis with others (through a URL or through sentinels)."""
        return bool(self.url or self.sentinels)


@dataclass(frozen=True)
class SessionsConfig:
    """Login sessions."""

    ttl: Duration = Duration(7 * 86400)
    max_per_user: int = 3
    cleanup_interval: Duration = Duration(60)
    #: How often a node checks that the sessions of its sockets still exist, and closes those ended
    #: elsewhere (by ``umoc-admin`` with no Redis to tell the node, or while Redis was away).
    check_interval: Duration = Duration(10)
    #: A client (address or ``device_token``) that logged into an account is exempt from the account's
    #: ``ratelimits.login_account`` bucket this long after its last successful login there.
    trusted_client_ttl: Duration = Duration(30 * 86400)
    #: Password hashes (logins, registrations, ``delete_account``) queued or running at once on a node;
    #: past it a request is refused at once (503, or ``error`` with ``retry_after``) instead of waiting.
    password_queue: int = 32


@dataclass(frozen=True)
class FeedConfig:
    """The change feed (``sync {cursor}``): how long its rows are kept."""

    #: Changes older than this are deleted; a cursor from before them is refused as expired. 0: kept for ever.
    retention: Duration = Duration(30 * 86400)
    #: How often a node deletes expired changes (in batches; several nodes doing it is harmless).
    prune_interval: Duration = Duration(3600)
    #: How often the feed's consumers (webhooks, push: the outbox) look for changes committed by another
    #: process (another node, ``umoc-admin``); changes made on the node that tails them are read at once.
    consumer_poll_interval: Duration = Duration(1)
    #: After a read, how long changes made here gather before the next read (one read for many: each costs
    #: a few queries and a thread hop, whatever its size).  0: read at every commit.
    consumer_wake_delay: Duration = Duration(0.05)
    #: How long a node tails a consumer without renewing its lease; when it dies, another takes over after this.
    consumer_lease: Duration = Duration(30)
    #: Changes a consumer reads at a time.
    consumer_batch: int = 100


@dataclass(frozen=True)
class RegistrationConfig:
    """Who may create an account with ``POST /api/register``."""

    #: ``open`` (anyone), ``closed`` (nobody; administrators create accounts) or ``invite`` (an invite
    #: code from an administrator).  Set at run time with ``umoc-admin registration``, the database's
    #: value overrides this one on every node.
    mode: str = "open"


@dataclass(frozen=True)
class PasswordAuthConfig:
    """Accounts with a UMOC password: ``POST /api/register`` and ``/api/login``."""

    enabled: bool = True


@dataclass(frozen=True)
class JwtClaimsConfig:
    """Which claims of a token name the user: its stable subject, its username, its display name."""

    subject: str = "sub"
    username: str = "preferred_username"
    display_name: str = "name"


#: Algorithms a token may be signed with (``auth.jwt.algorithms``); ``none`` is never one.
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256")


@dataclass(frozen=True)
class JwtAuthConfig:
    """Tokens signed by the operator's own identity provider or backend, accepted at CONNECT.

    The key is ``hmac_secret`` (HS256), a PEM ``public_key_file`` or a ``jwks_url``
    (RS256, ES256, EdDSA ...); an HMAC secret only ever verifies HS* tokens and a
    public key only asymmetric ones, so one can never stand in for the other.
    """

    enabled: bool = False
    #: The identity provider's JSON Web Key Set, fetched through the trusted outbound agent and cached.
    jwks_url: str = ""
    #: The shared secret of HS256 tokens (at least 32 characters); ``hmac_secret_file`` names a file instead.
    #: An algorithm in ``algorithms`` whose kind of key is not configured is refused.
    hmac_secret: str = ""
    hmac_secret_file: str = ""
    #: A PEM public key (RSA, EC or Ed25519) verifying every asymmetric token.
    public_key_file: str = ""
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA", "HS256")
    #: The ``iss`` every token must carry; users are found by (issuer, subject).
    issuer: str = ""
    #: The ``aud`` every token must name.
    audience: str = "umoc"
    #: Clock skew allowed on ``exp``, ``nbf`` and ``iat``.
    leeway: Duration = Duration(30)
    #: How long fetched keys are used before they are fetched again; an unknown ``kid`` refetches them at most
    #: once in this long.
    jwks_refresh: Duration = Duration(600)
    claims: JwtClaimsConfig = field(default_factory=JwtClaimsConfig)
    #: Create a user at the first valid token of an unknown subject (false: only users made by the server API).
    auto_create_users: bool = True


#: How UMOC may authenticate at an OIDC provider's token endpoint (``auth.oidc.token_endpoint_auth_method``).
OIDC_TOKEN_AUTH_METHODS = ("auto", "client_secret_basic", "client_secret_post")


@dataclass(frozen=True)
class OidcAuthConfig:
    """Sign-in with an OpenID Connect provider (authorization code with PKCE) for the web client."""

    enabled: bool = False
    #: The provider's issuer URL; ``<issuer>/.well-known/openid-configuration`` is read from it.
    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    #: A file whose content is ``client_secret``.
    client_secret_file: str = ""
    scopes: tuple[str, ...] = ("openid", "profile")
    #: This server's callback as registered at the provider: ``https://HOST/api/oidc/callback``.
    redirect_url: str = ""
    #: How the client proves itself at the token endpoint: ``auto`` (``client_secret_basic`` unless the
    #: discovery document lists only ``client_secret_post`` of the two), ``client_secret_basic`` or
    #: ``client_secret_post``.  Without a ``client_secret``: a public client, whatever this says.
    token_endpoint_auth_method: str = "auto"


@dataclass(frozen=True)
class TotpAuthConfig:
    """Time-based one-time codes (RFC 6238) as a second factor of password accounts."""

    #: Users may turn TOTP on (``/api/account/totp/...``); off, no new setups (logins of users who have it
    #: still need codes).
    enabled: bool = True


@dataclass(frozen=True)
class AuthConfig:
    """How users prove who they are: UMOC passwords, and tokens from the operator's identity provider."""

    password: PasswordAuthConfig = field(default_factory=PasswordAuthConfig)
    jwt: JwtAuthConfig = field(default_factory=JwtAuthConfig)
    oidc: OidcAuthConfig = field(default_factory=OidcAuthConfig)
    totp: TotpAuthConfig = field(default_factory=TotpAuthConfig)


@dataclass(frozen=True)
class EngineIOConfig:
    """Engine.IO transport settings, announced to clients in the OPEN packet."""

    ping_interval: Duration = Duration(25)
    ping_timeout: Duration = Duration(20)
    max_payload: Size = Size(1_000_000)
    #: Bytes queued for one slow client before it is dropped.
    max_buffered: Size = Size(4 * 1024 * 1024)
    #: How long a socket may stay unauthenticated before it is closed.
    connect_timeout: Duration = Duration(45)
    max_sockets_per_session: int = 10
    max_sockets_per_ip: int = 200
    #: How long missed packets are kept for Socket.IO connection state recovery (0: off).
    recovery_window: Duration = Duration(0)


@dataclass(frozen=True)
class MessagesConfig:
    """Bounds on what one event may carry."""

    max_content_length: int = 10_000
    max_payload_depth: int = 16
    max_ids_per_receipt: int = 500
    #: ``encrypted_content`` is opaque ciphertext, relayed untouched; this bounds it.
    max_encrypted_length: int = 65_536
    max_group_members: int = 256
    #: How long after sending a sender may edit a message; 0 means no limit.
    edit_window: Duration = Duration(86400)
    #: How long a ``client_msg_id`` stays the sender's: a retry within it is answered as a duplicate.
    idempotency_window: Duration = Duration(86400)
    #: Fetch the first http(s) URL of a text message (through the guarded outbound agent) and send
    #: ``message_preview`` with its title, description, site name and image.
    link_previews: bool = True
    #: Pinned messages one chat may hold (``pin_message`` past it is refused).
    max_pins: int = 50
    #: Bytes of an ``extra`` object (compact JSON) on a message, a profile or a group.
    max_extra_bytes: int = 4096


BLOCKLIST_ACTIONS = ("reject", "mask")


@dataclass(frozen=True)
class BlocklistConfig:
    """Words and regular expressions refused (or masked) in what users send; empty: no check at all."""

    #: Whole words, case-insensitive (``"spam"`` does not match ``"spammer"``).
    words: tuple[str, ...] = ()
    #: Python regular expressions, searched case-insensitively anywhere in the text.
    regexes: tuple[str, ...] = ()
    #: ``reject`` refuses the message; ``mask`` stores it with each match replaced by ``*``.
    action: str = "reject"


@dataclass(frozen=True)
class NewAccountsConfig:
    """What accounts younger than ``age`` may not do yet (0: no limits)."""

    age: Duration = Duration(0)
    no_links: bool = False
    no_uploads: bool = False


HOOK_FAILURE_ACTIONS = ("allow", "reject")


@dataclass(frozen=True)
class BeforeMessageHookConfig:
    """A POST to the operator's service before each message is stored; empty ``url``: no hook."""

    url: str = ""
    secret: str = ""
    #: How long the answer may take; past it (or on any failure) ``on_failure`` decides.
    timeout: Duration = Duration(1.5)
    #: ``allow``: store the message unchecked; ``reject``: refuse it.
    on_failure: str = "allow"


@dataclass(frozen=True)
class HooksConfig:
    before_message: BeforeMessageHookConfig = field(default_factory=BeforeMessageHookConfig)


@dataclass(frozen=True)
class ModerationConfig:
    blocklist: BlocklistConfig = field(default_factory=BlocklistConfig)
    new_accounts: NewAccountsConfig = field(default_factory=NewAccountsConfig)


@dataclass(frozen=True)
class RetentionConfig:
    """How long messages are kept (issue 31): the server's default; a group's admins may set their own."""

    #: Messages (and their files) older than this are purged, unless their sender is on legal hold or
    #: their group has a retention of its own. 0: kept for ever.
    messages: Duration = Duration(0)
    #: How often a node runs the purge (in batches; several nodes doing it is harmless).
    purge_interval: Duration = Duration(3600)
    #: Messages purged per transaction (one chat's at a time).
    batch: int = 500


@dataclass(frozen=True)
class GroupsConfig:
    """Bounds on groups beyond ``messages.max_group_members`` (issue 29)."""

    #: Members of one group other than a broadcast, the creator included (DESIGN's name; 0: unset, the
    #: older ``messages.max_group_members`` bounds it, 256 by default).
    max_members: int = 0
    #: Members of one ``broadcast`` group (a message to it is O(1) rows whatever this is).
    max_members_broadcast: int = 100_000
    #: Who may create a ``public`` group (or make one public): ``all`` users, or server ``admins`` only.
    public_creation: str = "all"


@dataclass(frozen=True)
class ContactsConfig:
    """Who may reach whom (issue 29)."""

    #: True: direct messages, and adding someone to a group, need both users to be friends.  False
    #: (app-style chat, "message the seller"): anyone may message or add anyone who has not blocked them.
    require_friendship: bool = True


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``rate`` tokens per ``per`` seconds, holding up to ``burst``."""

    rate: float = 10.0
    per: Duration = Duration(1)
    burst: int = 30


def _rl(rate: float, per: float, burst: int) -> RateLimit:
    return RateLimit(rate=rate, per=Duration(per), burst=burst)


@dataclass(frozen=True)
class RateLimitsConfig:
    """One bucket per user (or per IP) and kind of action."""

    enabled: bool = True
    #: Client addresses or networks (``10.0.0.0/8``, ``203.0.113.7``), matched against the address as
    #: resolved through ``server.trusted_proxies``, that skip the limits keyed by address alone
    #: (``login``, ``register``, ``connect``, ``engineio.max_sockets_per_ip``): a company behind one NAT.
    #: Limits keyed by user or account still apply (``connect`` is then taken per user).
    trusted_networks: tuple[str, ...] = ()
    messages: RateLimit = field(default_factory=lambda: _rl(10, 1, 30))
    typing: RateLimit = field(default_factory=lambda: _rl(5, 1, 10))
    reads: RateLimit = field(default_factory=lambda: _rl(20, 1, 60))
    search: RateLimit = field(default_factory=lambda: _rl(5, 1, 20))
    contacts: RateLimit = field(default_factory=lambda: _rl(10, 60, 20))
    uploads: RateLimit = field(default_factory=lambda: _rl(10, 60, 20))
    events: RateLimit = field(default_factory=lambda: _rl(50, 1, 100))
    login: RateLimit = field(default_factory=lambda: _rl(10, 60, 10))
    login_name: RateLimit = field(default_factory=lambda: _rl(5, 300, 5))
    login_account: RateLimit = field(default_factory=lambda: _rl(10, 300, 10))
    register: RateLimit = field(default_factory=lambda: _rl(5, 3600, 10))
    connect: RateLimit = field(default_factory=lambda: _rl(30, 60, 60))
    export: RateLimit = field(default_factory=lambda: _rl(5, 3600, 5))
    #: Per user: ``report`` (a report costs a moderator's time).
    reports: RateLimit = field(default_factory=lambda: _rl(5, 3600, 20))


#: Every rate-limit bucket a route or an edge may name (``ratelimits.<name>``).
RATE_CLASSES: tuple[str, ...] = tuple(f.name for f in fields(RateLimitsConfig) if f.type in ("RateLimit", RateLimit))


def _default_allowed_types() -> dict[str, tuple[str, ...]]:
    return {
        "image": ("image/jpeg", "image/png", "image/gif", "image/webp"),
        "video": ("video/mp4", "video/webm", "video/quicktime"),
        "audio": ("audio/mpeg", "audio/ogg", "audio/wav", "audio/webm", "audio/mp4"),
        "file": (
            "application/pdf",
            "application/zip",
            "text/plain",
            "application/octet-stream",
        ),
    }


@dataclass(frozen=True)
class UploadsConfig:
    """File sharing."""

    #: Directory for stored files; relative paths are under server.data_dir.
    directory: str = "uploads"
    max_size: Size = Size(25 * 1024 * 1024)
    expires_in: Duration = Duration(3600)
    max_file_name: int = 255
    cleanup_interval: Duration = Duration(300)
    #: MIME types allowed, by the message type they become.
    allowed_types: dict[str, tuple[str, ...]] = field(default_factory=_default_allowed_types)
    #: Images with more pixels than this (by their header) get no thumbnail: decompression bombs.
    max_image_pixels: int = 50_000_000
    #: Images decoded for thumbnails at once, each in a thread of the reactor's pool.
    thumbnail_threads: int = 2


@dataclass(frozen=True)
class WebClientConfig:
    """The browser client served at ``/`` (umoc/webclient)."""

    #: Serve the web client's page and files at the site root; false: ``/`` answers JSON 404.
    enabled: bool = True
    #: Origins the page may connect to besides its own (its CSP ``connect-src``), e.g.
    #: "wss://chat.example.com"; empty: only the server's own origin (http and ws alike).
    connect_src: tuple[str, ...] = ()


#: Webhook event kinds an entry of ``webhooks`` may ask for.
WEBHOOK_EVENTS = (
    "message.created",
    "message.edited",
    "message.deleted",
    "user.registered",
    "contact.accepted",
    "group.member_added",
    "group.updated",
    "group.member_removed",
    "group.member_role_changed",
    "group.member_banned",
    "group.member_muted",
    "group.join_requested",
    "report.created",
    "report.resolved",
)


@dataclass(frozen=True)
class PushConfig:
    """Push notifications to users with no socket anywhere: Web Push, and Matrix push gateways (Sygnal)."""

    #: Matrix push gateways by name (``default`` serves registrations that name none): the base URL,
    #: ``/_matrix/push/v1/notify`` is appended.  Clients name a gateway, never give its URL.
    gateways: dict[str, str] = field(default_factory=dict)
    #: Whether a push carries the message text; otherwise who wrote, in which chat, and the unread count.
    include_content: bool = False
    #: Wait this long before pushing; nothing is sent if the user came online or read it meanwhile.
    delay: Duration = Duration(0)
    #: The VAPID ``sub`` claim (RFC 8292): how a push service can reach the operator.
    vapid_subject: str = "mailto:admin@localhost"
    #: A PEM file with the VAPID private key (all nodes must use one key); empty: the node generates one
    #: in ``<data_dir>/vapid_private.pem`` on first start.
    vapid_private_key_file: str = ""
    #: Longest one push request may take.
    timeout: Duration = Duration(10)
    #: Push requests in flight at once (per node); a quarter of them at most for one user or one host.
    concurrency: int = 20
    #: Pushes waiting for a free slot; beyond this new pushes are dropped and counted.  One user or
    #: one host may fill a quarter of it, so nobody's dead endpoints take everyone's room.
    queue_size: int = 10_000
    #: The bytes those waiting pushes may hold (each counts its text and endpoint), shared the same way.
    queue_bytes: Size = Size(16 * 1024 * 1024)
    #: Accept ``http://`` Web Push endpoints (development and tests only: real push services use https).
    allow_insecure_endpoints: bool = False
    #: Attempts per push (the first included) when the push service fails (no answer, an error status
    #: other than 404/410); retried after ``backoff``, doubled up to ``max_backoff``.
    max_attempts: int = 4
    backoff: Duration = Duration(1)
    max_backoff: Duration = Duration(60)


@dataclass(frozen=True)
class WebhookConfig:
    """One integration: where to POST, the HMAC secret, and the event kinds it wants."""

    url: str = ""
    secret: str = ""
    #: A file holding the secret instead.
    secret_file: str = ""
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebhookDeliveryConfig:
    """How webhooks are delivered: timeouts, retries and the queue."""

    timeout: Duration = Duration(10)
    #: Attempts per delivery (the first included) before it becomes a logged dead letter.
    max_attempts: int = 6
    #: Wait before the first retry; doubled for each one after, up to ``max_backoff``.
    backoff: Duration = Duration(1)
    max_backoff: Duration = Duration(300)
    #: Deliveries in flight at once (per node), shared equally among the webhooks.
    concurrency: int = 10
    #: Deliveries waiting for a slot or a retry, shared equally among the webhooks; beyond a
    #: webhook's share its new deliveries are dropped (logged and counted), the others' are not.
    queue_size: int = 10_000
    #: The bytes of the bodies those waiting deliveries hold, shared the same way.
    queue_bytes: Size = Size(16 * 1024 * 1024)


@dataclass(frozen=True)
class OutboundConfig:
    """What every outbound request (Web Push, push gateways, webhooks) may reach and read."""

    #: Addresses or networks (``10.1.0.0/16``, ``127.0.0.1``, ``fd00::/8``) that client-chosen URLs (Web Push
    #: endpoints) may reach although they are loopback, private, link-local and the like.  Never names: a
    #: name's addresses are the name owner's to change.
    allowed_hosts: tuple[str, ...] = ()
    #: Most bytes of an answer's body read (as received: a compressed body is never inflated).
    max_answer_body: Size = Size(64 * 1024)
    #: Most bytes of an answer's status line and headers read.
    max_answer_headers: Size = Size(16 * 1024)


@dataclass(frozen=True)
class PreviewsConfig:
    """Link previews (``messages.link_previews``): how they are fetched and how long they are kept."""

    #: How long a URL's fetch (or its failure) is reused before the URL is fetched again.
    ttl: Duration = Duration(86400)
    #: The whole fetch of a page, redirects included; the image has as long again.
    timeout: Duration = Duration(10)
    #: Most bytes of a page read; a larger page has no preview.
    max_page_size: Size = Size(1024 * 1024)
    #: Most bytes of a page's image read; a larger image is left out of the preview.
    max_image_size: Size = Size(5 * 1024 * 1024)
    #: Redirects followed, each checked again against the outbound address policy.
    max_redirects: int = 3


@dataclass(frozen=True)
class LoggingConfig:
    """What ``twistd umoc`` logs, and how each line looks."""

    #: The least severe level written: debug, info, warn or error.
    level: str = "info"
    #: ``text`` (Twisted's usual lines) or ``json`` (one object per line, for log shippers).
    format: str = "text"


LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    engineio: EngineIOConfig = field(default_factory=EngineIOConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    groups: GroupsConfig = field(default_factory=GroupsConfig)
    contacts: ContactsConfig = field(default_factory=ContactsConfig)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    ratelimits: RateLimitsConfig = field(default_factory=RateLimitsConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    web_client: WebClientConfig = field(default_factory=WebClientConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    push: PushConfig = field(default_factory=PushConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    webhook_delivery: WebhookDeliveryConfig = field(default_factory=WebhookDeliveryConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    previews: PreviewsConfig = field(default_factory=PreviewsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def uploads_path(self) -> Path:
        return self.data_path / self.uploads.directory

    @property
    def group_member_cap(self) -> int:
        """Members of one group but a broadcast: ``groups.max_members``, else ``messages.max_group_members``."""
        if self.groups.max_members:
            return self.groups.max_members
        return self.messages.max_group_members

    @property
    def max_plain_body(self) -> int:
        """The largest request body any endpoint but uploads accepts (JSON API, Engine.IO polling)."""
        return max(self.server.max_body, self.engineio.max_payload)


def _type_name(tp: Any) -> str:
    names = {
        Duration: 'a duration like "30s" or "7d"',
        Size: 'a size like "512K" or "25M"',
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a string",
    }
    return names.get(tp, getattr(tp, "__name__", str(tp)))


_UNIT_PARSERS: dict[type, Any] = {Duration: parse_duration, Size: parse_size}


def _convert(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """Check and convert one YAML value against a dataclass field type."""
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, path, problems)
    if tp in _UNIT_PARSERS:
        try:
            return tp(_UNIT_PARSERS[tp](value))
        except ValueError as exc:
            problems.append(f"Error in configuration at '{path}': {exc}")
            return None
    if origin is tuple:
        if not isinstance(value, list):
            problems.append(f"Error in configuration at '{path}': expected a list")
            return None
        (item_type, _ellipsis) = typing.get_args(tp)
        return tuple(_convert(v, item_type, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"Error in configuration at '{path}': expected a mapping")
            return None
        key_type, value_type = typing.get_args(tp)
        return {
            _convert(k, key_type, f"{path}", problems): _convert(v, value_type, f"{path}.{k}", problems)
            for k, v in value.items()
        }
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config type at {path}")
    ok = isinstance(value, tp) and not (tp is not bool and isinstance(value, bool))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        problems.append(f"Error in configuration at '{path}': expected {_type_name(tp)}, got {value!r}")
        return None
    return value


def _build(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    """Build dataclass ``cls`` from a mapping, recording every problem found."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        where = f"at '{path}'" if path else "at the top level"
        problems.append(f"Error in configuration {where}: expected a mapping")
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in known:
            problems.append(f"Error in configuration at '{key_path}': unknown key")
            continue
        converted = _convert(value, hints[key], key_path, problems)
        if converted is not None:
            kwargs[key] = converted
    return cls(**kwargs)


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: a TCP host and port, or a Unix socket path."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""
    db: int = 0
    password: str | None = None


def parse_redis_url(url: str) -> RedisTarget:
    """``redis://[:password@]host[:port][/db]`` or ``unix:/path/to/redis.sock[?db=N]``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        db = parse_qs(parts.query).get("db", ["0"])[0]
        return RedisTarget(path=parts.path, db=int(db))
    if parts.scheme != "redis":
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    path = parts.path.strip("/")
    return RedisTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(path) if path else 0,
        password=unquote(parts.password) if parts.password else None,
    )


def parse_host_port(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:26379"`` for IPv6) -> ``(host, port)``: where a sentinel listens."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _redis_url_ok(url: str) -> bool:
    try:
        parse_redis_url(url)
    except ValueError:
        return False
    return True


def _check_sentinels(redis: RedisConfig) -> list[str]:
    """``redis.sentinels`` and its companions: one way to find Redis, each sentinel a HOST:PORT."""
    problems = []
    if redis.url and redis.sentinels:
        problems.append("Error in configuration at 'redis.sentinels': expected either redis.url or redis.sentinels")
    for i, entry in enumerate(redis.sentinels):
        try:
            parse_host_port(entry)
        except ValueError:
            problems.append(f"Error in configuration at 'redis.sentinels[{i}]': expected \"HOST:PORT\"")
    if redis.sentinels and not redis.master_name:
        problems.append("Error in configuration at 'redis.master_name': expected the name the sentinels monitor")
    if redis.password and not redis.sentinels:
        problems.append(
            "Error in configuration at 'redis.password': only with redis.sentinels (put it in redis.url otherwise)"
        )
    return problems


def _check_jwt(jwt: JwtAuthConfig) -> list[str]:
    """``auth.jwt``: an issuer, an audience, known algorithms, and a key for each kind of algorithm allowed."""
    if not jwt.enabled:
        return []
    problems = []

    def bad(key: str, text: str) -> None:
        problems.append(f"Error in configuration at 'auth.jwt.{key}': {text}")

    if not jwt.issuer:
        bad("issuer", "expected the issuer (iss) the tokens carry")
    if not jwt.audience:
        bad("audience", "expected the audience (aud) the tokens name")
    unknown = [a for a in jwt.algorithms if a not in JWT_ALGORITHMS]
    if unknown or not jwt.algorithms:
        bad("algorithms", "expected a list of " + ", ".join(JWT_ALGORITHMS))
    # An algorithm whose kind of key is not configured is simply never accepted; one key is needed.
    if not (jwt.hmac_secret or jwt.jwks_url or jwt.public_key_file):
        bad("jwks_url", "expected jwks_url, public_key_file or hmac_secret")
    if jwt.hmac_secret and len(jwt.hmac_secret) < 32:
        bad("hmac_secret", "expected a secret of at least 32 characters")
    if jwt.jwks_url and jwt.public_key_file:
        bad("public_key_file", "set jwks_url or public_key_file, not both")
    if jwt.jwks_url and not jwt.jwks_url.startswith(("http://", "https://")):
        bad("jwks_url", 'expected a URL "https://..."')
    if jwt.public_key_file and not os.access(jwt.public_key_file, os.R_OK):
        bad("public_key_file", f"cannot read {jwt.public_key_file}")
    if jwt.leeway < 0:
        bad("leeway", "expected a duration, 0 or more")
    if jwt.jwks_refresh <= 0:
        bad("jwks_refresh", "expected a positive duration")
    for key in ("subject", "username", "display_name"):
        if not getattr(jwt.claims, key):
            bad(f"claims.{key}", "expected a claim name")
    return problems


def _check_oidc(oidc: OidcAuthConfig) -> list[str]:
    """``auth.oidc``: an issuer and a callback URL, a client id, and the openid scope."""
    if not oidc.enabled:
        return []
    problems = []

    def bad(key: str, text: str) -> None:
        problems.append(f"Error in configuration at 'auth.oidc.{key}': {text}")

    if not oidc.issuer.startswith(("https://", "http://")):
        bad("issuer", 'expected the provider\'s issuer URL "https://..."')
    if not oidc.client_id:
        bad("client_id", "expected the client id registered at the provider")
    if not oidc.redirect_url.startswith(("https://", "http://")) or not oidc.redirect_url.endswith(
        "/api/oidc/callback"
    ):
        bad("redirect_url", 'expected this server\'s callback "https://HOST/api/oidc/callback"')
    if "openid" not in oidc.scopes:
        bad("scopes", "expected a list with openid")
    if oidc.token_endpoint_auth_method not in OIDC_TOKEN_AUTH_METHODS:
        bad("token_endpoint_auth_method", "expected one of " + ", ".join(OIDC_TOKEN_AUTH_METHODS))
    return problems


def _check(config: Config) -> list[str]:
    """Rules that span fields: the ones a type alone cannot express."""
    problems = []

    def bad(path: str, text: str) -> None:
        problems.append(f"Error in configuration at '{path}': {text}")

    if config.database.dsn and not config.database.dsn.startswith(("postgresql://", "postgres://", "sqlite:")):
        bad("database.dsn", 'expected "postgresql://..." or "sqlite:PATH"')
    if config.database.pool_min < 1 or config.database.pool_max < config.database.pool_min:
        bad("database.pool_max", "expected 1 <= pool_min <= pool_max")
    if config.database.sqlite_synchronous not in ("full", "normal"):
        bad("database.sqlite_synchronous", "expected one of full, normal")
    if config.database.read_dsn:
        if not config.database.read_dsn.startswith(("postgresql://", "postgres://")):
            bad("database.read_dsn", 'expected "postgresql://..." (a streaming replica of database.dsn)')
        elif not config.database.dsn.startswith(("postgresql://", "postgres://")):
            bad("database.read_dsn", "a replica needs a PostgreSQL database.dsn (SQLite has none)")
    if config.database.read_max_lag < 2:
        bad("database.read_max_lag", "expected at least 2s (the replica's position is measured once a second)")
    for key in ("keepalives_idle", "keepalives_interval", "stuck_timeout"):
        if getattr(config.database, key) < 1:
            bad(f"database.{key}", "expected at least 1s")
    if config.database.keepalives_count < 1:
        bad("database.keepalives_count", "expected at least 1")
    if config.database.tcp_user_timeout < 0:
        bad("database.tcp_user_timeout", "expected a duration, 0 or more")
    if config.redis.url and not _redis_url_ok(config.redis.url):
        bad("redis.url", 'expected "redis://[:PASSWORD@]HOST[:PORT][/DB]" or "unix:/PATH[?db=N]"')
    problems.extend(_check_sentinels(config.redis))
    if config.redis.timeout <= 0:
        bad("redis.timeout", "expected a positive duration")
    if config.redis.presence_ttl < 3:
        bad("redis.presence_ttl", "expected at least 3s")
    if config.redis.bus_check_interval <= 0:
        bad("redis.bus_check_interval", "expected a positive duration")
    if config.feed.retention < 0:
        bad("feed.retention", "expected a duration, 0 to keep changes for ever")
    if config.feed.prune_interval <= 0:
        bad("feed.prune_interval", "expected a positive duration")
    if config.feed.consumer_poll_interval <= 0:
        bad("feed.consumer_poll_interval", "expected a positive duration")
    if config.feed.consumer_wake_delay < 0 or config.feed.consumer_wake_delay > config.feed.consumer_poll_interval:
        bad("feed.consumer_wake_delay", "expected a duration from 0 to feed.consumer_poll_interval")
    if config.feed.consumer_lease < 3 * config.feed.consumer_poll_interval:
        bad("feed.consumer_lease", "expected at least three times feed.consumer_poll_interval")
    if config.feed.consumer_batch < 1:
        bad("feed.consumer_batch", "expected at least 1")
    if config.push.max_attempts < 1:
        bad("push.max_attempts", "expected at least 1")
    if config.push.backoff <= 0 or config.push.max_backoff < config.push.backoff:
        bad("push.backoff", "expected a positive duration, no longer than push.max_backoff")
    if config.server.shutdown_timeout < 0:
        bad("server.shutdown_timeout", "expected a duration, 0 or more")
    if config.server.overload_wait < 0:
        bad("server.overload_wait", "expected a duration, 0 (off) or more")
    if config.server.overload_lag < 0:
        bad("server.overload_lag", "expected a duration, 0 (off) or more")
    if config.logging.level not in LOG_LEVELS:
        bad("logging.level", "expected one of " + ", ".join(LOG_LEVELS))
    if config.logging.format not in LOG_FORMATS:
        bad("logging.format", "expected one of " + ", ".join(LOG_FORMATS))
    if config.sessions.max_per_user < 1:
        bad("sessions.max_per_user", "expected at least 1")
    if config.sessions.ttl <= 0:
        bad("sessions.ttl", "expected a positive duration")
    if config.sessions.check_interval <= 0:
        bad("sessions.check_interval", "expected a positive duration")
    problems.extend(_check_jwt(config.auth.jwt))
    problems.extend(_check_oidc(config.auth.oidc))
    if config.registration.mode not in ("open", "closed", "invite"):
        bad("registration.mode", "expected one of open, closed, invite")
    if config.engineio.ping_interval <= 0 or config.engineio.ping_timeout <= 0:
        bad("engineio.ping_interval", "ping_interval and ping_timeout must be positive")
    if config.engineio.max_payload < 1024:
        bad("engineio.max_payload", "expected at least 1K")
    if config.messages.idempotency_window <= 0:
        bad("messages.idempotency_window", "expected a positive duration")
    if config.groups.max_members_broadcast < 1:
        bad("groups.max_members_broadcast", "expected at least 1")
    if config.groups.max_members < 0:
        bad("groups.max_members", "expected at least 1 (0: messages.max_group_members)")
    if config.groups.public_creation not in ("all", "admins"):
        bad("groups.public_creation", "expected one of all, admins")
    if config.retention.messages < 0:
        bad("retention.messages", "expected a duration, 0 to keep messages for ever")
    if config.retention.purge_interval <= 0:
        bad("retention.purge_interval", "expected a positive duration")
    if not 1 <= config.retention.batch <= 5000:
        bad("retention.batch", "expected 1 to 5000")
    if config.messages.max_content_length < 1:
        bad("messages.max_content_length", "expected at least 1")
    if config.previews.ttl <= 0 or config.previews.timeout <= 0:
        bad("previews.ttl", "previews.ttl and previews.timeout must be positive")
    if config.previews.max_redirects < 0:
        bad("previews.max_redirects", "expected 0 or more")
    if config.uploads.max_image_pixels < 1:
        bad("uploads.max_image_pixels", "expected at least 1")
    if config.uploads.thumbnail_threads < 1:
        bad("uploads.thumbnail_threads", "expected at least 1")
    if not 2 <= config.messages.max_extra_bytes <= 1_000_000:
        bad("messages.max_extra_bytes", "expected 2 to 1000000")
    if config.messages.max_pins < 1:
        bad("messages.max_pins", "expected at least 1")
    blocklist = config.moderation.blocklist
    if blocklist.action not in BLOCKLIST_ACTIONS:
        bad("moderation.blocklist.action", "expected reject or mask")
    for i, word in enumerate(blocklist.words):
        if not word.strip():
            bad(f"moderation.blocklist.words[{i}]", "expected a word, not an empty string")
    for i, pattern in enumerate(blocklist.regexes):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            bad(f"moderation.blocklist.regexes[{i}]", f"not a regular expression: {exc}")
            continue
        if compiled.search(""):
            bad(f"moderation.blocklist.regexes[{i}]", "matches the empty string (it would match every message)")
    before = config.hooks.before_message
    if before.url:
        if not before.url.startswith(("http://", "https://")):
            bad("hooks.before_message.url", 'expected "https://..." (or "http://...")')
        if len(before.secret) < 16:
            bad("hooks.before_message.secret", "expected at least 16 characters (it signs each request)")
        if before.timeout <= 0:
            bad("hooks.before_message.timeout", "expected a positive duration")
        if before.on_failure not in HOOK_FAILURE_ACTIONS:
            bad("hooks.before_message.on_failure", "expected allow or reject")
    if config.moderation.new_accounts.age < 0:
        bad("moderation.new_accounts.age", "expected a duration, 0 or more")
    for name, url in config.push.gateways.items():
        if not url.startswith(("http://", "https://")):
            bad(f"push.gateways.{name}", 'expected a URL "https://HOST[:PORT]"')
    if not config.push.vapid_subject.startswith(("mailto:", "https://")):
        bad("push.vapid_subject", 'expected "mailto:ADDRESS" or "https://..."')
    for path, value in (
        ("push.concurrency", config.push.concurrency),
        ("push.queue_size", config.push.queue_size),
        ("webhook_delivery.concurrency", config.webhook_delivery.concurrency),
        ("webhook_delivery.queue_size", config.webhook_delivery.queue_size),
        ("push.queue_bytes", config.push.queue_bytes),
        ("webhook_delivery.queue_bytes", config.webhook_delivery.queue_bytes),
        ("webhook_delivery.max_attempts", config.webhook_delivery.max_attempts),
    ):
        if value < 1:
            bad(path, "expected at least 1")
    if config.push.timeout <= 0 or config.webhook_delivery.timeout <= 0:
        bad("push.timeout", "push.timeout and webhook_delivery.timeout must be positive")
    for i, hook in enumerate(config.webhooks):
        if not hook.url.startswith(("http://", "https://")):
            bad(f"webhooks[{i}].url", 'expected a URL "https://..."')
        if len(hook.secret) < 16:
            bad(f"webhooks[{i}].secret", "expected a secret of at least 16 characters")
        unknown = [kind for kind in hook.events if kind not in WEBHOOK_EVENTS]
        if unknown or not hook.events:
            bad(f"webhooks[{i}].events", "expected a list of " + ", ".join(WEBHOOK_EVENTS))
    for i, entry in enumerate(config.server.trusted_proxies):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            bad(f"server.trusted_proxies[{i}]", 'expected an IP address or network like "10.0.0.5" or "172.16.0.0/12"')
    for i, entry in enumerate(config.ratelimits.trusted_networks):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            bad(f"ratelimits.trusted_networks[{i}]", 'expected an IP address or network like "10.0.0.0/8"')
    for i, entry in enumerate(config.outbound.allowed_hosts):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            bad(
                f"outbound.allowed_hosts[{i}]",
                'expected an IP address or network like "10.1.0.0/16" (names are not accepted)',
            )
    for path, value in (
        ("outbound.max_answer_body", config.outbound.max_answer_body),
        ("outbound.max_answer_headers", config.outbound.max_answer_headers),
    ):
        if not 1024 <= value <= 16 * 1024 * 1024:
            bad(path, "expected a size from 1K to 16M")
    for i, origin in enumerate(config.web_client.connect_src):
        if not _CSP_ORIGIN.fullmatch(origin):
            bad(
                f"web_client.connect_src[{i}]",
                'expected an origin like "wss://chat.example.com" or "https://api.example.com:8443"',
            )
    for kind in config.uploads.allowed_types:
        if kind not in ("image", "video", "audio", "file"):
            bad(f"uploads.allowed_types.{kind}", "expected one of image, video, audio, file")
    if config.sessions.password_queue < 1:
        bad("sessions.password_queue", "expected at least 1")
    if config.sessions.trusted_client_ttl <= 0:
        bad("sessions.trusted_client_ttl", "expected a positive duration")
    for f in dataclasses.fields(RateLimitsConfig):
        limit = getattr(config.ratelimits, f.name)
        if isinstance(limit, RateLimit) and (limit.rate <= 0 or limit.burst < 1 or limit.per <= 0):
            bad(f"ratelimits.{f.name}", "rate and per must be positive and burst at least 1")
    return problems


#: (section, key) of every secret with a ``<key>_file`` twin; ``webhooks`` entries have ``secret_file``.
SECRET_FILES: tuple[tuple[str, str], ...] = (
    ("database", "dsn"),
    ("database", "read_dsn"),
    ("metrics", "token"),
    ("redis", "url"),
)


def read_secret_file(path: str) -> str:
    """A secret file's content, without the trailing newline editors and ``echo`` add; `OSError` if unreadable."""
    with open(path, encoding="utf-8") as secret:
        text = secret.read()
    return text.rstrip("\r\n")


def _secret_from_file(value: str, file: str, path: str, problems: list[str]) -> str:
    """``value``, or the content of ``file`` when that is set (both set: a problem at ``path``)."""
    if not file:
        return value
    key = path.rsplit(".", 1)[-1]
    if value:
        problems.append(f"Error in configuration at '{path}_file': set {key} or {key}_file, not both")
        return value
    try:
        secret = read_secret_file(file)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append(f"Error in configuration at '{path}_file': cannot read {file}: {why}")
        return value
    if not secret:
        problems.append(f"Error in configuration at '{path}_file': {file} is empty")
    return secret


def _read_secret_files(config: Config, problems: list[str]) -> Config:
    """`config` with every ``*_file`` secret read into its key."""
    changes: dict[str, Any] = {}
    for section, key in SECRET_FILES:
        part = changes.get(section, getattr(config, section))  # a section may have several secrets
        value = _secret_from_file(getattr(part, key), getattr(part, f"{key}_file"), f"{section}.{key}", problems)
        changes[section] = dataclasses.replace(part, **{key: value})
    changes["webhooks"] = tuple(
        dataclasses.replace(
            hook, secret=_secret_from_file(hook.secret, hook.secret_file, f"webhooks[{i}].secret", problems)
        )
        for i, hook in enumerate(config.webhooks)
    )
    jwt = config.auth.jwt
    secret = _secret_from_file(jwt.hmac_secret, jwt.hmac_secret_file, "auth.jwt.hmac_secret", problems)
    oidc = config.auth.oidc
    client_secret = _secret_from_file(oidc.client_secret, oidc.client_secret_file, "auth.oidc.client_secret", problems)
    changes["auth"] = dataclasses.replace(
        config.auth,
        jwt=dataclasses.replace(jwt, hmac_secret=secret),
        oidc=dataclasses.replace(oidc, client_secret=client_secret),
    )
    key_file = config.push.vapid_private_key_file
    if key_file and not os.access(key_file, os.R_OK):
        problems.append(f"Error in configuration at 'push.vapid_private_key_file': cannot read {key_file}")
    return dataclasses.replace(config, **changes)


#: ``${VAR}``, ``${VAR:-default}``, or ``$${`` (a literal ``${``).
_ENV_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_environment(data: Any, environ: Mapping[str, str], path: str = "") -> tuple[Any, list[str]]:
    """``data`` (parsed YAML) with ``${VAR}`` and ``${VAR:-default}`` replaced in every string value.

    ``:-`` takes the default when the variable is unset or empty, as in the
    shell; an unset variable without a default is a problem.  A value that
    is one reference alone is read as a YAML scalar after substitution, so
    ``pool_max: ${POOL_MAX:-5}`` is a number.  Keys are never substituted.
    Returns the new data and the problems found.
    """
    problems: list[str] = []

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value

        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            found = environ.get(name, "")
            if found:
                return found
            if default is not None:
                return default
            if name in environ:
                return ""
            problems.append(
                f"Error in configuration at '{where}': environment variable {name} is not set"
                f" (write ${{{name}:-DEFAULT}} to give a default)"
            )
            return ""

        result = _ENV_REFERENCE.sub(one, value)
        if _ENV_REFERENCE.fullmatch(value) and value != "$${":
            try:
                scalar = yaml.safe_load(result) if result else ""
            except yaml.YAMLError:
                return result
            if isinstance(scalar, (bool, int, float)):
                return scalar
        return result

    return walk(data, path), problems


def parse_config(data: Any) -> Config:
    """Build a `Config` from already-parsed YAML; raise `ConfigError` listing every problem.

    ``*_file`` secrets are read here, so that a configuration given as data
    (tests, ``umoc-admin``) is resolved like a file.
    """
    problems: list[str] = []
    config = _build(Config, data, "", problems)
    if not problems:
        config = _read_secret_files(config, problems)
    if not problems:
        problems.extend(_check(config))
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path | None) -> Config:
    """Read ``path`` (or nothing: all defaults) into a `Config`."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"Cannot read configuration file {path}: {exc.strerror}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"Configuration file {path} is not valid YAML: {exc}"]) from exc
    data, problems = substitute_environment(data, os.environ)
    if problems:
        raise ConfigError(problems)
    return parse_config(data)


def with_overrides(config: Config, **sections: dict[str, Any]) -> Config:
    """Return ``config`` with some fields of some sections replaced (command-line overrides)."""
    changes = {
        name: dataclasses.replace(getattr(config, name), **values) for name, values in sections.items() if values
    }
    return dataclasses.replace(config, **changes)


#: The environment variable ``twistd umoc`` and ``umoc-admin`` both read for the data directory.
DATA_DIR_ENV = "UMOC_DATA_DIR"


def data_dir_override(given: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The data directory the command line or the environment names, else None (``server.data_dir`` stands).

    ``--data-dir`` wins over ``UMOC_DATA_DIR``, which wins over the file:
    the server and ``umoc-admin`` call this same function, so the same unit
    file, container environment or shell finds the same database.
    """
    if given:
        return given
    value = (os.environ if environ is None else environ).get(DATA_DIR_ENV, "")
    return value or None
