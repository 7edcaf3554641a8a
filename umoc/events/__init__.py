"""Event handlers, one module per domain; `ROUTE_GROUPS` feeds the router's table."""

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
