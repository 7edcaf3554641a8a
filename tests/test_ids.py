"""Message ids are UUID version 4 strings, unique within a process and across processes."""

from __future__ import annotations

import uuid

from twisted.trial import unittest

from umoc.ids import MessageIds


class MessageIdTests(unittest.TestCase):
    def test_ids_are_canonical_uuid4_strings(self) -> None:
        ids = MessageIds()
        for _ in range(1000):
            value = ids.new()
            parsed = uuid.UUID(value)
            self.assertEqual((parsed.version, parsed.variant, str(parsed)), (4, uuid.RFC_4122, value))

    def test_unique_within_a_source_and_between_sources(self) -> None:
        a, b = MessageIds(), MessageIds()
        seen = {a.new() for _ in range(50_000)} | {b.new() for _ in range(50_000)}
        self.assertEqual(len(seen), 100_000)
