"""Load experience.yaml: parse, check against the JSON Schema, run the semantic checks, build.

`load_experience(path)` either returns an `Experience` or raises `SpecError` carrying every problem
found, each located as `file:LINE:COL` with its JSON path. Shape problems come from the shipped JSON
Schema (mapped to positions through the composed YAML); meaning problems (references, cycles,
expressions, files, placeholders, output schemas) from `evolve.spec.checks`.
"""

from __future__ import annotations

import functools
import gc
import hashlib
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from evolve.errors import Problem, SpecError, did_you_mean
from evolve.spec.checks import Checker
from evolve.spec.shape import shape_errors
from evolve.spec.source import JsonPath, Locations, json_path, parse_yaml

SPEC_FILENAME = "experience.yaml"

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}
_PATTERN_HINTS = {
    "name": "must be lowercase letters, digits and dashes, starting with a letter or digit",
    "version": "must be a semantic version such as 0.1.0",
    "id": "must start with a letter or _ and contain only letters, digits and _",
    "source": "must be a state path such as $.items",
    "items": "must be a state path such as $.items",
    "url": "must be an http:// or https:// URL",
}


@cache
def schema_text() -> str:
    """The JSON Schema of experience.yaml, as shipped."""
    return resources.files("evolve.spec").joinpath("experience.schema.json").read_text("utf-8")


def resolve_spec_path(path: str | Path) -> Path:
    """A directory means its experience.yaml; a file is taken as is."""
    path = Path(path)
    return path / SPEC_FILENAME if path.is_dir() else path


