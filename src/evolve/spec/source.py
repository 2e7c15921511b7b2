"""Parse YAML safely into plain data, keeping where every key and value stood.

`parse_yaml` composes the document once (PyYAML's safe composer), rejects duplicate keys, and
builds the Python value itself, recording the 1-based line and column of each mapping key and each
value by JSON path, so later checks can point at the exact spot. Only the safe YAML tags are built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from evolve.errors import Problem

JsonPath = tuple[str | int, ...]
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


@dataclass
class Locations:
    """Where each part of a parsed document stood in its file."""

    file: str
    values: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    text: str = ""
    scalars: dict[JsonPath, tuple[int, int, str | None, str]] = field(default_factory=dict)
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
        line, col = self._inside(path, offset)
        return Problem(self.file, line, col, message, json_path(path))

    def _inside(self, path: JsonPath, offset: int) -> tuple[int, int]:
        """Where character `offset` of the string at `path` stands in the file.

        The string's characters are found, in order, in its source text, which may also hold an
        anchor or tag, quotes, escapes, a block scalar header, indentation, and line breaks that
        folding turned into spaces.
        """
        if path not in self.scalars:
            line, col = self.value(path)
            return line, col + offset
        start, end, style, value = self.scalars[path]
        raw = self.text[start:end]
        at = raw.find("\n") + 1 if style in ("|", ">") else raw.find(style) + 1 if style else 0
        for index, char in enumerate(value[: offset + 1]):
            found = _find(raw, char, at)
            if found != -1:  # else written as an escape: stay put
                at = found if index == offset else found + 1
        return _position(self.text, start + at)


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of `index` in `text`, counting line breaks as YAML does."""
    breaks = list(_BREAK.finditer(text, 0, index))
    return len(breaks) + 1, index - (breaks[-1].end() if breaks else 0) + 1


def _find(raw: str, char: str, start: int) -> int:
    """Where `char` of a scalar's value is next in its source (a space may be a folded break)."""
    if char != " ":
        return raw.find(char, start)
    found = [i for i in (raw.find(" ", start), raw.find("\n", start)) if i != -1]
    return min(found, default=-1)


def json_path(path: JsonPath) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same safe tags, in C when built


