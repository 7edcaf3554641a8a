"""Which part of ``umoc/`` may import which: an explicit map, derived from README's "Code layout".

The layout, top to bottom (README's "Code layout" is the same list)::

    tap                           twistd's Options and makeService
    service admincli conformance  the MultiService; umoc-admin; the protocol conformance server
    contract                      prints the client contract (AsyncAPI, TypeScript) from the tables below
    wiring                        builds a node from config
    socketapp                     what the transport calls
    events                        the Socket.IO edge: parse, call one command
    web                           the HTTP edge: parse, call one command
    domain.commands               one command per state change (``verb(services, actor, record)``)
    domain                        the rules commands share, the declared server events, feed consumers
    webclient                     the browser client's static files
    outbound                      outbound HTTP: the agent, queues, Web Push crypto, webhook HMAC
    cluster                       hub, presence, Redis
    storage                       SQL, and only SQL
    transport                     WebSocket, long-polling, Engine.IO and Socket.IO sessions
    protocol                      sans-IO codecs
    records ratelimit             the frozen records commands take; token buckets
    config                        the YAML configuration
    errors timefmt credentials streaks metrics logs ids   leaves

Imports only point down that list, but not every downward import is allowed: `ALLOWED` lists, for
each unit, the units it may import, and any other import fails, naming the file, the line and the
import.  ``events`` and ``web`` never import each other; the edges reach the database through
commands, never a store (``events -> storage`` is not in the map); ``storage`` knows nothing of
sockets (no ``storage -> transport``).

A unit is a top-level module (``umoc/config.py`` is ``config``), a package (``umoc/storage/`` is
``storage``, its ``__init__`` included), or a package singled out below it (``domain.commands``).
An import of a package is an import of that unit, whatever the name it takes from the package's
``__init__``: ``from umoc.storage import Storage`` is an edge to ``storage``.

`KNOWN_VIOLATIONS` holds today's imports that the map forbids, each with the reason it stays for
now.  It may only shrink: an entry whose import is gone (or that the map now allows) fails too,
so whoever removes the import removes the entry.

There is no import cycle anywhere, and no import of ``umoc`` hidden under ``TYPE_CHECKING`` or
inside a function.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "umoc"

#: README's "Code layout", top to bottom; a unit may import only units of a later row (never its own row's others).
LAYOUT: list[set[str]] = [
    {"tap"},
    {"service", "admincli", "conformance", "contract"},
    {"wiring"},
    {"socketapp"},
    {"events"},
    {"web"},
    {"domain.commands"},
    {"domain"},
    {"webclient"},
    {"outbound"},
    {"cluster"},
    {"storage"},
    {"transport"},
    {"protocol"},
    {"records", "ratelimit"},
    {"config"},
    {"errors", "timefmt", "credentials", "streaks", "metrics", "logs", "ids", "gcpolicy"},
    {"umoc"},  # the root package's ``__init__``: ``__version__`` only
]

#: Small modules with no ``umoc`` import of their own, usable from anywhere above the codecs.
LEAVES = frozenset({"errors", "timefmt", "credentials", "streaks", "metrics", "logs", "ids", "gcpolicy"})
#: What nearly every unit may use: the leaves, the configuration and the root's ``__version__``.
BASE = LEAVES | {"config", "umoc"}

#: For each unit, the units it may import (its own modules always).  Anything else fails.
ALLOWED: dict[str, frozenset[str]] = {
    "umoc": frozenset(),
    # A leaf may read the release (``umoc.__version__``: metrics' umoc_build_info), nothing else.
    **{leaf: frozenset({"umoc"}) for leaf in LEAVES},
    "config": frozenset(),
    "ratelimit": frozenset({"config"}),
    # Records validate themselves against limits from the configuration; nothing above.
    "records": frozenset({"config", "errors", "ids", "timefmt"}),
    # Sans-IO: bytes and str in, packets out; no Twisted, no sockets, no configuration.
    "protocol": frozenset(),
    "transport": BASE | {"protocol"},
    # SQL only: it takes records and knows nothing of sockets, the hub or the edges.
    "storage": BASE | {"records"},
    # The hub holds the transport's sockets and encodes a packet once for all of them.
    "cluster": BASE | {"transport", "protocol"},
    # The HTTP agent and senders: they are given what they send.
    "outbound": BASE,
    "domain": BASE | {"records", "ratelimit", "outbound", "cluster", "storage", "transport"},
    "domain.commands": BASE | {"domain", "records", "ratelimit", "outbound", "cluster", "storage"},
    "webclient": BASE,
    # The edges parse, build a record and call one command; they read and write no store themselves.
    # The site mounts the Socket.IO resource, hence transport.
    "web": BASE | {"webclient", "domain.commands", "domain", "records", "ratelimit", "transport"},
    "events": BASE | {"domain.commands", "domain", "records", "ratelimit", "transport", "protocol"},
    "socketapp": BASE | {"events", "domain", "cluster", "ratelimit", "transport", "protocol"},
    "wiring": BASE
    | {
        "socketapp",
        "events",
        "web",
        "webclient",
        "domain.commands",
        "domain",
        "outbound",
        "cluster",
        "storage",
        "transport",
        "protocol",
        "ratelimit",
    },
    # Composes what the wiring built; names the storage and status types and errors it starts and stops.
    "service": BASE | {"wiring", "domain", "storage"},
    # An edge like the others (commands, records), plus the storage engine for port-db and the schema check.
    "admincli": BASE | {"wiring", "domain.commands", "domain", "records", "storage"},
    "conformance": BASE | {"transport", "protocol"},
    # twistd's process: the service, and the reactor's dispatch of ready sockets (transport.readydispatch).
    "tap": BASE | {"service", "transport"},
    # Reads the route table and the declared server events to print the client contract; nothing imports it.
    "contract": BASE | {"events", "records", "domain", "umoc"},
}

#: Imports the map forbids that today's code still has: (importing module, imported module) -> why it stays.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    """``umoc.transport.polling`` -> ``transport``; ``umoc.domain.commands.messages`` -> ``domain.commands``.

    The longest unit of `ALLOWED` the module is in; a module in none is its own unit (and fails the
    test that every unit is mapped).
    """
    parts = module.split(".")
    if len(parts) == 1:
        return parts[0]
    for size in range(len(parts) - 1, 0, -1):
        unit = ".".join(parts[1 : 1 + size])
        if unit in ALLOWED:
            return unit
    return parts[1]


def is_module(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


class ImportFinder(ast.NodeVisitor):
    """Every ``umoc`` import of one module, and whether it is at the top level."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.imports: list[tuple[str, int, str]] = []  # (target, line, where)
        self._where: list[str] = []

    def _resolve(self, node: ast.ImportFrom) -> list[str]:
        if node.level:
            base = self.module.split(".")
            base = base[: len(base) - node.level + (1 if self.is_package else 0)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        if prefix != "umoc" and not prefix.startswith("umoc."):
            return []
        # ``from umoc.events import chats`` imports the submodule when there is one by that name, and the
        # package's ``__init__`` either way; ``from umoc.storage import Storage`` imports the package.
        targets = []
        for alias in node.names:
            candidate = f"{prefix}.{alias.name}"
            targets.append(candidate if is_module(candidate) else prefix)
        return targets

    def _add(self, targets: list[str], node: ast.stmt) -> None:
        where = "top" if not self._where else self._where[-1]
        for target in targets:
            self.imports.append((target, node.lineno, where))

    def visit_Import(self, node: ast.Import) -> None:
        self._add([a.name for a in node.names if a.name == "umoc" or a.name.startswith("umoc.")], node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._add(self._resolve(node), node)

    def _nested(self, node: ast.AST, label: str) -> None:
        self._where.append(label)
        self.generic_visit(node)
        self._where.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._nested(node, f"inside {node.name}()")

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if "TYPE_CHECKING" in test:
            self._nested(node, "under TYPE_CHECKING")
        else:
            self.generic_visit(node)


def imports_of(module: str, source: str, is_package: bool = False) -> list[tuple[str, int, str]]:
    finder = ImportFinder(module, is_package)
    finder.visit(ast.parse(source))
    return finder.imports


def umoc_imports() -> dict[str, list[tuple[str, int, str]]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        found[module] = imports_of(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")
    return found


def path_of(module: str) -> str:
    path = Path(*module.split("."))
    return str(path / "__init__.py" if (ROOT / path).is_dir() else path.with_suffix(".py"))


def undeclared(imports: dict[str, list[tuple[str, int, str]]]) -> dict[tuple[str, str], list[int]]:
    """(module, imported module) -> lines, for every import from one unit to another that `ALLOWED` lacks."""
    found: dict[tuple[str, str], list[int]] = {}
    for module, targets in imports.items():
        unit = unit_of(module)
        for target, line, _ in targets:
            other = unit_of(target)
            if other != unit and other not in ALLOWED.get(unit, frozenset()):
                found.setdefault((module, target), []).append(line)
    return found


def reachable(unit: str) -> set[str]:
    """`unit` and every unit it may import, directly or through others."""
    seen = {unit}
    todo = [unit]
    while todo:
        for other in ALLOWED[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


class FinderTests(unittest.TestCase):
    """How an import statement becomes an edge to a unit."""

    def edges(self, source: str, module: str = "umoc.events.chats", is_package: bool = False) -> list[str]:
        return [unit_of(target) for target, _, _ in imports_of(module, source, is_package)]

    def test_a_name_taken_from_a_package_init_is_an_edge_to_the_package(self) -> None:
        self.assertEqual(self.edges("from umoc.storage import Storage"), ["storage"])
        self.assertEqual(self.edges("from umoc import storage"), ["storage"])
        self.assertEqual(self.edges("import umoc.storage.messages"), ["storage"])

    def test_a_relative_import_resolves_against_the_module(self) -> None:
        self.assertEqual(self.edges("from ..storage import messages"), ["storage"])
        self.assertEqual(self.edges("from . import router"), ["events"])
        self.assertEqual(self.edges("from .. import web", module="umoc.events", is_package=True), ["web"])

    def test_a_command_module_is_its_own_unit(self) -> None:
        self.assertEqual(self.edges("from umoc.domain.commands import messages"), ["domain.commands"])
        self.assertEqual(self.edges("from umoc.domain import commands"), ["domain.commands"])
        self.assertEqual(self.edges("from umoc.domain import notices"), ["domain"])

    def test_a_top_level_module_is_its_own_unit(self) -> None:
        self.assertEqual(self.edges("from umoc import config, errors\nimport umoc.ids"), ["config", "errors", "ids"])

    def test_the_bare_package_is_the_root_unit(self) -> None:
        self.assertEqual(self.edges("import umoc"), ["umoc"])

    def test_other_packages_are_not_edges(self) -> None:
        self.assertEqual(self.edges("import umocx\nfrom twisted.internet import defer"), [])

    def test_an_undeclared_import_names_the_file_and_the_import(self) -> None:
        found = undeclared(
            {"umoc.storage.messages": imports_of("umoc.storage.messages", "\nimport umoc.transport.engine")}
        )
        self.assertEqual(found, {("umoc.storage.messages", "umoc.transport.engine"): [2]})


class LayerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.imports = umoc_imports()

    def test_every_unit_of_umoc_is_in_the_map_and_the_layout(self) -> None:
        units = {unit_of(m) for m in self.imports}
        self.assertEqual(units - set(ALLOWED), set(), "add new packages and modules to ALLOWED (and README)")
        self.assertEqual(set().union(*LAYOUT), set(ALLOWED))

    def test_the_map_only_points_down_the_layout(self) -> None:
        row = {unit: i for i, units in enumerate(LAYOUT) for unit in units}
        upward = sorted(
            f"{unit} -> {other}" for unit, others in ALLOWED.items() for other in others if row[other] <= row[unit]
        )
        self.assertEqual(upward, [])

    def test_every_import_is_allowed_by_the_map(self) -> None:
        wrong = [
            f"{path_of(module)}:{','.join(map(str, lines))}: {module} imports {target} "
            f"({unit_of(target)} is not in ALLOWED[{unit_of(module)!r}])"
            for (module, target), lines in sorted(undeclared(self.imports).items())
            if (module, target) not in KNOWN_VIOLATIONS
        ]
        self.assertEqual(wrong, [])

    def test_every_known_violation_is_still_there(self) -> None:
        """The list only shrinks: an import that is gone, or that the map allows, leaves it."""
        present = undeclared(self.imports)
        gone = sorted(f"{module} -> {target}" for module, target in KNOWN_VIOLATIONS if (module, target) not in present)
        self.assertEqual(gone, [], "remove these from KNOWN_VIOLATIONS in tests/test_layers.py")

    def test_no_import_of_umoc_is_hidden_in_a_function_or_under_type_checking(self) -> None:
        hidden = [
            f"{path_of(module)}:{line}: imports {target} {where}"
            for module, imports in self.imports.items()
            for target, line, where in imports
            if where != "top"
        ]
        self.assertEqual(hidden, [])

    def test_there_is_no_import_cycle(self) -> None:
        graph = {m: {t for t, _, _ in imports if t in self.imports and t != m} for m, imports in self.imports.items()}
        state: dict[str, int] = {}
        cycles: list[list[str]] = []

        def visit(node: str, path: list[str]) -> None:
            state[node] = 1
            for nxt in sorted(graph[node]):
                if state.get(nxt) == 1:
                    cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
                elif nxt not in state:
                    visit(nxt, path + [nxt])
            state[node] = 2

        for node in sorted(graph):
            if node not in state:
                visit(node, [node])
        self.assertEqual(cycles, [])

    def _loaded_by(self, module: str) -> set[str]:
        listing = "json.dumps(sorted(m for m in sys.modules if m.startswith('umoc')))"
        script = f"import sys, json; import {module}; print({listing})"
        out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
        return set(json.loads(out.stdout))

    def test_importing_a_low_module_loads_only_what_its_unit_may_reach(self) -> None:
        for module in ("umoc.protocol.socketio", "umoc.records.schema", "umoc.errors", "umoc.records"):
            reach = reachable(unit_of(module))
            beyond = sorted(m for m in self._loaded_by(module) if unit_of(m) not in reach | {"umoc"})
            self.assertEqual(beyond, [], f"import {module}")

    def test_the_pure_modules_load_next_to_nothing(self) -> None:
        self.assertEqual(self._loaded_by("umoc.errors"), {"umoc", "umoc.errors"})
        self.assertEqual(
            self._loaded_by("umoc.protocol.socketio"),
            {"umoc", "umoc.protocol", "umoc.protocol.engineio", "umoc.protocol.socketio"},
        )
        self.assertEqual(
            self._loaded_by("umoc.records.schema"), {"umoc", "umoc.errors", "umoc.records", "umoc.records.schema"}
        )
