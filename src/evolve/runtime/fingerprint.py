"""Fingerprints: what produced a node's result, as one hash, so a later run can tell whether
reusing that result is the same as executing the node again.

A fingerprint covers, for one node (and one item of it):
- the node's definition as loaded, without the fields that say *how* it runs rather than *what*
  it computes (`description`, `phase`, `frozen`, `on_error`, `timeout_ms`, `cache`, and the
  `for_each` concurrency);
- the content of every file it runs or sends: its tool file and the local modules that file
  imports (Python `import`/`from` statements and JavaScript relative `import`s, followed
  recursively inside the experience directory), its prompt and system files, its skill folder,
  its dataset file, every file of a child experience;
- the model it asks (after `--model`, node, `runtime.model` and `EVOLVE_MODEL` precedence) with the
  request settings that are part of its definition (`temperature`, `max_tokens`, `schema`);
- its resolved inputs: resolved `args`, the state fields it `reads`, its edge inputs, and under
  `for_each` the item and its index.

Everything here is a pure function of its arguments and of file contents; `NodePrint` computes
the per-node part once and hashes each item's inputs on top of it.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from evolve import jsonvalue
from evolve.spec.expressions import Expression
from evolve.spec.model import Node

VERSION = 1  # bump when what a fingerprint covers changes: older results then never match
HOW_NOT_WHAT = ("description", "phase", "frozen", "on_error", "timeout_ms", "cache")
SKIPPED_DIRS = {".evolve", ".git", "__pycache__", "node_modules", ".venv"}
JS_IMPORT = re.compile(r"""(?:import|export)[^'"`;]*?from\s*['"](\.{1,2}/[^'"]+)['"]""")
JS_BARE_IMPORT = re.compile(r"""(?:import\s*\(?\s*|require\s*\(\s*)['"](\.{1,2}/[^'"]+)['"]""")


_AS_IS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any, root: Path) -> Any:
    """A node's definition as JSON: paths relative to the experience, expressions as written."""
    if type(value) in _AS_IS:  # most fields
        return value
    if isinstance(value, Expression):
        return value.source
    if isinstance(value, Path):
        return _relative(value, root)
    names = _field_names(type(value))
    if names is not None:
        return {name: _plain(getattr(value, name), root) for name in names}
    if isinstance(value, dict):
        return {str(k): _plain(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, root) for v in value]
    return value


@lru_cache(maxsize=256)
def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass type's field names as a definition shows them (a skill's body is covered by
    its folder's files); None for any other type."""
    if not dataclasses.is_dataclass(kind):
        return None
    return tuple(f.name for f in dataclasses.fields(kind) if f.name != "body")


@lru_cache(maxsize=65536)
def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def node_definition(node: Node, root: Path) -> dict[str, Any]:
    """The fields of a node that decide what it computes, as plain JSON."""
    plain = {}
    for name in _what_fields(type(node)):
        value = getattr(node, name)
        plain[name] = value if type(value) in _AS_IS else _plain(value, root)
    if node.for_each is not None:
        plain["for_each"] = {"source": node.for_each.source.source}
    return plain


@lru_cache(maxsize=16)
def _what_fields(kind: type) -> tuple[str, ...]:
    """The fields of a node type that say what it computes (see `HOW_NOT_WHAT`)."""
    return tuple(name for name in _field_names(kind) or () if name not in HOW_NOT_WHAT)


def _stamp(path: Path) -> tuple[int, int]:
    """What tells a file's content changed, for the caches below (a run reads each file once)."""
    try:
        found = path.stat()
    except OSError:
        return (-1, -1)
    return (found.st_mtime_ns, found.st_size)


def python_helpers(path: Path, root: Path) -> list[Path]:
    """The local modules a Python file imports, found next to it or at the experience root."""
    return list(_python_helpers(path, root, _stamp(path)))


