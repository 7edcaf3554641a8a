"""Event handlers, one module per domain; `ROUTE_GROUPS` feeds the router's table."""

from umoc.events import session

ROUTE_GROUPS = [session.ROUTES]
