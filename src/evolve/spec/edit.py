"""Change values in an experience.yaml by editing its text, and nothing else.

`set_values` makes each change as the smallest text edit it can: a scalar's own characters are
replaced, a missing key becomes one new line (block style) or one `, key: value` (flow style), and
every comment, quote, blank line, key order and indentation around it stays as written, so a diff
of the result touches only the lines that change. New values are written on one line, in flow
style. Positions come from PyYAML's safe parser events, which hold what `yaml.compose` builds its
nodes from, plus the place of every alias (a composed tree hands back the anchored node instead).
After each change the text is loaded again and must equal the old data with the changes applied,
or `YamlEditError` is raised: no edit can quietly change another value.
"""

from __future__ import annotations

import copy
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml

from evolve.errors import EvolveError
from evolve.spec.source import json_path

KeyPath = tuple[str | int, ...]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same safe tags, in C when built
_ANCHOR = re.compile(r"&\S+\s+")
_MISSING = object()


class YamlEditError(EvolveError):
    """A change that cannot be made to the YAML text: a bad path, invalid YAML, an unsafe edit."""


@dataclass
class _Node:
    """One node of the document and the characters it spans in the text."""

    kind: str  # "scalar", "mapping", "sequence" or "alias"
    start: int  # includes an anchor or tag written before the value
    end: int  # a block collection ends where the next token starts: see _content_end
    flow: bool = False
    style: str = ""  # a scalar's: "" plain, "'", '"', "|" or ">"
    value: str = ""  # a scalar's text; an alias's anchor name
    anchor: str | None = None
    items: list[_Node] = field(default_factory=list)  # a mapping's keys and values alternate


def set_values(text: str, changes: list[tuple[KeyPath, Any]]) -> str:
    """`text` with each (path, value) change made in turn, everything else kept byte for byte.

    A path is keys and list indexes from the document root. An existing scalar is replaced in
    place; a dict given for an existing mapping sets its keys one by one; a missing key is added
    to its mapping, creating missing mappings on the way (`runtime: {concurrency: 8}`).
    """
    expected = _load(text, "the YAML text is not valid")
    for path, value in changes:
        path = tuple(path)
        text = _set(text, path, value)
        expected = _patched(expected, path, value)
        where = _difference(expected, _load(text, f"setting {json_path(path)} broke the YAML"), ())
        if where is not None:
            raise YamlEditError(
                f"cannot set {json_path(path)} safely: the edited text would make "
                f"{json_path(where)} differ from what was asked (is it shared through an anchor "
                "or a `<<` merge, or tagged?)"
            )
    return text


# -- reading -------------------------------------------------------------------------------------


def _load(text: str, context: str) -> Any:
    try:
        return yaml.load(text, Loader=_LOADER)  # a safe loader
    except yaml.YAMLError as exc:
        raise YamlEditError(f"{context}: {_reason(exc)}") from exc


def _reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + problem.strip()


def _parse(text: str) -> _Node:
    loader = _LOADER(text)
    try:
        loader.get_event()  # the stream's start
        if loader.check_event(yaml.StreamEndEvent):
            raise YamlEditError("the YAML text is empty: there is no mapping to set values in")
        loader.get_event()  # the document's start
        root = _compose(loader)
        loader.get_event()  # the document's end
        if not loader.check_event(yaml.StreamEndEvent):
            raise YamlEditError("the YAML text holds several documents; expected one")
    except yaml.YAMLError as exc:
        raise YamlEditError(f"the YAML text is not valid: {_reason(exc)}") from exc
    except RecursionError as exc:
        raise YamlEditError("the YAML text is nested too deeply to edit") from exc
    finally:
        loader.dispose()
    return root


def _compose(loader: Any) -> _Node:
    event = loader.get_event()
    start, end = event.start_mark.index, event.end_mark.index
    if isinstance(event, yaml.AliasEvent):
        return _Node("alias", start, end, value=event.anchor)
    if isinstance(event, yaml.ScalarEvent):
        return _Node(
            "scalar", start, end, style=event.style or "", value=event.value, anchor=event.anchor
        )
    mapping = isinstance(event, yaml.MappingStartEvent)
    node = _Node(
        "mapping" if mapping else "sequence",
        start,
        end,
        flow=bool(event.flow_style),
        anchor=event.anchor,
    )
    closing = yaml.MappingEndEvent if mapping else yaml.SequenceEndEvent
    while not loader.check_event(closing):
        node.items.append(_compose(loader))
    node.end = loader.get_event().end_mark.index
    return node


