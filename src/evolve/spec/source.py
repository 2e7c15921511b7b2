"""Parse YAML safely into plain data, keeping where every key and value stood.

`parse_yaml` composes the document once (PyYAML's safe composer), rejects duplicate keys, and
builds the Python value itself, recording the 1-based line and column of each mapping key and each
value by JSON path, so later checks can point at the exact spot. Only the safe YAML tags are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from evolve.errors import Problem

JsonPath = tuple[str | int, ...]


@dataclass
class Locations:
    """Where each part of a parsed document stood in its file."""

    file: str
    values: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    quoted: set[JsonPath] = field(default_factory=set)

    def value(self, path: JsonPath) -> tuple[int, int]:
        """The position of the value at `path`, or of its nearest located ancestor."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def key(self, path: JsonPath) -> tuple[int, int]:
        """The position of the mapping key that names `path` (falls back to the value)."""
        return self.keys.get(path) or self.value(path)

    def problem(self, path: JsonPath, message: str, *, at_key: bool = False) -> Problem:
        line, col = self.key(path) if at_key else self.value(path)
        return Problem(self.file, line, col, message, json_path(path))

    def expression_problem(self, path: JsonPath, offset: int, message: str) -> Problem:
        """A problem at character `offset` inside the scalar string at `path`."""
        line, col = self.value(path)
        col += offset + (1 if path in self.quoted else 0)
        return Problem(self.file, line, col, message, json_path(path))


def json_path(path: JsonPath) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same safe tags, in C when built
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns a composed node tree into Python values, recording locations and duplicate keys."""

    def __init__(self, locations: Locations):
        self.loc = locations
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: JsonPath, depth: int = 0) -> Any:
        if depth > 200:
            self.problems.append(self.loc.problem(path, "YAML nesting is too deep"))
            return None
        self.loc.values.setdefault(path, _mark(node))
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            self.problems.append(self.loc.problem(path, f"unsupported YAML tag '{node.tag}'"))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if node.style in ("'", '"'):
            self.loc.quoted.add(path)
        return self._scalar(node, path)

    def _scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problems.append(self.loc.problem(path, f"invalid YAML value: {_reason(exc)}"))
            return None
        if isinstance(value, float) and value != value:  # NaN is not JSON
            return None
        return value

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict[str, Any]:
        self._constructor.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int | float | bool) or key is None:
                line, col = _mark(key_node)
                self.problems.append(
                    Problem(self.loc.file, line, col, "mapping keys must be strings",
                            json_path(path))
                )
                continue
            key = str(key).lower() if isinstance(key, bool) else str(key)
            child = (*path, key)
            if key in result:
                first_line, _ = self.loc.keys[child]
                line, col = _mark(key_node)
                self.problems.append(
                    Problem(self.loc.file, line, col,
                            f"duplicate key '{key}' (first defined on line {first_line})",
                            json_path(child))
                )
                continue
            self.loc.keys[child] = _mark(key_node)
            result[key] = self.build(value_node, child, depth + 1)
        return result


def _reason(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return problem.strip()


def parse_yaml(text: str, file: str) -> tuple[Any, Locations, list[Problem]]:
    """Parse one YAML document. Returns (data, locations, problems); data is None on syntax errors."""
    loc = Locations(file)
    try:
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, loc, [Problem(file, line, col, f"YAML syntax error: {_reason(exc)}")]
    except yaml.YAMLError as exc:
        return None, loc, [Problem(file, 1, 1, f"YAML error: {_reason(exc)}")]
    if node is None:
        return None, loc, [Problem(file, 1, 1, "the file is empty; expected a mapping")]
    builder = _Builder(loc)
    try:
        data = builder.build(node, ())
    except RecursionError:
        return None, loc, [Problem(file, 1, 1, "YAML nesting is too deep")]
    return data, loc, builder.problems