def _without_gc_pauses(load: Callable[..., Any]) -> Callable[..., Any]:
    """Run `load` with the cyclic garbage collector paused.

    Loading allocates a few small objects per YAML value (values, their locations, validator
    frames), none of which needs the cycle collector; its full passes over them made loading a
    20,000-node spec cost twice as much per node as a 1,000-node one.
    """

    @functools.wraps(load)
    def paused(*args: Any, **kwargs: Any) -> Any:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return load(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@_without_gc_pauses
def load_experience(path: str | Path, *, display: str | None = None):  # -> Experience
    """Load and check the experience at `path` (a directory or its experience.yaml).

    `display` is how the file is named in messages (default: the path as given).
    """
    spec_path = resolve_spec_path(path)
    file = display or str(spec_path)
    if not spec_path.is_file():
        where = f"no {SPEC_FILENAME} in {path}" if Path(path).is_dir() else "no such file"
        raise SpecError([Problem(file, 1, 1, where)])
    if spec_path.suffix not in (".yaml", ".yml"):
        raise SpecError(
            [
                Problem(
                    file,
                    1,
                    1,
                    f"not an experience: give the experience's directory or its {SPEC_FILENAME}",
                )
            ]
        )
    try:
        text = spec_path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(file, 1, 1, f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise SpecError([Problem(file, 1, 1, f"cannot read it ({exc.strerror})")]) from None
    data, loc, problems = parse_yaml(text, file)
    if data is None and problems:
        raise SpecError(problems)
    if not isinstance(data, dict):  # also a document that is only `null` or `---`
        raise SpecError([*problems, loc.problem((), "expected a mapping at the top level")])
    # Say one thing per value: nothing more of a value YAML could not build, and no semantic
    # problem where the shape is already wrong (checks.py skips most of those by itself).
    said = {json_path(p) for p in loc.broken}
    shape = [p for p in schema_problems(data, loc) if p.json_path not in said]
    said |= {p.json_path for p in shape}
    checker = Checker(data, loc, spec_path.parent.resolve())
    problems += shape + [p for p in checker.run() if p.json_path not in said]
    if problems:
        raise SpecError(problems)
    return checker.build(spec_path, spec_hash(spec_path, checker.referenced_files))


def spec_hash(spec_path: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(spec_path.read_bytes())
    root = spec_path.parent.resolve()
    for file in sorted(set(files)):
        if file.is_file():
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return "sha256:" + digest.hexdigest()[:16]


def schema_problems(data: dict[str, Any], loc: Locations) -> list[Problem]:
    """Every JSON Schema violation in `data`, located and phrased for people."""
    problems: list[Problem] = []
    for error in shape_errors(data, schema_text()):
        problems += _describe(error, loc, data)
    unique = {(p.line, p.col, p.message): p for p in problems}
    return list(unique.values())


def _describe(error: Any, loc: Locations, data: Any) -> list[Problem]:
    path: JsonPath = tuple(error.absolute_path)
    where = _where(path, data)
    kind = error.validator
    if kind in ("additionalProperties", "unevaluatedProperties"):
        allowed = _allowed_keys(error.schema, error.instance)
        extras = [k for k in error.instance if k not in allowed]
        return [
            loc.problem(
                (*path, key),
                f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}",
                at_key=True,
            )
            for key in extras
        ]
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [loc.problem(path, f"{where} is missing required key '{missing}'", at_key=True)]
    if kind == "type":
        expected = error.validator_value
        names = [expected] if isinstance(expected, str) else expected
        want = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        return [loc.problem(path, f"{where} must be {want}, not {_type_of(error.instance)}")]
    if kind == "enum":
        options = ", ".join(str(o) for o in error.validator_value)
        hint = did_you_mean(error.instance, error.validator_value)
        return [
            loc.problem(path, f"{where} is {error.instance!r}; expected one of: {options}{hint}")
        ]
    if kind == "propertyNames" or "propertyNames" in error.schema_path:  # a bad field name
        return [
            loc.problem(
                (*path, error.instance),
                f"state field name {error.instance!r} {_PATTERN_HINTS['id']}",
                at_key=True,
            )
        ]
    if kind == "pattern":
        hint = _PATTERN_HINTS.get(
            str(path[-1]) if path else "", f"must match {error.validator_value}"
        )
        return [loc.problem(path, f"{where} is {error.instance!r}; it {hint}")]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "more than",
            "exclusiveMaximum": "less than",
        }[kind]
        return [
            loc.problem(
                path, f"{where} must be {bound} {error.validator_value}, not {error.instance}"
            )
        ]
    if kind in ("minItems", "minLength"):
        return [loc.problem(path, f"{where} must not be empty")]
    if kind == "uniqueItems":
        return [loc.problem(path, f"{where} lists the same entry twice")]
    return [loc.problem(path, f"{where}: {error.message}")]


def _allowed_keys(schema: dict[str, Any], instance: dict[str, Any]) -> list[str]:
    """Keys `schema` accepts for `instance`, following if/then branches that apply to it."""
    allowed = list(schema.get("properties", {}))
    branches = [b for b in schema.get("allOf", []) if "if" in b]
    matching = [b for b in branches if _branch_applies(b["if"], instance)]
    for branch in matching or branches:  # no branch applies (a bad `kind`): accept them all
        allowed += [k for k in branch.get("then", {}).get("properties", {}) if k not in allowed]
    return allowed


def _branch_applies(condition: dict[str, Any], instance: dict[str, Any]) -> bool:
    return all(instance.get(k) == v.get("const") for k, v in condition["properties"].items())


def _where(path: JsonPath, data: Any) -> str:
    """A short human name for the thing at `path`: "node 'review'", "'timeout_ms' of node 'x'"."""
    if not path:
        return "the experience"
    if path[:2] == ("graph", "nodes") and len(path) >= 3:
        node = _get(data, path[:3])
        label = (
            f"node '{node['id']}'"
            if isinstance(node, dict) and isinstance(node.get("id"), str)
            else f"node #{int(path[2]) + 1}"
        )
        rest = ".".join(str(p) for p in path[3:])
        return f"'{rest}' of {label}" if rest else label
    if path[:2] == ("state", "schema") and len(path) >= 3:
        rest = ".".join(str(p) for p in path[3:])
        return f"'{rest}' of state field '{path[2]}'" if rest else f"state field '{path[2]}'"
    if path[0] == "graph" and len(path) >= 3 and isinstance(path[2], int):
        nouns = {"edges": "edge", "pipelines": "pipeline", "loops": "loop"}
        noun = nouns.get(str(path[1]), path[1])
        rest = ".".join(str(p) for p in path[3:])
        return f"'{rest}' of {noun} #{path[2] + 1}" if rest else f"{noun} #{path[2] + 1}"
    last = path[-1]
    return f"'{last}'" if isinstance(last, str) else f"item #{last + 1} of '{path[-2]}'"


def _get(data: Any, path: JsonPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