def _lookup(mapping: _Node, key: str) -> tuple[_Node, _Node] | None:
    """The key and value nodes of `key` (the last one if repeated, as loading keeps it)."""
    pairs = list(zip(mapping.items[::2], mapping.items[1::2], strict=True))
    for key_node, value_node in reversed(pairs):
        if key_node.kind == "scalar" and key_node.value == key:
            return key_node, value_node
    return None


def _where(text: str, index: int) -> str:
    line_start = text.rfind("\n", 0, index) + 1
    return f"line {text.count(chr(10), 0, index) + 1}, column {index - line_start + 1}"


def _describe(node: _Node) -> str:
    if node.kind == "scalar":
        shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        return f"the value {shown!r}" if node.value else "empty"
    return "a list" if node.kind == "sequence" else f"a {node.kind}"


# -- editing -------------------------------------------------------------------------------------


def _set(text: str, path: KeyPath, value: Any) -> str:
    node, key = _parse(text), None
    for depth, part in enumerate(path):
        here = json_path(path[:depth])
        if node.kind == "alias":
            raise YamlEditError(
                f"cannot set {json_path(path)}: {here} is an alias (*{node.value}) at "
                f"{_where(text, node.start)}; change what its anchor holds instead"
            )
        if node.kind == "mapping" and isinstance(part, str):
            found = _lookup(node, part)
            if found is None:
                return _insert(text, node, part, _nested(path, depth + 1, value))
            key, node = found
        elif node.kind == "sequence" and isinstance(part, int) and not isinstance(part, bool):
            if not -len(node.items) <= part < len(node.items):
                raise YamlEditError(
                    f"cannot set {json_path(path)}: {here} (at {_where(text, node.start)}) "
                    f"has {len(node.items)} items, so no item {part}"
                )
            key, node = None, node.items[part]
        else:
            wanted = "a mapping" if isinstance(part, str) else "a list"
            raise YamlEditError(
                f"cannot set {json_path(path)}: {here} is {_describe(node)} at "
                f"{_where(text, node.start)}, not {wanted}"
            )
    if isinstance(value, dict) and node.kind in ("mapping", "alias"):
        if node.kind == "alias":
            raise YamlEditError(
                f"cannot set keys in {json_path(path)}: it is an alias (*{node.value}) at "
                f"{_where(text, node.start)}; change what its anchor holds instead"
            )
        for name, item in value.items():
            text = _set(text, (*path, name), item)
        return text
    return _replace(text, node, key, value)


def _nested(path: KeyPath, depth: int, value: Any) -> Any:
    """The value to add for the missing `path[depth - 1]`: mappings around `value`."""
    for part in reversed(path[depth:]):
        if not isinstance(part, str):
            raise YamlEditError(
                f"cannot set {json_path(path)}: {json_path(path[:depth])} does not exist, and "
                "a list item cannot be created by its index"
            )
        value = {part: value}
    return value


def _replace(text: str, node: _Node, key: _Node | None, value: Any) -> str:
    """`text` with the value `node` spans written as `value` (an anchor before it is kept)."""
    rendered = _render(value)
    if node.kind in ("mapping", "sequence") and not node.flow:
        return _replace_block(text, node, key, rendered)
    start = _own_start(text, node)
    end = _trimmed(text, node.end) if node.style in ("|", ">") else node.end
    if start == end:  # an empty value (null): the parser places it where it found nothing
        if key is not None and ":" not in text[key.end : start]:
            rendered = ": " + rendered  # `{a}` in a flow mapping
        elif text[start - 1 : start] not in (" ", "\t"):
            rendered = " " + rendered
    return text[:start] + rendered + text[end:]


def _replace_block(text: str, node: _Node, key: _Node | None, rendered: str) -> str:
    """A block collection replaced by a one-line value: after its key's `:` (keeping a comment
    on that line), or where the collection starts when it is a list item or the root."""
    end = _trimmed(text, _content_end(node))
    if key is None:
        start = _own_start(text, node)
        return text[:start] + rendered + text[end:]
    colon = text.index(":", key.end)
    line_end = _line_end(text, colon)
    rest = text[colon + 1 : line_end]
    comment = rest[len(rest[: rest.index("#")].rstrip()) :].rstrip() if "#" in rest else ""
    return text[: colon + 1] + " " + rendered + comment + text[end:]


