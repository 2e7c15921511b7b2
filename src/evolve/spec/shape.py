"""The JSON Schema shape check of experience.yaml, fast on large graphs.

`shape_errors(data)` yields the same errors as one Draft 2020-12 validator of the whole shipped
schema (same keyword, instance, schema and path for each), so every message built from them is
unchanged. It is cheaper because that validator spends most of its time on nodes: each node is
checked against every kind's `if` and then collects the properties those branches evaluated for
`unevaluatedProperties`. Here the schema is compiled once into:
- an outer validator: the whole schema without looking into nodes and edges;
- one closed object schema per node kind: the node's properties and the kind's own merged, with
  `additionalProperties: false` and the required keys of both (no if/then, nothing to track),
  which accepts exactly the nodes of that kind the whole schema accepts; and the edge's.
A closed object is checked key by key (the key sets, then each value by its property's own
validator, a repeated scalar's verdict remembered), skipping jsonschema's walk of the object.
A node or edge that passes is done. Any other (not a mapping, a kind that is not known, or one
that fails) is checked by the schema's own definition, as the whole validator would, and its
errors are placed under `graph.nodes[i]` or `graph.edges[i]`: an invalid experience says the
same thing either way.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class _Closed:
    """A closed object schema (`type: object`, `properties`, `required`, `additionalProperties:
    false`), checked as jsonschema would but key by key: the keys against the sets, each value by
    its property's own validator. A scalar's verdict is remembered for the call (`memo`): a
    thousand nodes share a few kinds, files and field names."""

    schema: dict[str, Any]
    whole: Any  # the object's validator, for anything not plainly closed
    required: frozenset[str]
    properties: dict[str, Callable[[Any], bool]]  # key -> whether a value is valid there

    @classmethod
    def of(cls, whole: Any, schema: dict[str, Any]) -> _Closed:
        closed = (
            set(schema) <= {"type", "required", "properties", "additionalProperties"}
            and schema.get("type") == "object"
            and schema.get("additionalProperties") is False
        )
        properties = schema.get("properties", {}) if closed else {}
        return cls(
            schema,
            whole.evolve(schema=schema),
            frozenset(schema.get("required", [])) if closed else frozenset(),
            {
                key: _string_check(value) or whole.evolve(schema=value).is_valid
                for key, value in properties.items()
            },
        )

    def accepts(self, value: Any, memo: dict[Any, bool]) -> bool:
        if not self.properties:
            return self.whole.is_valid(value)
        if not isinstance(value, dict):
            return False
        keys = value.keys()
        if not self.required <= keys or not keys <= self.properties.keys():
            return False
        for key, item in value.items():
            if isinstance(item, _SCALARS):
                seen = (id(self), key, type(item), item)
                ok = memo.get(seen)
                if ok is None:
                    ok = memo[seen] = self.properties[key](item)
            else:
                ok = self.properties[key](item)
            if not ok:
                return False
        return True


def _string_check(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """For `{type: string}`, maybe with a `pattern` (node ids; an edge's ends), the check
    jsonschema makes, without its walk: a string, in which the pattern is found (`re.search`,
    as its `pattern` keyword does). None for any other schema."""
    if schema.get("type") != "string" or set(schema) - {"type", "pattern", "description"}:
        return None
    found = re.compile(schema["pattern"]).search if "pattern" in schema else None
    if found is None:
        return lambda value: isinstance(value, str)
    return lambda value: isinstance(value, str) and found(value) is not None


@dataclass(frozen=True)
class _Compiled:
    outer: Any  # jsonschema validator: the whole schema, nodes and edges not looked into
    node: Any  # the schema's node definition, its $refs resolved against the whole schema
    kinds: dict[str, _Closed]  # kind -> that kind's nodes, flattened
    edge: _Closed


def shape_errors(data: Any, schema_text: str) -> Iterator[Any]:
    """Every JSON Schema violation in `data` (jsonschema `ValidationError`s)."""
    compiled = _compile(schema_text)
    yield from compiled.outer.iter_errors(data)
    graph = data.get("graph") if isinstance(data, dict) else None
    if not isinstance(graph, dict):
        return
    memo: dict[Any, bool] = {}
    nodes = graph.get("nodes")
    for index, node in enumerate(nodes if isinstance(nodes, list) else []):
        kind = node.get("kind") if isinstance(node, dict) else None
        fast = compiled.kinds.get(kind) if isinstance(kind, str) else None
        if fast is None or not fast.accepts(node, memo):
            yield from _under(compiled.node.iter_errors(node), "nodes", index)
    edges = graph.get("edges")
    for index, edge in enumerate(edges if isinstance(edges, list) else []):
        if not compiled.edge.accepts(edge, memo):
            yield from _under(compiled.edge.whole.iter_errors(edge), "edges", index)


def _under(errors: Iterator[Any], where: str, index: int) -> Iterator[Any]:
    for error in errors:
        error.path.extendleft(reversed(("graph", where, index)))  # as `descend` would
        yield error


@cache
def _compile(schema_text: str) -> _Compiled:
    import jsonschema  # costly import: only when a spec is actually checked

    schema = json.loads(schema_text)
    whole = jsonschema.Draft202012Validator(schema)
    node = schema["$defs"]["node"]
    outer = copy.deepcopy(schema)
    graph = outer["properties"]["graph"]["properties"]
    del graph["nodes"]["items"], graph["edges"]["items"]  # each is checked on its own
    kinds = {
        branch["if"]["properties"]["kind"]["const"]: _Closed.of(
            whole, _flatten(node, branch["then"])
        )
        for branch in node["allOf"]
    }
    edge = _Closed.of(whole, schema["properties"]["graph"]["properties"]["edges"]["items"])
    return _Compiled(jsonschema.Draft202012Validator(outer), whole.evolve(schema=node), kinds, edge)


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
