"""Every event's rate class is the one ``etc/umoc.yaml`` and the operator guide name it under.

Both list, for each bucket of ``ratelimits``, the events that take from it;
a new event, or one moved to another class, must show up in both, or an
operator tuning a bucket tunes something else than they think.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial import unittest

from umoc.config import RATE_CLASSES
from umoc.events.router import build_routes
from umoc.events.routes import ROUTE_GROUPS

ROOT = Path(__file__).resolve().parents[2]


def yaml_comments() -> dict[str, str]:
    """Rate class -> the comment on its line of etc/umoc.yaml and the comment lines just above it."""
    lines = (ROOT / "etc" / "umoc.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("ratelimits:")
    found: dict[str, str] = {}
    above: list[str] = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        match = re.match(r"  (\w+): \{.*\}\s*(?:#(.*))?$", line)
        if match:
            found[match.group(1)] = " ".join([*above, match.group(2) or ""])
            above = []
        elif line.strip().startswith("#"):
            above.append(line.strip().lstrip("#"))
        else:
            above = []
    return found


def guide_rows() -> dict[str, str]:
    """Rate class -> its row in the operator guide's table of buckets."""
    text = (ROOT / "docs" / "operator-guide.md").read_text(encoding="utf-8")
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `ratelimits\.(\w+)` \| `\{rate.*$", text, re.M)}


class RateClassDocsTests(unittest.TestCase):
    def test_every_bucket_is_in_the_example_file_and_the_guide(self) -> None:
        self.assertEqual(sorted(yaml_comments()), sorted(RATE_CLASSES))
        self.assertEqual(sorted(guide_rows()), sorted(RATE_CLASSES))

    def test_every_event_is_listed_under_its_own_class(self) -> None:
        comments, rows = yaml_comments(), guide_rows()
        wrong = []
        for name, route in sorted(build_routes(ROUTE_GROUPS).items()):
            for where, texts in (("etc/umoc.yaml", comments), ("docs/operator-guide.md", rows)):
                if not re.search(rf"\b{name}\b", texts[route.rate_class]):
                    wrong.append(f"{where}: {name} (class {route.rate_class})")
                others = [c for c, text in texts.items() if c != route.rate_class and re.search(rf"`?\b{name}\b", text)]
                if others:
                    wrong.append(f"{where}: {name} also under {others}")
        self.assertEqual(wrong, [])