def _insert(text: str, mapping: _Node, key: str, value: Any) -> str:
    """`text` with `key: value` added as the last entry of `mapping`."""
    entry = f"{_render(key)}: {_render(value)}"
    if mapping.flow:
        if not mapping.items:
            at = mapping.end - 1  # the closing brace
            return text[:at] + entry + text[at:]
        at = max(mapping.items[-2].end, mapping.items[-1].end)  # `{a}` has an empty value
        return text[:at] + ", " + entry + text[at:]
    first = mapping.items[0].start
    indent = " " * (first - (text.rfind("\n", 0, first) + 1))
    at = _line_after(text, _content_end(mapping))
    newline = "\r\n" if "\r\n" in text else "\n"
    if at == len(text) and not text.endswith(("\n", "\r")):  # the last line has no line break
        return text + newline + indent + entry
    return text[:at] + indent + entry + newline + text[at:]


def _own_start(text: str, node: _Node) -> int:
    """Where the value itself starts, after an anchor (a tag goes with the old value)."""
    if node.anchor:
        found = _ANCHOR.match(text, node.start)
        if found:
            return found.end()
    return node.start


def _content_end(node: _Node) -> int:
    """Where the last token of `node` ends (a block scalar's end includes its line breaks)."""
    while node.kind in ("mapping", "sequence") and not node.flow and node.items:
        node = node.items[-1]
    return node.end


def _trimmed(text: str, end: int) -> int:
    while end > 0 and text[end - 1] in " \t\r\n":
        end -= 1
    return end


def _line_end(text: str, index: int) -> int:
    found = [i for i in (text.find("\n", index), text.find("\r", index)) if i != -1]
    return min(found, default=len(text))


def _line_after(text: str, end: int) -> int:
    """Where a line added after content that ends at `end` starts: the next line, or `end`
    itself when only indentation precedes it (a block scalar ends after its line breaks)."""
    line_start = text.rfind("\n", 0, end) + 1
    if line_start > 0 and not text[line_start:end].strip(" \t"):
        return line_start
    found = text.find("\n", end)
    return len(text) if found == -1 else found + 1


# -- writing -------------------------------------------------------------------------------------


class _OneLineDumper(yaml.SafeDumper):
    """Writes every value on one line: a string with line breaks is double-quoted, escaped."""

    def choose_scalar_style(self) -> str:
        style = super().choose_scalar_style()
        if style == "'" and self.analysis.multiline:
            return '"'
        return style


def _render(value: Any) -> str:
    """`value` as one line of YAML, valid inside a flow collection and in block context."""
    try:
        text = yaml.dump(
            [value],
            Dumper=_OneLineDumper,
            default_flow_style=True,
            allow_unicode=True,
            sort_keys=False,
            width=sys.maxsize,
        )
    except yaml.representer.RepresenterError as exc:
        raise TypeError(f"cannot write a {type(value).__name__} as YAML: {value!r}") from exc
    return text.rstrip("\n")[1:-1]  # the list's brackets


# -- checking ------------------------------------------------------------------------------------


def _patched(data: Any, path: KeyPath, value: Any) -> Any:
    """`data` with `value` set at `path` as `_set` means it (dicts into mappings key by key)."""
    if path:
        container = {} if data is _MISSING else data
        head = path[0]
        present = (
            head in container
            if isinstance(container, dict)
            else -len(container) <= head < len(container)
        )
        container[head] = _patched(container[head] if present else _MISSING, path[1:], value)
        return container
    if isinstance(data, dict) and isinstance(value, dict):
        for name, item in value.items():
            data[name] = _patched(data.get(name, _MISSING), (), item)
        return data
    return copy.deepcopy(value)


def _difference(expected: Any, actual: Any, path: KeyPath) -> KeyPath | None:
    """The first path where the two documents differ (types too: 1 is not true), or None."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for name in [*expected, *(k for k in actual if k not in expected)]:
            if name not in expected or name not in actual:
                return (*path, name)
            found = _difference(expected[name], actual[name], (*path, name))
            if found is not None:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return path
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found = _difference(left, right, (*path, index))
            if found is not None:
                return found
        return None
    both_nan = (
        isinstance(expected, float)
        and isinstance(actual, float)
        and math.isnan(expected)
        and math.isnan(actual)
    )
    if type(expected) is not type(actual) or (expected != actual and not both_nan):
        return path
    return None
