"""Every handler module's ``ROUTES``: `ROUTE_GROUPS` feeds the router's one table."""

from umoc.events import (
    account,
    chats,
    contacts,
    files,
    groups,
    messages,
    pins,
    polls,
    profiles,
    push,
    reactions,
    reports,
    search,
    session,
    sync,
)

ROUTE_GROUPS = [
    session.ROUTES,
    contacts.ROUTES,
    chats.ROUTES,
    messages.ROUTES,
    reactions.ROUTES,
    pins.ROUTES,
    polls.ROUTES,
    profiles.ROUTES,
    groups.ROUTES,
    files.ROUTES,
    sync.ROUTES,
    search.ROUTES,
    push.ROUTES,
    account.ROUTES,
    reports.ROUTES,
]
