"""Every handler module's ``ROUTES``: `ROUTE_GROUPS` feeds the router's one table."""

from umoc.events import chats, contacts, files, groups, messages, session, sync

ROUTE_GROUPS = [
    session.ROUTES,
    contacts.ROUTES,
    chats.ROUTES,
    messages.ROUTES,
    groups.ROUTES,
    files.ROUTES,
    sync.ROUTES,
]
