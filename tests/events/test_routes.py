"""The route table is checked when it is built: a duplicate event or an unknown rate class stops start-up."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from umoc.config import RATE_CLASSES, RateLimitsConfig
from umoc.events.router import EventContext, Route, build_routes
from umoc.events.routes import ROUTE_GROUPS
from umoc.records.schema import SESSION_ID, Schema


async def _nothing(ctx: EventContext, payload: dict[str, Any]) -> None:
    return None


class BuildRoutesTests(unittest.TestCase):
    def test_every_route_names_a_configured_bucket(self) -> None:
        table = build_routes(ROUTE_GROUPS)
        limits = RateLimitsConfig()
        for route in table.values():
            self.assertIn(route.rate_class, RATE_CLASSES)
            self.assertTrue(hasattr(limits, route.rate_class), route.event)

    def test_an_unknown_rate_class_is_refused_when_the_table_is_built(self) -> None:
        typo = Route("make_noise", Schema(SESSION_ID), _nothing, rate_class="contact")
        with self.assertRaises(ValueError) as caught:
            build_routes([*ROUTE_GROUPS, [typo]])
        self.assertIn("make_noise", str(caught.exception))
        self.assertIn("unknown rate class 'contact'", str(caught.exception))

    def test_an_event_routed_twice_is_refused(self) -> None:
        again = Route("ping", Schema(SESSION_ID), _nothing)
        with self.assertRaises(ValueError) as caught:
            build_routes([*ROUTE_GROUPS, [again]])
        self.assertIn("'ping' routed twice", str(caught.exception))
