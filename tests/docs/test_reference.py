"""The reference docs keep up with the code.

``docs/api.md`` must give every event the server routes its own heading (the
event name as the heading's first code span, e.g. ``#### `send_message` ``)
and name each of its payload fields in that section; every event the server
sends must appear in a heading too; headings must not name events that no
longer exist.  ``docs/operator-guide.md`` must document every configuration
key as the first cell of a table row, ``| `section.key` | ...``, under the
section's heading (``### `section` ``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import typing
from pathlib import Path
from typing import Any, Iterator

from twisted.trial import unittest

from umoc.config import Config

DOCS = Path(__file__).resolve().parents[2] / "docs"
API = DOCS / "api.md"
GUIDE = DOCS / "operator-guide.md"


def routes() -> list[Any]:
    """Every `Route` of the server's one dispatch table (the only place that knows where it lives)."""
    from umoc.events.routes import ROUTE_GROUPS

    return [route for group in ROUTE_GROUPS for route in group]


# -- what the code says ---------------------------------------------------

#: Calls that send an event by name; the server itself sends only declared notices (``tell``).
_SENDERS = {".emit(": 0, "emit_to_users(": 1}
_LITERAL = re.compile(r'\s*"([A-Za-z_-]+)"\s*$')
#: Modules that are not the chat server (the protocol conformance test server echoes by name).
_NOT_THE_SERVER = {"conformance.py"}
#: The spelling of a placeholder for the name of a mapping entry (a rate-limit bucket).
NAME = "<name>"


def declared_events() -> dict[str, Any]:
    """The registry of server events (``umoc.domain.notices``): everything a client can receive."""
    from umoc.domain.notices import REGISTRY

    return dict(REGISTRY)


def _argument(source: str, start: int, index: int) -> str:
    """The source text of argument ``index`` of the call whose arguments begin at ``start``."""
    depth, quote, args, current = 0, "", [], []
    for char in source[start:]:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            args.append("".join(current))
            current = []
            if len(args) > index:
                break
            continue
        current.append(char)
    else:
        return ""
    args.append("".join(current))
    return args[index] if len(args) > index else ""


def literal_emits() -> list[str]:
    """``path: name`` for every call in the server's source that sends an event named by a string literal."""
    spec = importlib.util.find_spec("umoc")
    assert spec is not None and spec.submodule_search_locations
    found: list[str] = []
    for root in spec.submodule_search_locations:
        for path in Path(root).rglob("*.py"):
            if path.name in _NOT_THE_SERVER:
                continue
            source = path.read_text(encoding="utf-8")
            for call, index in _SENDERS.items():
                for match in re.finditer(re.escape(call), source):
                    literal = _LITERAL.match(_argument(source, match.end(), index))
                    if literal:
                        found.append(f"{path.name}: {literal.group(1)}")
    return found


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def config_keys(cls: type = Config, prefix: str = "") -> Iterator[str]:
    """Dotted names of every key a configuration file may hold.

    A section's fields are ``section.key`` (``section.sub.key`` in a section's own sections).
    A field holding a small record (one rate-limit bucket) is a key itself, and the record's own fields are
    documented once, generically, as ``section.<name>.field``.  A mapping
    field is a key, and so is each of its default entries.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        tp = hints[f.name]
        # A section, or a section within one (``auth.jwt``, ``auth.jwt.claims``: their classes end in Config).
        if dataclasses.is_dataclass(tp) and (not prefix or tp.__name__.endswith("Config")):
            yield from config_keys(tp, path + ".")
            continue
        yield path
        if dataclasses.is_dataclass(tp):
            yield from (f"{prefix}{NAME}.{sub.name}" for sub in dataclasses.fields(tp))
        elif typing.get_origin(tp) is dict:
            yield from (f"{path}.{key}" for key in _default(f))
            value_type = typing.get_args(tp)[1]
            if dataclasses.is_dataclass(value_type):
                yield from (f"{path}.{NAME}.{sub.name}" for sub in dataclasses.fields(value_type))


def config_sections() -> set[str]:
    return {f.name for f in dataclasses.fields(Config)}


# -- what the docs say ----------------------------------------------------

_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE = re.compile(r"`([^`]+)`")
_ROW_KEY = re.compile(r"^\|\s*`([^`]+)`\s*\|")


@dataclasses.dataclass
class Section:
    """One heading and the text up to the next heading."""

    level: int
    title: str
    parent: str  # the title of the enclosing level-2 heading
    body: list[str]

    @property
    def name(self) -> str | None:
        """The heading's first code span, when the heading starts with one."""
        match = _CODE.match(self.title)
        return match.group(1) if match else None

    def codes(self) -> set[str]:
        return {code for line in self.body for code in _CODE.findall(line)}

    def links(self) -> set[str]:
        """Sections this one points to (``[`x`](#x)``), where its fields may be described."""
        return {anchor for line in self.body for anchor in re.findall(r"\]\(#([a-z_]+)\)", line)}

    def json_keys(self) -> set[str]:
        """Quoted names in the section (the keys of its JSON examples)."""
        return {key for line in self.body for key in re.findall(r'"([a-z_]+)"', line)}