class _Loader(_SAFE):  # type: ignore[misc,valid-type]
    """The safe loader, with each plain scalar's tag found once per distinct text.

    PyYAML asks the resolver for every scalar, which tries its regular expressions each time; a
    spec repeats the same keys and values many times. With no path resolvers registered (none
    are, for the safe loader), a plain scalar's tag depends on its text alone, a quoted one's is
    always `str`, and a collection's is its kind's."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._tags: dict[str, str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            if not implicit[0]:
                return _STR_TAG
            tag = self._tags.get(value)
            if tag is None:
                tag = self._tags[value] = super().resolve(kind, value, implicit)
            return tag
        return _SEQ_TAG if kind is yaml.SequenceNode else _MAP_TAG

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass  # only path resolvers need the path

    def ascend_resolver(self) -> None:
        pass


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str")}
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 200
# aliases can make a small file expand exponentially ("billion laughs"): the values that aliases
# add are capped, not the values written out, so a large spec with no alias always loads
_MAX_EXPANSION = 100_000


def _mark(node: yaml.Node | yaml.Event) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _short(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


class _Builder:
    """Turns a composed node tree into Python values, recording locations and duplicate keys."""

    def __init__(self, locations: Locations):
        self.loc = locations
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")

    def _drop(self, path: JsonPath, message: str) -> None:
        """Report a value that cannot be built; it becomes None, and nothing else is said of it."""
        self.problems.append(self.loc.problem(path, message))
        self.loc.broken.add(path)

    def build(self, node: yaml.Node, path: JsonPath, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            self._drop(path, "YAML nesting is too deep")
            return None
        if path not in self.loc.values:
            self.loc.values[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            start = node.start_mark
            self.loc.scalars[path] = (start.index, node.end_mark.index, node.style, node.value)
            if node.tag == _STR_TAG:  # most values: what the constructor would build
                return node.value
            return self._scalar(node, path)
        if node.tag not in _PLAIN_TAGS:
            self._drop(path, f"unsupported YAML tag '{_short(node.tag)}'")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]

    def _scalar(self, node: yaml.ScalarNode, path: JsonPath) -> Any:
        if node.tag == _TIMESTAMP_TAG:
            return node.value  # JSON has no dates: keep the text as written
        if node.tag == _STR_TAG:
            return node.value  # what the constructor would build, without its dispatch
        if node.tag not in _SCALAR_TAGS | _PLAIN_TAGS:
            self._drop(path, f"unsupported YAML tag '{_short(node.tag)}'")
            return None
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self._drop(path, f"invalid YAML value: {_reason(exc)}")
            return None
        except (ValueError, KeyError):  # an explicit tag on text it cannot read: !!int abc
            self._drop(
                path, f"invalid YAML value: {node.value!r} is not a valid {_short(node.tag)}"
            )
            return None
        if isinstance(value, float) and value != value:  # NaN is not JSON
            return None
        return value

    def _merged(
        self, node: yaml.MappingNode, path: JsonPath, seen: frozenset[int] = frozenset()
    ) -> tuple[list[Any], list[Any]]:
        """The mapping's own key/value pairs, and those `<<` merges in (earlier ones win).

        Unlike PyYAML's flatten_mapping, this leaves the (possibly shared) nodes untouched.
        """
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                break
        else:
            return node.value, []  # the usual case: nothing merged in
        own, merged = [], []
        seen = seen | {id(node)}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                own.append((key_node, value_node))
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if (
                    not isinstance(source, yaml.MappingNode)
                    or source.tag not in _PLAIN_TAGS
                    or id(source) in seen
                ):
                    line, col = _mark(source)
                    self.problems.append(
                        Problem(
                            self.loc.file,
                            line,
                            col,
                            "'<<' merges only mappings (or a list of them)",
                            json_path(path),
                        )
                    )
                    continue
                inner_own, inner_merged = self._merged(source, path, seen)
                merged += inner_own + inner_merged
        return own, merged

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, depth: int) -> dict[str, Any]:
        own, merged = self._merged(node, path)
        own_keys = {id(key_node) for key_node, _ in own} if merged else set()
        result: dict[str, Any] = {}
        keys, values, scalars = self.loc.keys, self.loc.values, self.loc.scalars
        plain = depth + 1 <= _MAX_DEPTH  # a string value may be taken as `build` would
        for key_node, value_node in own + merged if merged else own:
            if key_node.tag == _STR_TAG and type(key_node) is yaml.ScalarNode:  # most keys
                key = key_node.value
            else:
                key = self._key(key_node)
            if key is None:
                line, col = _mark(key_node)
                self.problems.append(
                    Problem(
                        self.loc.file, line, col, "mapping keys must be strings", json_path(path)
                    )
                )
                continue
            child = (*path, key)
            if key in result:
                if merged and id(key_node) not in own_keys:
                    continue  # merged in, but the mapping (or an earlier merge) sets it already
                first_line, _ = self.loc.keys[child]
                line, col = _mark(key_node)
                self.problems.append(
                    Problem(
                        self.loc.file,
                        line,
                        col,
                        f"duplicate key '{key}' (first defined on line {first_line})",
                        json_path(child),
                    )
                )
                continue
            mark = key_node.start_mark
            keys[child] = (mark.line + 1, mark.column + 1)
            if plain and value_node.tag == _STR_TAG and type(value_node) is yaml.ScalarNode:
                # most values: what `build` does with a string, without the call
                mark = value_node.start_mark
                if child not in values:
                    values[child] = (mark.line + 1, mark.column + 1)
                text = value_node.value
                scalars[child] = (mark.index, value_node.end_mark.index, value_node.style, text)
                result[key] = text
            else:
                result[key] = self.build(value_node, child, depth + 1)
        return result

    def _key(self, node: yaml.Node) -> str | None:
        """A mapping key as a string (numbers and booleans as written in JSON), else None."""
        if node.tag == _STR_TAG and isinstance(node, yaml.ScalarNode):  # most keys
            return node.value
        if not isinstance(node, yaml.ScalarNode) or node.tag not in _SCALAR_TAGS | {_TIMESTAMP_TAG}:
            return None
        if node.tag in (_TIMESTAMP_TAG, _STR_TAG):
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


def _unbuildable(text: str, file: str) -> Problem | None:
    """A document too deep, too large once its aliases expand, or recursive, found from the
    parser's events before anything is composed or built.

    libyaml composes recursively in C: thousands of levels ("[[[[...") overflow its stack and
    kill the process. Ten lines of nested aliases expand to a billion values, so the values
    aliases add are counted (each alias adds its anchor's full expanded size) and capped; values
    written out are not, so a large spec without aliases loads. An alias inside its own anchor
    would be built forever.

    Newer libyaml releases stop at a nesting cap of their own, which their scanner can reach
    (it reads flow collections ahead) before our limit shows in the events. evolve's limit must
    not move with the library's version, so when libyaml stops on nesting the same walk is
    made again with PyYAML's pure-Python parser, which has no cap: the error is the same
    located problem whichever libyaml is installed.

    The walk parses the whole document once more, so it is skipped when the text alone shows
    there is nothing to find: no anchor (`&`), so no alias can expand or recurse, and a bound on
    the nesting (`_nesting_bound`) within the limit.
    """
    if "&" not in text and _nesting_bound(text) <= _MAX_DEPTH:
        return None
    try:
        return _walk_events(_Loader(text), file)
    except yaml.MarkedYAMLError as exc:
        if _SAFE is yaml.SafeLoader or "nesting" not in _reason(exc):
            raise
        return _walk_events(yaml.SafeLoader(text), file)


def _nesting_bound(text: str) -> int:
    """At least as many levels as the document nests, from its text alone.

    Along any chain of nested block collections the column where each starts grows, except for
    a block sequence written at its parent mapping's column, whose entries then start further
    right: so a block chain is at most twice as deep as the widest line is long (plus one).
    Flow collections nest only inside block ones, each opened by a `[` or `{` somewhere.
    """
    widest = max(map(len, _BREAK.split(text)))
    return 2 * (widest + 1) + text.count("[") + text.count("{")


def _walk_events(loader: Any, file: str) -> Problem | None:
    sizes: dict[str, int] = {}  # anchor -> number of values it expands to
    open_: list[tuple[str | None, int]] = []  # enclosing collections: anchor, count at start
    unfinished: set[str] = set()  # anchors whose latest definition is a collection still open
    count = 0  # values so far, aliases expanded: what sizes are measured in
    expanded = 0  # of those, the values that aliases added
    try:
        while loader.check_event():
            event = loader.get_event()
            message = None
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in unfinished:
                    message = f"recursive YAML alias '*{event.anchor}' (inside its own anchor)"
                size = sizes.get(event.anchor, 1)
                count += size
                expanded += size
            elif isinstance(event, yaml.ScalarEvent):
                count += 1
                if event.anchor:
                    sizes[event.anchor] = 1
                    unfinished.discard(event.anchor)
            elif isinstance(event, yaml.CollectionStartEvent):
                count += 1
                open_.append((event.anchor, count))
                if event.anchor:
                    unfinished.add(event.anchor)
                if len(open_) > _MAX_DEPTH:
                    message = "YAML nesting is too deep"
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, start = open_.pop()
                if anchor:
                    sizes[anchor] = count - start + 1
                    unfinished.discard(anchor)
            if expanded > _MAX_EXPANSION:
                message = f"YAML aliases expand to more than {_MAX_EXPANSION} values"
            if message:
                return Problem(file, *_mark(event), message)
    finally:
        loader.dispose()
    return None


class _Composed(Exception):
    """The document needs the composed tree: an anchor, alias, tag, merge, complex or repeated
    key, a top level that is not a mapping, nesting past the limit, or a syntax error."""


class _EventBuilder(_Builder):
    """Builds the usual document straight from the parser's events, skipping the composed tree
    (half the cost of loading a large spec): the same values, locations and problems as
    `_Builder`, which `parse_yaml` falls back to (`_Composed`) for anything else."""

    def __init__(self, locations: Locations, loader: Any) -> None:
        super().__init__(locations)
        self._next = loader.get_event
        self._resolve = loader.resolve

    def document(self) -> Any:
        for kind in (yaml.StreamStartEvent, yaml.DocumentStartEvent):
            if type(self._next()) is not kind:
                raise _Composed
        top = self._next()
        if type(top) is not yaml.MappingStartEvent:
            raise _Composed
        data = self._value(top, (), 0)
        if type(self._next()) is not yaml.DocumentEndEvent:
            raise _Composed
        if type(self._next()) is not yaml.StreamEndEvent:
            raise _Composed  # another document: the composer says so
        return data

    def _value(self, event: Any, path: JsonPath, depth: int) -> Any:
        kind = type(event)
        if kind is yaml.AliasEvent or event.tag is not None or event.anchor is not None:
            raise _Composed
        if depth > _MAX_DEPTH:
            raise _Composed
        mark = event.start_mark
        if path not in self.loc.values:
            self.loc.values[path] = (mark.line + 1, mark.column + 1)
        if kind is yaml.ScalarEvent:
            value = event.value
            self.loc.scalars[path] = (mark.index, event.end_mark.index, event.style, value)
            tag = self._resolve(yaml.ScalarNode, value, event.implicit)
            if tag == _STR_TAG:
                return value
            node = yaml.ScalarNode(tag, value, mark, event.end_mark, event.style)
            return self._scalar(node, path)
        if kind is yaml.SequenceStartEvent:
            items: list[Any] = []
            while type(item := self._next()) is not yaml.SequenceEndEvent:
                items.append(self._value(item, (*path, len(items)), depth + 1))
            return items
        return self._pairs(path, depth)  # a mapping

    def _pairs(self, path: JsonPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        keys = self.loc.keys
        while type(event := self._next()) is not yaml.MappingEndEvent:
            if type(event) is not yaml.ScalarEvent or event.tag is not None or event.anchor:
                raise _Composed
            tag = self._resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag == _STR_TAG:
                key = event.value
            elif tag == _MERGE_TAG:
                raise _Composed
            else:
                node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark)
                key = self._key(node)
            child = (*path, key)
            if key is None or key in result:
                raise _Composed  # a problem the composed build reports
            mark = event.start_mark
            keys[child] = (mark.line + 1, mark.column + 1)
            result[key] = self._value(self._next(), child, depth + 1)
        return result


def parse_yaml(text: str, file: str) -> tuple[Any, Locations, list[Problem]]:
    """Parse one YAML document: (data, locations, problems); data is None on syntax errors."""
    try:
        problem = _unbuildable(text, file)
    except yaml.YAMLError as exc:
        return None, Locations(file, text=text), [_syntax_problem(exc, text, file)]
    if problem:
        return None, Locations(file, text=text), [problem]
    return _from_events(text, file) or _from_tree(text, file)


def _from_events(text: str, file: str) -> tuple[Any, Locations, list[Problem]] | None:
    """`parse_yaml` of the usual document from its events, or None when it needs the tree."""
    loc = Locations(file, text=text)
    loader = _Loader(text)
    try:
        builder = _EventBuilder(loc, loader)
        data = builder.document()
    except (_Composed, yaml.YAMLError, RecursionError):
        return None
    finally:
        loader.dispose()
    return data, loc, builder.problems


def _from_tree(text: str, file: str) -> tuple[Any, Locations, list[Problem]]:
    """`parse_yaml` through the composed tree: any document, and its syntax errors located."""
    loc = Locations(file, text=text)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        return None, loc, [_syntax_problem(exc, text, file)]
    empty = (
        isinstance(node, yaml.ScalarNode)
        and node.tag in _SCALAR_TAGS
        and not node.value
        and not node.style
    )  # a document of only `---`: its null stands past the end of the file
    if node is None or empty:
        return None, loc, [Problem(file, 1, 1, "the file is empty; expected a mapping")]
    builder = _Builder(loc)
    try:
        data = builder.build(node, ())
    except RecursionError:
        return None, loc, [Problem(file, 1, 1, "YAML nesting is too deep")]
    return data, loc, builder.problems


def _syntax_problem(exc: yaml.YAMLError, text: str, file: str) -> Problem:
    """The problem a YAML error makes, located where the parser stopped."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem(file, 1, 1, f"YAML error: {_reason(exc)}")
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    lines = _BREAK.split(text)
    if line > len(lines):  # the end of a file that has no final line break
        line, col = len(lines), len(lines[-1]) + 1
    start = exc.context_mark if exc.context and exc.problem_mark else None
    where = ""
    if start and exc.context.startswith("while") and start.line + 1 != line:
        # an unclosed [ { or quote: say where it was opened
        where = f" ({exc.context} started at line {start.line + 1}, column {start.column + 1})"
    elif start and not exc.context.startswith("while"):  # "found duplicate anchor; ..."
        where = f" ({exc.context} at line {start.line + 1}, column {start.column + 1})"
    return Problem(file, line, col, f"YAML syntax error: {_reason(exc)}{where}")
