"""The event vocabulary is one definition: the docs are rendered from it, no other module spells
an event type, and `validate` refuses what the definition does not declare. (Every log the suite
writes is validated against it too: see the session fixture in conftest.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

from evolve.events import EVENTS, EventType, reference, validate

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "evolve"
ENVELOPE = {"v": 1, "seq": 1, "ts": "2026-01-01T00:00:00.000Z", "run_id": "r-x"}


def test_docs_events_md_is_rendered_from_the_definition():
    written = (ROOT / "docs" / "events.md").read_text("utf-8")
    assert written == reference(), (
        "docs/events.md is stale: python -m evolve.events > docs/events.md"
    )


def test_every_type_is_declared_with_a_dataclass_and_documented():
    assert set(EVENTS) == set(EventType)
    text = reference()
    for kind in EventType:
        assert f"## `{kind}`" in text


def test_no_other_module_spells_an_event_type():
    names = {str(kind) for kind in EventType}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_validate_accepts_a_declared_event():
    event = {**ENVELOPE, "type": "node.started", "node_id": "a", "item": 2, "attempt": 1}
    assert validate(event) == []


def test_validate_refuses_an_undeclared_type_field_or_value():
    assert validate({**ENVELOPE, "type": "node.exploded", "node_id": "a"}) == [
        "undeclared event type 'node.exploded'"
    ]
    started = {**ENVELOPE, "type": "node.started", "node_id": "a", "attempt": 1}
    assert validate({**started, "colour": "red"}) == ["node.started: undeclared field 'colour'"]
    assert validate({**started, "attempt": "1"}) == [
        "node.started: field 'attempt' is not <class 'int'>: '1'"
    ]
    assert validate({**started, "attempt": True}) != []  # a bool is not an attempt number
    del started["attempt"]
    assert validate(started) == ["node.started: required field 'attempt' is missing"]
    assert validate({"type": "node.ready", "node_id": "a"})[0].startswith("envelope field 'v'")


def test_nested_types_are_checked():
    call = {
        **ENVELOPE,
        "type": "schema.invalid",
        "node_id": "a",
        "attempt": 1,
        "errors": ["x", 3],
        "final": False,
    }
    assert validate(call) == ["schema.invalid: field 'errors' is not list[str]: ['x', 3]"]
