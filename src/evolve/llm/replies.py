"""Reading a model's reply, and the one repair turn after an unusable one.

A reply meant to be JSON is read leniently: the whole text, else the one ```json fenced block
in it, else the one JSON object with text around it (`parse_json_object`). Small models asked
for JSON sometimes answer with the JSON Schema itself instead of an object that meets it;
`schema_echo` recognises that, so the repair turn can say so and show the shape wanted
(`example_of`). When a reply cannot be used, the caller gets exactly one more turn:
`repair_request` sends the conversation so far, the reply, what was wrong with it and what to
answer instead. Agent nodes (an output schema not met) and the advisor (proposals that could not
be used) both repair this way, and a second unusable reply is final for both.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from evolve import jsonvalue
from evolve.llm.model import ModelRequest

REPAIR_TURN = 2

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
# JSON Schema keywords: an object made only of these is a schema, not an answer
_SCHEMA_WORDS = frozenset(
    {
        "$schema", "$id", "$defs", "definitions", "type", "properties", "required", "items",
        "additionalProperties", "enum", "const", "title", "description", "anyOf", "oneOf",
        "allOf", "minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength",
        "pattern", "format", "default", "examples", "unevaluatedProperties",
    }
)  # fmt: skip


def parse_json_object(text: str) -> Any:
    """The JSON value in a reply: the whole text, a fenced block, or one object amid text.

    Raises ValueError (a json.JSONDecodeError for a reply that is JSON but broken) when there is
    no single JSON value to take.
    """
    stripped = text.strip()
    try:
        return jsonvalue.loads(stripped)
    except ValueError as exc:
        first_error = exc
    blocks = [b.strip() for b in _FENCE.findall(text) if b.strip()]
    if len(blocks) == 1:
        return jsonvalue.loads(blocks[0])
    if len(blocks) > 1:
        raise ValueError(f"the reply holds {len(blocks)} fenced blocks; expected one JSON object")
    found = _objects_in(text)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ValueError(f"the reply holds {len(found)} JSON objects; expected one")
    raise first_error


def _objects_in(text: str) -> list[dict[str, Any]]:
    """The top-level JSON objects that occur in free text, in order."""
    decoder = json.JSONDecoder(parse_constant=jsonvalue.loads)  # NaN is not JSON here either
    found, at = [], text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        at = text.find("{", end)
    return found


def schema_echo(value: Any, schema: dict[str, Any] | None) -> bool:
    """Whether `value` is a JSON Schema (the one asked for, or any) rather than an instance.

    A schema whose own instances look like schemas (it requires `type` or `properties`) is never
    taken for an echo.
    """
    if not isinstance(value, dict) or not schema:
        return False
    if value == schema:
        return True
    wanted = set(schema.get("required") or []) | set(schema.get("properties") or {})
    if wanted & {"type", "properties"}:
        return False
    return (
        "type" in value
        and ("properties" in value or "items" in value or value.get("type") == "object")
        and set(value) <= _SCHEMA_WORDS
    )


def example_of(schema: dict[str, Any], depth: int = 0) -> Any:
    """A small instance of the shape `schema` asks for, to show a model what to answer."""
    if depth > 6:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key) and isinstance(schema[key][0], dict):
            return example_of(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        keys = list(schema.get("required") or props)
        return {k: example_of(props.get(k) or {}, depth + 1) for k in keys}
    if kind == "array":
        items = schema.get("items")
        return [example_of(items, depth + 1)] if isinstance(items, dict) else []
    return {"string": "...", "integer": 0, "number": 0, "boolean": False, "null": None}.get(
        str(kind), "..."
    )


def echo_problem(schema: dict[str, Any]) -> str:
    """What a repair turn says about a reply that was the schema itself."""
    return (
        "your answer was the JSON Schema itself, not an object that matches it; answer with "
        "the data, shaped like this example: " + json.dumps(example_of(schema), ensure_ascii=False)
    )


def repair_request(
    request: ModelRequest, reply_text: str, heading: str, problems: list[str], ask: str
) -> ModelRequest:
    """The repair turn: `request` again, with the reply and a bullet list of its problems."""
    messages = [
        *request.messages,
        {"role": "assistant", "content": reply_text},
        {"role": "user", "content": repair_text(heading, problems, ask)},
    ]
    return dataclasses.replace(request, messages=messages, turn=REPAIR_TURN)


def repair_text(heading: str, problems: list[str], ask: str) -> str:
    """The repair turn's request: what was wrong, as a bullet list, and what to answer instead.
    (A cli-agent node, which has no conversation, sends it after its prompt and reply.)"""
    return f"{heading}\n" + "\n".join(f"- {p}" for p in problems) + f"\n{ask}"
