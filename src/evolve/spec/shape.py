"""The JSON Schema shape check of experience.yaml, fast on large graphs.

`shape_errors(data)` yields the same errors as one Draft 2020-12 validator of the whole shipped
schema (same keyword, instance, schema and path for each), so every message built from them is
unchanged. It is cheaper because that validator spends most of its time on nodes: each node is
checked against every kind's `if` and then collects the properties those branches evaluated for
`unevaluatedProperties`. Here the schema is compiled once into:
- an outer validator: the whole schema with nodes not looked into;
- one validator per node kind: the node's properties and the kind's own merged into one object
  with `additionalProperties: false` and the required keys of both (no if/then, nothing to
  track), which accepts exactly the nodes of that kind the whole schema accepts.
A node passing its kind's validator is done. Any other node (not a mapping, a kind that is not
known, or one that fails) is checked by the schema's own node definition, as the whole validator
would, and its errors are placed under `graph.nodes[i]`: an invalid experience says the same
thing either way.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True)
class _Compiled:
    outer: Any  # jsonschema validator: the whole schema, nodes accepted as anything
    node: Any  # the schema's node definition, its $refs resolved against the whole schema
    kinds: dict[str, Any]  # kind -> validator of that kind's nodes, flattened


def shape_errors(data: Any, schema_text: str) -> Iterator[Any]:
    """Every JSON Schema violation in `data` (jsonschema `ValidationError`s)."""
    compiled = _compile(schema_text)
    yield from compiled.outer.iter_errors(data)
    graph = data.get("graph") if isinstance(data, dict) else None
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if not isinstance(nodes, list):
        return
    for index, node in enumerate(nodes):
        kind = node.get("kind") if isinstance(node, dict) else None
        fast = compiled.kinds.get(kind) if isinstance(kind, str) else None
        if fast is not None and fast.is_valid(node):
            continue
        for error in compiled.node.iter_errors(node):
            error.path.extendleft(reversed(("graph", "nodes", index)))  # as `descend` would
            yield error


@cache
def _compile(schema_text: str) -> _Compiled:
    import jsonschema  # costly import: only when a spec is actually checked

    schema = json.loads(schema_text)
    whole = jsonschema.Draft202012Validator(schema)
    node = schema["$defs"]["node"]
    outer = copy.deepcopy(schema)
    outer["$defs"]["node"] = {}
    del outer["properties"]["graph"]["properties"]["nodes"]["items"]  # not even a visit each
    kinds = {
        branch["if"]["properties"]["kind"]["const"]: whole.evolve(
            schema=_flatten(node, branch["then"])
        )
        for branch in node["allOf"]
    }
    return _Compiled(jsonschema.Draft202012Validator(outer), whole.evolve(schema=node), kinds)


def _flatten(node: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """One kind's node schema: the node's keywords and the branch's, as one closed object."""
    known = {"type", "required", "properties", "allOf", "unevaluatedProperties"}
    unexpected = (set(node) - known) | (set(then) - {"properties", "required"})
    if unexpected:  # a keyword this flattening does not know how to merge
        raise ValueError(f"cannot flatten the node schema: {sorted(unexpected)}")
    properties = dict(node["properties"])
    for key, value in then.get("properties", {}).items():
        properties[key] = {"allOf": [properties[key], value]} if key in properties else value
    return {
        "type": "object",
        "required": [*node.get("required", []), *then.get("required", [])],
        "properties": properties,
        "additionalProperties": False,
    }