@lru_cache(maxsize=4096)
def _python_helpers(path: Path, root: Path, stamp: tuple[int, int]) -> tuple[Path, ...]:
    try:
        tree = ast.parse(path.read_text("utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return ()
    names: list[tuple[int, str]] = []
    for statement in ast.walk(tree):
        if isinstance(statement, ast.Import):
            names += [(0, alias.name) for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom):
            module = statement.module or ""
            names.append((statement.level, module))
            names += [(statement.level, f"{module}.{a.name}".strip(".")) for a in statement.names]
    found: list[Path] = []
    for level, name in names:
        bases = [path.parent] if level == 0 else [_up(path.parent, level - 1)]
        if level == 0 and root not in bases:
            bases.append(root)
        for base in bases:
            module = _module_file(base, name)
            if module is not None and _inside(module, root):
                found.append(module)
                break
    return tuple(found)


def _up(directory: Path, levels: int) -> Path:
    for _ in range(levels):
        directory = directory.parent
    return directory


def _module_file(base: Path, dotted: str) -> Path | None:
    if not dotted:
        return None
    target = base.joinpath(*dotted.split("."))
    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def js_helpers(path: Path, root: Path) -> list[Path]:
    """The relative modules a JavaScript file imports."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    found = []
    for spec in JS_IMPORT.findall(text) + JS_BARE_IMPORT.findall(text):
        candidate = (path.parent / spec).resolve()
        if candidate.is_file() and _inside(candidate, root):
            found.append(candidate)
    return found


@lru_cache(maxsize=65536)
def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _tree(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not SKIPPED_DIRS.intersection(p.relative_to(directory).parts)
    )


def source_files(node: Node, root: Path) -> list[Path]:
    """Every file whose content decides what the node computes, helpers included, sorted. Read
    from `sources_key(node)` alone, so nodes with the same key have the same files."""
    experience, impl, prompt, system, skill, source = sources_key(node)
    files: list[Path] = [p for p in (prompt, system) if p is not None]
    if experience and impl is not None:
        files += _tree(impl)
    elif impl is not None:
        files.append(impl)
    if skill is not None:
        files += _tree(skill)
    if source is not None:
        files.append(source)
    pending, seen = list(files), set()
    while pending:
        file = pending.pop()
        if file.resolve() in seen or not file.is_file():
            continue
        seen.add(file.resolve())
        if file.suffix == ".py":
            pending += python_helpers(file, root)
        elif file.suffix in (".mjs", ".js", ".cjs"):
            pending += js_helpers(file, root)
    return sorted(seen)


def sources_key(node: Node) -> tuple[Any, ...]:
    """All `source_files` reads of a node: nodes alike in it have the same source files (a
    1,000-node chain of one tool finds them once)."""
    return (
        node.kind == "experience",
        node.impl,
        node.prompt,
        node.system,
        node.skill.directory if node.skill is not None else None,
        node.source.path if node.source is not None else None,
    )


def file_digests(node: Node, root: Path) -> dict[str, str]:
    """Path (relative to the experience) -> sha256 of the content, for every source file."""
    return {_relative(f, root): _sha256(f, _stamp(f)) for f in source_files(node, root)}


@lru_cache(maxsize=4096)
def _sha256(path: Path, stamp: tuple[int, int]) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def value_digest(value: Any) -> str:
    """A hash of one JSON value (how a state value read enters a fingerprint)."""
    return "v:" + _digest(value)


def _digest(value: Any) -> str:
    text = jsonvalue.canonical(value)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_last_files: tuple[dict[str, str], str] = ({}, "{}")  # the last files encoded, and their text


def _files_text(files: dict[str, str]) -> str:
    """`canonical(files)`, encoded once for the nodes in a row that share one files dict."""
    global _last_files
    last = _last_files
    if last[0] is not files:
        last = _last_files = (files, jsonvalue.canonical(files))
    return last[1]


@dataclass(frozen=True)
class NodePrint:
    """The per-node part of a fingerprint (definition, files, model), computed once per run."""

    node_id: str
    digest: str
    definition: str  # digest of the definition alone
    files: dict[str, str]
    model: str | None

    @classmethod
    def of(
        cls,
        experience: str,
        node: Node,
        root: Path,
        model: str | None,
        files: dict[str, str] | None = None,
    ) -> NodePrint:
        """The node's print; `files` are its `file_digests` when the caller has them already."""
        files = file_digests(node, root) if files is None else files
        definition = _digest({"experience": experience, "node": node_definition(node, root)})
        # the canonical text of {"v", "definition", "files", "model"}, keys in sorted order, with
        # the files' part encoded once for the nodes that share their files (a chain of one tool)
        text = (
            f'{{"definition":"{definition}","files":{_files_text(files)},'
            f'"model":{jsonvalue.canonical(model)},"v":{VERSION}}}'
        )
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return cls(node.id, digest, definition, files, model)

    def changes(self, before: NodePrint) -> list[str]:
        """What differs from an earlier print of the same node, for people."""
        found = []
        if self.definition != before.definition:
            found.append("its definition in experience.yaml changed")
        for path in sorted(set(self.files) | set(before.files)):
            if path not in before.files:
                found.append(f"{path} is new")
            elif path not in self.files:
                found.append(f"{path} is no longer used")
            elif self.files[path] != before.files[path]:
                found.append(f"{path} changed")
        if self.model != before.model:
            found.append(f"its model changed ({before.model} -> {self.model})")
        return found

    def with_inputs(self, inputs: dict[str, Any]) -> str:
        """The fingerprint of one execution: this node given these resolved inputs."""
        plain = {k: v for k, v in inputs.items() if not callable(v)}
        # the canonical text of {"node": digest, "inputs": plain}, without building that object
        text = f'{{"inputs":{jsonvalue.canonical(plain)},"node":"{self.digest}"}}'
        return "fp:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
