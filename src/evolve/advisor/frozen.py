"""What a frozen node owns, so that no proposal can touch it by any route (SPEC §6).

A frozen node owns its entry in experience.yaml (compared as data: a prompt or system pointed at a
new file, a dataset's `source`, `frozen: false`... all change it), the files it reads (prompt and
system files, a tool's source and the helper modules that source imports from inside the
experience, a dataset's data file, a child experience's folder), the conditions on the edges into
it, and the loop or pipeline that runs it.

A helper module is any file a frozen tool's imports could load from the experience, found from
its source: Python `import`/`from ... import` (and `importlib.import_module("...")`), resolved
as the tool runner does (the tool's folder first on `sys.path`), and JavaScript `import`/
`require` of `./` or `../` paths; followed through the helpers themselves. A file that does not
exist yet but would be imported (a new `tools/json.py` next to a tool that imports `json`)
counts too: creating it changes what the frozen tool runs.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.spec import Experience

_JS_IMPORT = re.compile(
    r"""(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["'](\.{1,2}/[^"']+)["']"""
)
_JS_SUFFIXES = ("", ".js", ".mjs", ".cjs", ".json", "/index.js", "/index.mjs")


@dataclass(frozen=True)
class Owned:
    """A file (or folder) a frozen node owns, and how to say so."""

    node: str
    why: str  # "belongs to" | "imports"

    def reason(self, rel: str) -> str:
        if self.why == "imports":
            return f"it changes {rel}, which the frozen node '{self.node}' imports"
        return f"it changes {rel}, which belongs to the frozen node '{self.node}'"


def owned_paths(experience: Experience) -> tuple[dict[Path, Owned], dict[Path, Owned]]:
    """Files and folders (resolved) that frozen nodes own."""
    root = experience.directory.resolve()
    files: dict[Path, Owned] = {}
    folders: dict[Path, Owned] = {}
    for node in experience.nodes.values():
        if not node.frozen:
            continue
        own = Owned(node.id, "belongs to")
        for path in (node.prompt, node.system, node.source and node.source.path):
            if path is not None:
                files.setdefault(path.resolve(), own)
        if node.impl is not None and node.kind == "experience":
            folders.setdefault(node.impl.resolve(), own)
        elif node.impl is not None:
            files.setdefault(node.impl.resolve(), own)
            for helper in imported_files(node.impl.resolve(), root):
                files.setdefault(helper, Owned(node.id, "imports"))
    return files, folders


def imported_files(source: Path, root: Path) -> set[Path]:
    """Files inside `root` that the tool at `source` may import, directly or through helpers."""
    found: set[Path] = set()
    todo = [source]
    base = source.parent  # the tool runner puts the tool's folder first on sys.path
    while todo:
        current = todo.pop()
        for candidate in _candidates(current, base):
            candidate = candidate.resolve()
            if candidate in found or candidate == source or not candidate.is_relative_to(root):
                continue
            found.add(candidate)
            if candidate.is_file():
                todo.append(candidate)
    return found


def _candidates(path: Path, base: Path) -> list[Path]:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if path.suffix in (".mjs", ".js", ".cjs"):
        return [
            Path(str(path.parent / spec) + suffix)
            for spec in _JS_IMPORT.findall(text)
            for suffix in _JS_SUFFIXES
        ]
    if path.suffix != ".py":
        return []
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    found: list[Path] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found += _module_files(base, alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            start = base if not node.level else _up(path.parent, node.level - 1)
            parts = node.module.split(".") if node.module else []
            found += _module_files(start, parts)
            for alias in node.names:  # `from pkg import mod` may load pkg/mod.py
                found += _module_files(start, [*parts, alias.name])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found += _module_files(base, node.args[0].value.split("."))
    return found


def _up(path: Path, levels: int) -> Path:
    for _ in range(levels):
        path = path.parent
    return path


def _module_files(start: Path, parts: list[str]) -> list[Path]:
    """Every file that importing the dotted module `parts` from `start` may execute."""
    found = []
    for i in range(1, len(parts) + 1):
        stem = start.joinpath(*parts[:i])
        found += [stem.with_name(stem.name + ".py"), stem / "__init__.py"]
    return found


def spec_changes(experience: Experience, before: Any, after: Any) -> str:
    """Why the patched spec data `after` touches a frozen node (compared with `before`), or ''."""
    frozen = {n.id for n in experience.nodes.values() if n.frozen}
    if not frozen:
        return ""
    old, new = _entries(before, "nodes"), _entries(after, "nodes")
    for node_id in sorted(frozen):
        if node_id in new and new[node_id] != old.get(node_id):
            return f"it changes the frozen node '{node_id}'"
    runs = {g.id: g.body for g in experience.loops.values() if g.body in frozen}
    runs |= {
        p.id: next(s for s in p.stages if s in frozen)
        for p in experience.pipelines.values()
        if frozen & set(p.stages)
    }
    for group, holder in (("loops", "loop"), ("pipelines", "pipeline")):
        old_groups, new_groups = _entries(before, group), _entries(after, group)
        for group_id, node_id in sorted(runs.items()):
            if group_id in new_groups and new_groups[group_id] != old_groups.get(group_id):
                return f"it changes the {holder} '{group_id}' that runs the frozen node '{node_id}'"
    targets = {**{n: n for n in frozen}, **runs}
    conditions = {(e.get("from"), e.get("to")): e.get("when") for e in _edges(before)}
    for edge in _edges(after):
        key = (edge.get("from"), edge.get("to"))
        if key[1] in targets and edge.get("when") != conditions.get(key):
            node = targets[key[1]]
            into = f"the frozen node '{node}'" + (f" (in '{key[1]}')" if key[1] != node else "")
            verb = "adds" if edge.get("when") is not None else "removes"
            return f"it {verb} a condition (when) on the edge {key[0]} -> {key[1]} into {into}"
    return ""


def _graph_list(data: Any, key: str) -> list[Any]:
    graph = data.get("graph") if isinstance(data, dict) else None
    items = graph.get(key) if isinstance(graph, dict) else None
    return [x for x in items if isinstance(x, dict)] if isinstance(items, list) else []


def _entries(data: Any, key: str) -> dict[str, Any]:
    return {str(x.get("id")): x for x in _graph_list(data, key)}


def _edges(data: Any) -> list[dict[str, Any]]:
    return _graph_list(data, "edges")
