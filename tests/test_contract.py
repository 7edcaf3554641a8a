"""The client contract keeps up with the code: error codes on every refusal, the generated documents, the reference.

- Every refusal built anywhere in ``umoc/`` names a registered code (mypy
  checks the literal type; this also catches a computed one and the classes
  mypy cannot see through).
- ``docs/asyncapi.yaml`` and ``docs/umoc.d.ts`` are what ``python -m
  umoc.contract`` prints today (regenerate them after changing an event).
- Every event and every field of the AsyncAPI document is documented in
  ``docs/api.md``, every code has a row in its "Error codes" table, and every
  refusal the reference describes names its code.
"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import yaml
from twisted.trial import unittest

from tests.docs.test_reference import API, DOCS, Section, sections
from umoc import contract
from umoc.errors import CODES, Code, UserError

ROOT = Path(__file__).resolve().parents[1]
#: Calls that build a refusal, and where their code goes: a keyword, or a position (0-based) when not a keyword.
REFUSALS = {
    "UserError": None,
    "RefusedError": None,
    "HttpError": None,
    "AuthError": 1,
    "UploadDeniedError": 2,
    "RegistrationRefusedError": 1,
    "reject": 2,
    "refuse_now": 3,
}
_CODE_SPAN = re.compile(r"`([a-z_]+)`")


def _name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def refusals_without_a_code() -> list[str]:
    """``path:line`` of every refusal built in umoc/ without a literal registered code (or a code passed along)."""
    found = []
    for path in sorted((ROOT / "umoc").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or _name(node) not in REFUSALS:
                continue
            if _name(node) in ("reject", "refuse_now") and path.name != "uploads.py":
                continue  # a store's reject (of a contact request) is no answer to a client
            position = REFUSALS[_name(node)]
            given = [k.value for k in node.keywords if k.arg == "code"]
            if not given and position is not None and len(node.args) > position:
                given = [node.args[position]]
            value = given[0] if given else None
            literal = isinstance(value, ast.Constant)
            # A code passed along (``exc.code``, a parameter named code) was checked where it was made.
            passed = isinstance(value, (ast.Attribute, ast.Name)) and "code" in ast.unparse(value)
            if not (literal and value.value in CODES) and not passed:  # type: ignore[union-attr]
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def unnamed_refusals(text: str) -> list[str]:
    """The messages (code spans with a capital or a space) of an ``Errors:`` paragraph not followed by ``→ `code```."""
    parts = text.split("`")
    found = []
    for index in range(1, len(parts) - 1, 2):  # inside the spans
        span, after = parts[index], parts[index + 1]
        if not re.search(r"[A-Z ]", span) or span.startswith(("{", "'")):
            continue  # a field, an event, a JSON example
        follows = parts[index + 2] if index + 2 < len(parts) else ""
        if after.strip() != "→" or follows not in CODES:
            found.append(span)
    return found


def by_name(found: list[Section]) -> dict[str, Section]:
    return {s.name: s for s in found if s.name}


class ErrorCodeTests(unittest.SynchronousTestCase):
    def test_the_code_type_and_the_registry_name_the_same_codes(self) -> None:
        self.assertEqual(list(typing.get_args(Code)), list(CODES))

    def test_every_refusal_in_the_code_names_a_registered_code(self) -> None:
        self.assertEqual(refusals_without_a_code(), [])

    def test_an_unregistered_code_is_refused_when_raised(self) -> None:
        with self.assertRaises(ValueError):
            UserError("no", code="nope")  # type: ignore[arg-type]

    def test_the_error_event_and_the_ack_carry_the_code_beside_the_spec_fields(self) -> None:
        error = UserError("Slow down", code="rate_limited", retry_after=2.0)
        self.assertEqual(error.payload(), {"message": "Slow down", "code": "rate_limited", "retry_after": 2.0})
        self.assertEqual(error.ack(), {"error": "Slow down", "code": "rate_limited", "retry_after": 2.0})


class GeneratedDocumentTests(unittest.SynchronousTestCase):
    def test_the_asyncapi_document_is_up_to_date(self) -> None:
        self.assertEqual(
            (DOCS / "asyncapi.yaml").read_text(encoding="utf-8"),
            contract.asyncapi(),
            "docs/asyncapi.yaml is stale: python -m umoc.contract asyncapi > docs/asyncapi.yaml",
        )

    def test_the_typescript_definitions_are_up_to_date(self) -> None:
        self.assertEqual(
            (DOCS / "umoc.d.ts").read_text(encoding="utf-8"),
            contract.typescript(),
            "docs/umoc.d.ts is stale: python -m umoc.contract typescript > docs/umoc.d.ts",
        )

    def test_the_document_holds_every_routed_and_every_sent_event(self) -> None:
        from umoc.domain.notices import REGISTRY

        document = yaml.safe_load(contract.asyncapi())
        messages = document["components"]["messages"]
        self.assertEqual(set(messages), {r.event for r in contract.routes()} | set(REGISTRY))
        self.assertEqual(document["asyncapi"], "3.0.0")
        self.assertEqual(document["components"]["schemas"]["ErrorCode"]["enum"], list(CODES))
        for name, operation in document["operations"].items():
            self.assertEqual(operation["messages"], [{"$ref": f"#/channels/socket/messages/{name}"}])

    def test_the_typescript_types_the_request_fields_and_the_error_codes(self) -> None:
        text = contract.typescript()
        self.assertIn("export interface SendMessageRequest {\n  sessionID?: string;\n  recipient_id: number;", text)
        self.assertIn("  edited_at: string | null;", text)
        self.assertIn('export type ErrorCode = "invalid_argument" | ', text)
        self.assertIn("  account_deleted: () => void;", text)


class ContractDocumentedTests(unittest.SynchronousTestCase):
    """What the AsyncAPI document says a client may send or receive, docs/api.md describes."""

    def setUp(self) -> None:
        self.document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text(encoding="utf-8"))
        self.sections = sections(API)

    def undocumented(self, document: dict[str, typing.Any], found: list[Section]) -> list[str]:
        """Events of ``document`` without a heading, and fields not named in their event's section.

        A field may also be named where the section links to (``[`x`](#x)``) or, for a response
        event, in the request it answers.
        """
        headed = by_name(found)
        answers: dict[str, list[str]] = {}
        for name, operation in document["operations"].items():
            if "x-response" in operation:
                answers.setdefault(operation["x-response"], []).append(name)
        gaps = []
        for name, message in document["components"]["messages"].items():
            own = headed.get(name)
            if own is None:
                gaps.append(f"event {name}")
                continue
            named: set[str] = set()
            for source in (name, *answers.get(name, ()), *own.links()):
                if source in headed:
                    named |= headed[source].codes() | headed[source].json_keys()
            fields = set(message["payload"].get("properties", {})) - {"sessionID"}
            gaps += [f"{name}.{field}" for field in sorted(fields - named)]
        return gaps

    def test_every_event_and_field_of_the_contract_is_in_the_reference(self) -> None:
        self.assertEqual(self.undocumented(self.document, self.sections), [], "documented in docs/api.md")

    def test_an_undocumented_event_or_field_fails_the_check(self) -> None:
        messages = self.document["components"]["messages"]
        messages["send_message"]["payload"]["properties"]["priority"] = {"type": "integer"}
        messages["brand_new"] = {"name": "brand_new", "payload": {"type": "object", "properties": {}}}
        self.assertEqual(self.undocumented(self.document, self.sections), ["send_message.priority", "event brand_new"])

    def test_every_error_code_has_a_row_in_the_reference_table(self) -> None:
        table = next(s for s in self.sections if s.title == "Error codes")
        rows = [m.group(1) for line in table.body if (m := re.match(r"^\| `([a-z_]+)` \|", line))]
        self.assertEqual(rows, list(CODES), "docs/api.md 'Error codes': one row per code, in CODES' order")

    def test_every_refusal_the_reference_describes_names_its_code(self) -> None:
        """``Errors:`` paragraphs give each message a code (`` `message` → `code` ``); error rows of tables name one."""
        gaps = []
        for section in self.sections:
            paragraph: list[str] = []
            for line in [*section.body, ""]:
                if line.startswith("Errors:") or (paragraph and line.strip()):
                    paragraph.append(line)
                    continue
                if paragraph:
                    gaps += [f"{section.title}: {m}" for m in unnamed_refusals(" ".join(paragraph))]
                    paragraph = []
            for line in section.body:
                status = re.match(r"^\| ([45]\d\d)[ ,|]", line)
                if status and not set(_CODE_SPAN.findall(line)) & set(CODES):
                    gaps.append(f"{section.title}: {line[:80]}")
        self.assertEqual(gaps, [], "refusals in docs/api.md without their code")
