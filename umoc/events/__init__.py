"""Event handlers, one module per domain; `ROUTE_GROUPS` feeds the router's table."""

from umoc.events import files, session

ROUTE_GROUPS = [session.ROUTES, files.ROUTES]
