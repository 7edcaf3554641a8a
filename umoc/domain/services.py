"""`Services`: everything a handler may use, built once by ``umoc.wiring``.

Handlers get it through their context and reach nothing else: no service
locator, no attribute swapped in after construction.  Whether presence,
rate limits and fan-out are local or go through Redis was decided when
this was built; handlers cannot tell and need not care.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from umoc.cluster.hub import Hub
from umoc.cluster.presence import Presence
from umoc.config import Config
from umoc.domain.accounts import Accounts
from umoc.domain.files import FileManager
from umoc.domain.hooks import BeforeMessageHook
from umoc.domain.identity import Identities
from umoc.domain.oidc import OidcSignIn
from umoc.domain.overload import WriteAdmission
from umoc.domain.previews import LinkPreviews
from umoc.domain.push import PushNotifier
from umoc.domain.sessions import SessionManager
from umoc.domain.webhooks import Webhooks
from umoc.metrics import Metrics
from umoc.ratelimit import Ratelimiter
from umoc.storage import Storage

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    config: Config
    clock: IReactorTime
    storage: Storage
    hub: Hub
    presence: Presence
    ratelimiter: Ratelimiter
    metrics: Metrics
    sessions: SessionManager
    files: FileManager
    push: PushNotifier
    webhooks: Webhooks
    accounts: Accounts
    #: Users signing in with a token from the operator's identity provider (``auth.jwt``).
    identities: Identities
    #: Sign-in with an OpenID Connect provider (``auth.oidc``).
    oidc: OidcSignIn
    #: Whether a new write may start now (``server.overload_wait``): the edges ask before any database work.
    admission: WriteAdmission
    #: Link previews (``messages.link_previews``); None where nothing is sent (``umoc-admin``).
    previews: LinkPreviews | None = None
    #: ``hooks.before_message``: None when no hook is configured (and in ``umoc-admin``, which sends nothing).
    before_message: BeforeMessageHook | None = None