def sections(path: Path) -> list[Section]:
    """The document's headings with their text, skipping fenced code blocks."""
    found: list[Section] = []
    parent = ""
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            if found:
                found[-1].body.append(line)
            continue
        heading = None if in_fence else _HEADING.match(line)
        if heading is None:
            if found:
                found[-1].body.append(line)
            continue
        level, title = len(heading.group(1)), heading.group(2)
        if level <= 2:
            parent = title
        found.append(Section(level, title, parent, []))
    return found


def _is_event_name(text: str) -> bool:
    return re.fullmatch(r"[a-z][a-z_]*", text) is not None


# -- the tests --------------------------------------------------------------


class ApiReferenceTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.sections = sections(API)
        self.routes = routes()

    def test_the_route_table_is_found(self) -> None:
        self.assertGreater(len(self.routes), 10)

    def test_every_routed_event_has_its_own_heading(self) -> None:
        headed = {s.name for s in self.sections}
        missing = sorted(r.event for r in self.routes if r.event not in headed)
        self.assertEqual(missing, [], "routed events without a heading ('### `name`') in docs/api.md")

    def test_every_routed_event_documents_its_payload_fields(self) -> None:
        by_name = {s.name: s for s in self.sections if s.name}
        gaps = []
        for route in self.routes:
            section = by_name.get(route.event)
            if section is None:
                continue  # reported by the heading test
            names = {f.name for f in route.schema.fields} - {"sessionID"}
            gaps += [f"{route.event}.{name}" for name in sorted(names - section.codes())]
        self.assertEqual(gaps, [], "payload fields not named (as `field`) in their event's section of docs/api.md")

    def test_every_response_event_is_declared(self) -> None:
        declared = declared_events()
        strays = sorted(r.event for r in self.routes if r.response is not None and r.response.name not in declared)
        self.assertEqual(strays, [], "routes answering with an event missing from umoc.domain.notices")

    def test_every_declared_event_has_a_heading(self) -> None:
        declared = declared_events()
        self.assertGreater(len(declared), 30)
        headed = {code for s in self.sections for code in _CODE.findall(s.title)}
        self.assertEqual(sorted(set(declared) - headed), [], "server events without a heading in docs/api.md")

    def test_every_declared_event_documents_its_fields(self) -> None:
        """Each field is named in the event's section, the request it answers, or a section it links to."""
        by_name = {s.name: s for s in self.sections if s.name}
        answers: dict[str, list[str]] = {}
        for route in self.routes:
            if route.response is not None:
                answers.setdefault(route.response.name, []).append(route.event)
        gaps = []
        for name, event in declared_events().items():
            named: set[str] = set()
            own = by_name.get(name)
            linked = own.links() if own is not None else set()
            for source in (name, *answers.get(name, ()), *linked):
                if source in by_name:
                    named |= by_name[source].codes() | by_name[source].json_keys()
            gaps += [f"{name}.{field}" for field in (*event.fields, *event.optional) if field not in named]
        self.assertEqual(gaps, [], "server event fields not named in their section of docs/api.md")

    def test_no_event_is_sent_by_a_literal_name(self) -> None:
        self.assertEqual(literal_emits(), [], "send a declared notice (umoc.domain.notices) with tell(), not a name")

    def test_event_headings_name_events_that_exist(self) -> None:
        routed = {r.event for r in self.routes}
        sent = set(declared_events())
        stale = []
        for s in self.sections:
            name = s.name
            if s.level < 3 or name is None or not _is_event_name(name):
                continue
            if s.parent == "Client events" and name not in routed:
                stale.append(f"client event {name}")
            elif s.parent == "Server-initiated events" and name not in sent:
                stale.append(f"server event {name}")
        self.assertEqual(stale, [], "docs/api.md has headings for events the server does not route or send")

    def test_the_sections_these_tests_rely_on_exist(self) -> None:
        parents = {s.parent for s in self.sections}
        self.assertTrue({"Client events", "Server-initiated events"} <= parents)


class OperatorGuideTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.keys = set(config_keys())
        #: documented key -> the name of the nearest heading above its table row
        self.rows: dict[str, str | None] = {}
        for section in sections(GUIDE):
            for line in section.body:
                match = _ROW_KEY.match(line)
                if match:
                    self.rows.setdefault(match.group(1), section.name)

    def test_the_walk_finds_nested_keys(self) -> None:
        for key in ("server.listen", "ratelimits.messages", "ratelimits.<name>.burst", "uploads.allowed_types.image"):
            self.assertIn(key, self.keys)

    def test_every_config_key_has_a_table_row(self) -> None:
        missing = sorted(self.keys - set(self.rows))
        self.assertEqual(missing, [], "config keys without a '| `section.key` |' row in docs/operator-guide.md")

    def test_every_key_is_under_its_sections_heading(self) -> None:
        misplaced = sorted(k for k in self.keys if k in self.rows and self.rows[k] != k.split(".", 1)[0])
        self.assertEqual(misplaced, [], "config keys documented outside their '### `section`' heading")

    def test_documented_keys_exist(self) -> None:
        sections_ = config_sections()
        stale = sorted(k for k in self.rows if k.split(".", 1)[0] in sections_ and "." in k and k not in self.keys)
        self.assertEqual(stale, [], "docs/operator-guide.md documents config keys the code does not have")
