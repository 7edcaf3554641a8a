"""Storage: the only package with SQL in it."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from umoc.config import Config
from umoc.storage.accounts import AccountStore
from umoc.storage.admin import AdminStore
from umoc.storage.arrivals import ArrivalStore
from umoc.storage.audit import AuditStore
from umoc.storage.bots import BotStore
from umoc.storage.contacts import ContactStore
from umoc.storage.database import Database, Deadline, Keepalives, Rules
from umoc.storage.deliveries import DeliveryStore
from umoc.storage.edits import EditStore
from umoc.storage.feed import FeedStore
from umoc.storage.files import FileStore
from umoc.storage.groups import GroupStore
from umoc.storage.identities import IdentityStore
from umoc.storage.joining import JoiningStore
from umoc.storage.mentions import MentionStore
from umoc.storage.messages import MessageStore
from umoc.storage.moderation import ModerationStore
from umoc.storage.outbox import OutboxStore
from umoc.storage.pins import PinStore
from umoc.storage.polls import PollStore
from umoc.storage.previews import PreviewStore
from umoc.storage.profiles import ProfileStore
from umoc.storage.push import PushStore
from umoc.storage.reactions import ReactionStore
from umoc.storage.readstate import ReadStateStore
from umoc.storage.replica import ReadRouter
from umoc.storage.reports import ReportStore
from umoc.storage.retention import RetentionStore
from umoc.storage.search import SearchStore
from umoc.storage.threads import ThreadStore
from umoc.storage.totp import TotpStore
from umoc.storage.users import UserStore

__all__ = ["Storage", "open_storage", "rules_of"]


class Storage:
    """One object per domain, all over one `Database`."""

    def __init__(self, db: Database, reads: ReadRouter | None = None, rules: Rules | None = None) -> None:
        """``rules``: the server's rules every transaction applies (`Rules`, from the configuration), set on
        ``db`` (None: leave the database's as they are, the defaults unless set before)."""
        self.db = db
        if rules is not None:
            db.rules = rules
        #: Where history, search, ``sync`` and exports are read: the replica when safe (``database.read_dsn``).
        self.reads = reads if reads is not None else ReadRouter(db)
        self.users = UserStore(db)
        self.contacts = ContactStore(db)
        self.messages = MessageStore(db, self.reads)
        self.groups = GroupStore(db)
        self.moderation = ModerationStore(db)
        self.joining = JoiningStore(db)
        self.files = FileStore(db)
        self.previews = PreviewStore(db)
        self.admin = AdminStore(db)
        self.audit = AuditStore(db)
        self.push = PushStore(db)
        self.bots = BotStore(db)
        self.edits = EditStore(db)
        self.reactions = ReactionStore(db)
        self.pins = PinStore(db)
        self.threads = ThreadStore(db)
        self.polls = PollStore(db)
        self.reports = ReportStore(db)
        self.retention = RetentionStore(db)
        self.mentions = MentionStore(db)
        self.deliveries = DeliveryStore(db)
        self.readstate = ReadStateStore(db)
        self.profiles = ProfileStore(db)
        self.feed = FeedStore(db, self.reads)
        self.arrivals = ArrivalStore(db)
        self.outbox = OutboxStore(db)
        self.search = SearchStore(db, reads=self.reads)
        self.accounts = AccountStore(db, self.reads)
        self.identities = IdentityStore(db)
        self.totp = TotpStore(db)

    @property
    def require_friendship(self) -> bool:
        """``contacts.require_friendship``, for checks made before any transaction (`umoc.domain.access`)."""
        return self.db.rules.require_friendship

    def ping(self) -> defer.Deferred[bool]:
        """For /healthz: can we run a query at all?"""
        return self.db.run("ping", lambda txn: txn.scalar("SELECT 1") == 1)

    def close(self) -> None:
        self.db.close()
        self.reads.close()


def open_storage(config: Config, clock: IReactorTime) -> Storage:
    """The configured database (SQLite under data_dir unless a PostgreSQL DSN is given), with its deadlines,
    and its replica (``database.read_dsn``) behind the `ReadRouter`."""
    cfg = config.database
    deadline = Deadline(clock, cfg.timeout, cfg.connect_timeout, cfg.stuck_timeout)
    keepalives = Keepalives(cfg.keepalives_idle, cfg.keepalives_interval, cfg.keepalives_count, cfg.tcp_user_timeout)
    db = Database.from_dsn(
        cfg.dsn, Path(config.server.data_dir), cfg.pool_min, cfg.pool_max, deadline, cfg.sqlite_synchronous, keepalives
    )
    replica = None
    if cfg.read_dsn:
        replica = Database.postgres(cfg.read_dsn, cfg.pool_min, cfg.pool_max, deadline=deadline, keepalives=keepalives)
    return Storage(db, ReadRouter(db, replica, clock, cfg.read_max_lag), rules_of(config))


def rules_of(config: Config) -> Rules:
    """The `Rules` the stores apply, from the configuration."""
    return Rules(
        require_friendship=config.contacts.require_friendship,
        public_admins_only=config.groups.public_creation == "admins",
        image_types=tuple(config.uploads.allowed_types.get("image", ())),
    )
