"""Rules of issue 23 that hold over the whole tree, checked on its source.

* The edges (``umoc/events``, ``umoc/web``) only parse and call a domain
  command: none reaches the hub, push or webhooks of the node itself, so
  every path of a change tells the same sockets, devices and receivers.
* No domain or storage function takes more than six parameters
  (constructors aside): a change travels as one record, not as a dozen
  positional values through five signatures.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parent.parent / "umoc"

#: What the edges may not touch: ``services.hub``, ``services.push``, ``services.webhooks``.
_TELLERS = {"hub", "push", "webhooks"}
MAX_PARAMETERS = 6


def _sources(*packages: str) -> list[tuple[Path, ast.Module]]:
    return [
        (path, ast.parse(path.read_text(), str(path))) for p in packages for path in sorted((ROOT / p).rglob("*.py"))
    ]


class ShapeTests(unittest.TestCase):
    def test_no_edge_tells_sockets_devices_or_receivers_itself(self) -> None:
        found = [
            f"{path.relative_to(ROOT.parent)}:{node.lineno}: .{node.attr}"
            for path, tree in _sources("events", "web")
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr in _TELLERS
            # ``services.storage.push`` is the push registrations' store, not the notifier.
            and not (isinstance(node.value, ast.Attribute) and node.value.attr == "storage")
        ]
        self.assertEqual(found, [], "call a command in umoc.domain.commands instead")

    def test_no_domain_or_storage_function_takes_more_than_six_parameters(self) -> None:
        found = []
        for path, tree in _sources("domain", "storage", "records"):
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name == "__init__":
                    continue
                # Constructors aside: classmethods building one object from its settings (``from_dsn``).
                if any(isinstance(d, ast.Name) and d.id == "classmethod" for d in node.decorator_list):
                    continue
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
                if names and names[0] in ("self", "cls"):
                    names = names[1:]
                count = len(names) + (args.vararg is not None)
                if count > MAX_PARAMETERS:
                    found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {node.name} takes {count}")
        self.assertEqual(found, [], "pass one record instead")
