"""Event handlers, one module per domain; `ROUTE_GROUPS` feeds the router's table."""

from umoc.events import session, sync

ROUTE_GROUPS = [session.ROUTES, sync.ROUTES]
