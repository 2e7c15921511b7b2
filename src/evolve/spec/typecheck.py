"""State paths in expressions, checked against the declared state schema.

A path that cannot resolve is MISSING at run time, and a comparison with MISSING is false: so
`$.results.length > 0` (`.length` of an array), `$.draft.x` (a field of a string), `$.nope` (a
field never declared) or `length($.count)` (the length of a number) would make an edge silently
skip its node, or a loop run to its limit. `path_problems` finds such paths before anything runs,
each with the offset of the step that cannot be taken and what to write instead.

What the schema allows is read from the field's JSON Schema keywords: `type` (a name or a list),
`properties`, `additionalProperties`, `patternProperties`, `items`, `prefixItems`, `anyOf` and
`oneOf` (a step any alternative allows is allowed). A step into an object whose `properties` are
listed must name one of them, unless `additionalProperties` or `patternProperties` allow others.
Where the schema says nothing (no `type`, an object without `properties`, a `$ref`), every step is
allowed. Only state paths (`$.`) are checked: `$item` and `$case` have no declared schema.

This is the one checker for every expression of a spec (`when`, `until`, `args`, `for_each`,
pipeline `items` and eval `expr`): call it with the parsed expression and the raw
`state.schema` mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evolve.errors import did_you_mean
from evolve.spec.expressions import Binary, Call, Expression, Length, Not, Path

_SCALARS = ("string", "number", "integer", "boolean", "null")
_ARTICLE = {"integer": "an integer", "array": "an array", "object": "an object"}


@dataclass(frozen=True)
class PathProblem:
    offset: int  # 0-based, in the expression's source
    message: str


def path_problems(
    expression: Expression, fields: Mapping[str, Mapping[str, Any]]
) -> list[PathProblem]:
    """Problems of the state paths in `expression`, given `state.schema` (field -> schema)."""
    problems = []
    for path in expression.paths:
        if path.root == "$":
            problem = _path_problem(path, fields)
            if problem:
                problems.append(problem)
    problems += _length_problems(expression.tree, fields)
    return sorted(problems, key=lambda p: p.offset)


def _path_problem(path: Path, fields: Mapping[str, Mapping[str, Any]]) -> PathProblem | None:
    name = path.parts[0]
    if name not in fields:
        return PathProblem(
            path.offset,
            f"'{path.text}' reads undeclared state field '{name}'{did_you_mean(name, fields)}",
        )
    schema: Any = fields[name]
    for i, part in enumerate(path.parts[1:], start=1):
        where = ".".join(("$", *path.parts[:i]))
        step, problem = _step(schema, part, where)
        if problem:
            offset = path.offset + len(where) + 1
            return PathProblem(offset, f"'{path.text}' never resolves: {problem}")
        schema = step
    return None


def _step(schema: Any, part: str, where: str) -> tuple[Any, str]:
    """The schema one step down (None: unknown, anything goes), or why the step is impossible."""
    if not isinstance(schema, Mapping):
        return None, ""
    alternatives = [
        s for key in ("anyOf", "oneOf") for s in schema.get(key) or [] if isinstance(s, Mapping)
    ]
    if alternatives:
        base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        steps = [_step({**base, **alt}, part, where) for alt in alternatives]
        allowed = [step for step, problem in steps if not problem]
        if not allowed:
            return None, steps[0][1]
        return (allowed[0] if len(allowed) == 1 else None), ""
    types = _types(schema)
    if not types:
        return None, ""
    if "object" in types:
        step, problem = _into_object(schema, part, where)
        if not problem or types == {"object"}:
            return step, problem
    if "array" in types:
        step, problem = _into_array(schema, part, where)
        if not problem or types == {"array"}:
            return step, problem
    kinds = " or ".join(_ARTICLE.get(t, f"a {t}") for t in sorted(types))
    hint = (
        f"; did you mean length({where})?"
        if part == "length" and types & {"string", "array", "object"}
        else ""
    )
    return None, f"{where} is {kinds} (it has no field '{part}'){hint}"


def _types(schema: Mapping[str, Any]) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    if "properties" in schema or "additionalProperties" in schema:
        return {"object"}
    if "items" in schema or "prefixItems" in schema:
        return {"array"}
    return set()


def _into_object(schema: Mapping[str, Any], part: str, where: str) -> tuple[Any, str]:
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and part in properties:
        return properties[part], ""
    for pattern, sub in (schema.get("patternProperties") or {}).items():
        try:
            if re.search(pattern, part):
                return sub, ""
        except re.error:
            return None, ""
    extra = schema.get("additionalProperties")
    if extra is False or (extra is None and isinstance(properties, Mapping) and properties):
        listed = ", ".join(properties or ()) or "nothing"
        hint = did_you_mean(part, properties or {})
        if part == "length":
            hint = f"; did you mean length({where})?"
        return None, f"{where} has no field '{part}' (its schema lists {listed}){hint}"
    return (extra if isinstance(extra, Mapping) else None), ""


def _into_array(schema: Mapping[str, Any], part: str, where: str) -> tuple[Any, str]:
    if part == "length":
        return (
            None,
            f"{where} is an array (it has no field 'length'); did you mean length({where})?",
        )
    if not part.isdigit():
        return None, (f"{where} is an array; index it with a number ({where}.0) or use any()/all()")
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list) and int(part) < len(prefix):
        return prefix[int(part)], ""
    items = schema.get("items")
    return (items if isinstance(items, Mapping) else None), ""


def _length_problems(tree: Any, fields: Mapping[str, Mapping[str, Any]]) -> list[PathProblem]:
    """length() of a state path whose schema is only scalars that have no length."""
    found = []
    for node in _walk(tree):
        if not (isinstance(node, Length) and isinstance(node.operand, Path)):
            continue
        path = node.operand
        if path.root != "$" or _path_problem(path, fields):
            continue
        schema = _schema_at(path, fields)
        types = _types(schema) if isinstance(schema, Mapping) else set()
        if types and not types & {"string", "array", "object"} and types <= set(_SCALARS):
            kinds = " or ".join(_ARTICLE.get(t, f"a {t}") for t in sorted(types))
            found.append(
                PathProblem(
                    path.offset, f"length({path.text}) is never defined: {path.text} is {kinds}"
                )
            )
    return found


def _schema_at(path: Path, fields: Mapping[str, Mapping[str, Any]]) -> Any:
    schema: Any = fields.get(path.parts[0])
    for part in path.parts[1:]:
        schema, _ = _step(schema, part, "")
    return schema


def _walk(node: Any) -> list[Any]:
    found, todo = [], [node]
    while todo:
        current = todo.pop()
        found.append(current)
        if isinstance(current, Binary):
            todo += [current.left, current.right]
        elif isinstance(current, Not | Length):
            todo.append(current.operand)
        elif isinstance(current, Call):
            todo += list(current.args)
    return found
