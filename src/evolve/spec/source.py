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
    broken: set[JsonPath] = field(default_factory=set)  # values dropped (None) after a problem

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
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str")}
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 200
_MAX_VALUES = 100_000  # aliases can make a small file expand exponentially ("billion laughs")


def _mark(node: yaml.Node | yaml.Event) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _short(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


class _Builder:
    """Turns a composed node tree into Python values, recording locations and duplicate keys."""

    def __init__(self, locations: Locations):
        self.loc = locations
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")
        self._count = 0

    def _drop(self, path: JsonPath, message: str) -> None:
        """Report a value that cannot be built; it becomes None, and nothing else is said of it."""
        self.problems.append(self.loc.problem(path, message))
        self.loc.broken.add(path)

    def _counted(self, node: yaml.Node) -> None:
        self._count += 1
        if self._count > _MAX_VALUES:
            raise _TooLarge(node)

    def build(self, node: yaml.Node, path: JsonPath, depth: int = 0) -> Any:
        self._counted(node)
        if depth > _MAX_DEPTH:
            self._drop(path, "YAML nesting is too deep")
            return None
        self.loc.values.setdefault(path, _mark(node))
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            self._drop(path, f"unsupported YAML tag '{_short(node.tag)}'")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if node.style in ("'", '"'):
            self.loc.quoted.add(path)
        return self._scalar(node, path)

    def _scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        if node.tag == _TIMESTAMP_TAG:
            return node.value  # JSON has no dates: keep the text as written
        if node.tag not in _SCALAR_TAGS | _PLAIN_TAGS:
            self._drop(path, f"unsupported YAML tag '{_short(node.tag)}'")
            return None
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self._drop(path, f"invalid YAML value: {_reason(exc)}")
            return None
        except (ValueError, KeyError):  # an explicit tag on text it cannot read: !!int abc
            self._drop(path, f"invalid YAML value: {node.value!r} is not a valid "
                             f"{_short(node.tag)}")
            return None
        if isinstance(value, float) and value != value:  # NaN is not JSON
            return None
        return value

    def _merged(self, node: yaml.MappingNode, path: JsonPath,
                seen: frozenset[int] = frozenset()) -> tuple[list[Any], list[Any]]:
        """The mapping's own key/value pairs, and those `<<` merges in (earlier ones win).

        Unlike PyYAML's flatten_mapping, this leaves the (possibly shared) nodes untouched.
        """
        own, merged = [], []
        seen = seen | {id(node)}
        for key_node, value_node in node.value:
            self._counted(key_node)
            if key_node.tag != _MERGE_TAG:
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) \
                else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode) or source.tag not in _PLAIN_TAGS \
                        or id(source) in seen:
                    line, col = _mark(source)
                    self.problems.append(Problem(self.loc.file, line, col, "'<<' merges only "
                                                 "mappings (or a list of them)", json_path(path)))
                    continue
                inner_own, inner_merged = self._merged(source, path, seen)
                merged += inner_own + inner_merged
        return own, merged

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict[str, Any]:
        own, merged = self._merged(node, path)
        own_keys = {id(key_node) for key_node, _ in own}
        result: dict[str, Any] = {}
        for key_node, value_node in own + merged:
            key = self._key(key_node)
            if key is None:
                line, col = _mark(key_node)
                self.problems.append(
                    Problem(self.loc.file, line, col, "mapping keys must be strings",
                            json_path(path))
                )
                continue
            child = (*path, key)
            if key in result:
                if id(key_node) not in own_keys:
                    continue  # merged in, but the mapping (or an earlier merge) sets it already
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

    def _key(self, node: yaml.Node) -> str | None:
        """A mapping key as a string (numbers and booleans as written in JSON), else None."""
        if not isinstance(node, yaml.ScalarNode) or node.tag not in _SCALAR_TAGS | {
                _TIMESTAMP_TAG}:
            return None
        if node.tag == _TIMESTAMP_TAG:
            return node.value
        try:
            key = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, KeyError):
            return None
        if key is None:
            return None
        return str(key).lower() if isinstance(key, bool) else str(key)


def _reason(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return problem.strip()


def _too_deep(text: str) -> tuple[int, int] | None:
    """Where the nesting first gets deeper than _MAX_DEPTH, found from the parser's events.

    libyaml composes recursively in C: thousands of levels ("[[[[...") overflow its stack and
    kill the process, so this is checked before composing.
    """
    loader = _LOADER(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > _MAX_DEPTH:
                    return _mark(event)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()
    return None


def parse_yaml(text: str, file: str) -> tuple[Any, Locations, list[Problem]]:
    """Parse one YAML document. Returns (data, locations, problems); data is None on syntax errors."""
    loc = Locations(file)
    try:
        deep = _too_deep(text)
        if deep:
            return None, loc, [Problem(file, *deep, "YAML nesting is too deep")]
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
    except _TooLarge as exc:
        line, col = _mark(exc.node)
        return None, loc, [Problem(file, line, col, f"the document expands to more than "
                                                    f"{_MAX_VALUES} values (nested aliases?)")]
    return data, loc, builder.problems
