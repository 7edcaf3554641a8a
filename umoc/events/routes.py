"""Every handler module's ``ROUTES``: `ROUTE_GROUPS` feeds the router's one table."""

from umoc.events import chats, contacts, files, groups, messages, push, session, sync

ROUTE_GROUPS = [
    session.ROUTES,
    contacts.ROUTES,
    chats.ROUTES,
    messages.ROUTES,
    groups.ROUTES,
    files.ROUTES,
    sync.ROUTES,
    push.ROUTES,
]
