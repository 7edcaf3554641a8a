"""Imports in ``umoc/`` point one way: down the layers written here (and in README's "Code layout").

From the top to the bottom::

    tap                        twistd's Options and makeService
    service conformance admincli   the MultiService; the protocol conformance server; umoc-admin
    wiring                     builds a node from config
    socketapp                  what the transport calls
    events                     the Socket.IO edge
    web                        the HTTP edge
    domain webclient           rules both edges share; the browser client's static files
    cluster                    hub, presence, Redis
    storage                    SQL
    transport                  WebSocket, long-polling, Engine.IO and Socket.IO sessions
    protocol                   sans-IO codecs
    ratelimit outbound records token buckets; outbound HTTP; the frozen records commands take
    config                     the YAML configuration
    errors timefmt credentials streaks metrics logs ids   leaves

A module may import its own package's modules and anything in a lower
layer, never a higher one or a sibling layer (``events`` and ``web`` do not
import each other).  There is no import cycle anywhere, and no import of
``umoc`` hidden under ``TYPE_CHECKING`` or inside a function.
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

#: Rank of each unit; a unit may import only units of a strictly lower rank (or itself).
LAYERS: dict[str, int] = {
    "errors": 0,
    "timefmt": 0,
    "credentials": 0,
    "streaks": 0,
    "metrics": 0,
    "ids": 0,
    "logs": 0,
    "config": 1,
    "ratelimit": 2,
    "outbound": 2,
    "records": 2,
    "protocol": 3,
    "transport": 4,
    "storage": 5,
    "cluster": 6,
    "domain": 7,
    "webclient": 7,
    "web": 8,
    "events": 9,
    "socketapp": 10,
    "wiring": 11,
    "service": 12,
    "conformance": 12,
    "admincli": 12,
    "tap": 13,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    """``umoc.transport.polling`` -> ``transport``; ``umoc`` itself is the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


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
        if not prefix.startswith("umoc"):
            return []
        # ``from umoc.events import chats``: a submodule when one exists by that name.
        targets = []
        for alias in node.names:
            candidate = f"{prefix}.{alias.name}"
            path = ROOT / Path(*candidate.split("."))
            targets.append(candidate if path.with_suffix(".py").exists() or path.is_dir() else prefix)
        return targets

    def _add(self, targets: list[str], node: ast.AST) -> None:
        where = "top" if not self._where else self._where[-1]
        for target in targets:
            self.imports.append((target, node.lineno, where))

    def visit_Import(self, node: ast.Import) -> None:
        self._add([a.name for a in node.names if a.name.startswith("umoc")], node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._add(self._resolve(node), node)

    def _nested(self, node: ast.AST, label: str) -> None:
        self._where.append(label)
        self.generic_visit(node)
        self._where.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._nested(node, f"inside {node.name}()")

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if "TYPE_CHECKING" in test:
            self._nested(node, "under TYPE_CHECKING")
        else:
            self.generic_visit(node)


def umoc_imports() -> dict[str, list[tuple[str, int, str]]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        finder = ImportFinder(module, path.name == "__init__.py")
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        found[module] = finder.imports
    return found


class LayerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.imports = umoc_imports()

    def test_every_unit_of_umoc_has_a_layer(self) -> None:
        units = {unit_of(m) for m in self.imports} - {""}
        self.assertEqual(units - set(LAYERS), set(), "add new packages and modules to LAYERS (and README)")

    def test_imports_only_point_down(self) -> None:
        wrong = []
        for module, imports in self.imports.items():
            unit = unit_of(module)
            for target, line, _ in imports:
                other = unit_of(target)
                if other == unit or other == "":
                    continue
                if unit == "" or LAYERS[other] >= LAYERS[unit]:
                    wrong.append(f"{module}:{line} imports {target} ({other} is not below {unit or 'umoc'})")
        self.assertEqual(wrong, [])

    def test_no_import_of_umoc_is_hidden_in_a_function_or_under_type_checking(self) -> None:
        hidden = [
            f"{module}:{line} imports {target} {where}"
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

    def test_importing_a_low_module_loads_only_its_layer_and_below(self) -> None:
        for module in ("umoc.protocol.socketio", "umoc.events.schema", "umoc.errors"):
            top = LAYERS[unit_of(module)]
            loaded = self._loaded_by(module)
            above = sorted(
                m for m in loaded if unit_of(m) and unit_of(m) != unit_of(module) and LAYERS[unit_of(m)] >= top
            )
            self.assertEqual(above, [], f"import {module}")

    def test_the_pure_modules_load_next_to_nothing(self) -> None:
        self.assertEqual(self._loaded_by("umoc.errors"), {"umoc", "umoc.errors"})
        self.assertEqual(
            self._loaded_by("umoc.protocol.socketio"),
            {"umoc", "umoc.protocol", "umoc.protocol.engineio", "umoc.protocol.socketio"},
        )
        self.assertEqual(
            self._loaded_by("umoc.events.schema"), {"umoc", "umoc.errors", "umoc.events", "umoc.events.schema"}
        )
