"""Semantic checks of an experience, and the build of its typed form.

The JSON Schema settles shapes; this module settles meaning: unique ids, references that resolve,
no cycles, declared reads and writes, parsed expressions, files that exist inside the experience
directory, prompt placeholders that name something readable, and valid output schemas. It reads the
raw data defensively (a part with the wrong shape was already reported by the schema and is skipped
here), so all problems are reported together.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve import jsonvalue
from evolve.errors import Problem, did_you_mean
from evolve.spec import model
from evolve.spec.expressions import Expression, ExpressionError, parse_expression
from evolve.spec.source import JsonPath, Locations
from evolve.spec.templates import line_col, placeholders
from evolve.spec.typecheck import path_problems

_FIELD_KEYS = {"merge", "default", "description"}
_DATA_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_CASE_FORMATS = {**_DATA_FORMATS, ".yaml": "yaml", ".yml": "yaml"}
_EVAL_KINDS = ("expr", "impl", "judge")


@dataclass
class _Item:
    """A list entry that is a mapping, with its JSON path."""

    path: JsonPath
    data: dict[str, Any]

    def get(self, key: str, kind: type | tuple[type, ...] = object) -> Any:
        value = self.data.get(key)
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            return None
        return value if isinstance(value, kind) else None


def _items(data: Any, *path: str) -> list[_Item]:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    if not isinstance(data, list):
        return []
    return [_Item((*path, i), x) for i, x in enumerate(data) if isinstance(x, dict)]


def _mapping(data: Any, *path: str) -> dict[str, Any]:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class _Found:
    """A path named in the spec, resolved once however many nodes name it."""

    path: Path
    inside: bool  # inside the experience directory
    exists: bool
    is_file: bool


class Checker:
    def __init__(self, data: dict[str, Any], loc: Locations, root: Path):
        self.data = data
        self.loc = loc
        self.root = root
        self.problems: list[Problem] = []
        self.referenced_files: list[Path] = []
        self.fields = {
            k: v for k, v in _mapping(data, "state", "schema").items() if isinstance(v, dict)
        }
        self.nodes = _items(data, "graph", "nodes")
        self.edges = _items(data, "graph", "edges")
        self.pipelines = _items(data, "graph", "pipelines")
        self.loops = _items(data, "graph", "loops")
        self.expressions: dict[JsonPath, Expression] = {}
        self.paths: dict[JsonPath, Path] = {}
        self.node_ids: dict[str, _Item] = {}
        self.owner: dict[str, str] = {}  # node id -> pipeline/loop id that runs it
        self.judges_reading_case: set[JsonPath] = set()
        # many nodes name the same file: each is resolved and each Python tool parsed once
        self._resolved: dict[str, _Found | str] = {}
        self._defined: dict[Path, set[str] | BaseException] = {}

    def report(self, path: JsonPath, message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.loc.problem(path, message, at_key=at_key))

    def run(self) -> list[Problem]:
        self._check_fields()
        self._check_ids()
        self._check_groups()
        self._check_edges()
        self._check_cycles()
        for node in self.nodes:
            self._check_node(node)
        self._check_evals()
        self._check_cases()
        return self.problems

    # -- state ---------------------------------------------------------------------------------

    def _check_fields(self) -> None:
        import jsonschema

        for name, spec in self.fields.items():
            path: JsonPath = ("state", "schema", name)
            schema = {k: v for k, v in spec.items() if k not in _FIELD_KEYS}
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                where = (*path, *exc.path) if exc.path else path
                self.report(where, f"state field '{name}' has an invalid schema: {exc.message}")
                continue
            if spec.get("merge") == "array_append" and spec.get("type") != "array":
                self.report(
                    (*path, "merge"), f"state field '{name}': merge array_append needs type: array"
                )
            not_json = "default" in spec and jsonvalue.problem(spec["default"], "the default")
            if not_json:
                self.report((*path, "default"), f"state field '{name}': {not_json}")
            elif "default" in spec:
                error = jsonschema.exceptions.best_match(
                    jsonschema.Draft202012Validator(schema).iter_errors(spec["default"])
                )
                if error is not None:
                    self.report(
                        (*path, "default", *error.absolute_path),
                        f"default of state "
                        f"field '{name}' does not match its schema: {error.message}",
                    )

    def _field_ref(self, path: JsonPath, name: Any, verb: str) -> bool:
        if not isinstance(name, str):
            return False
        if name in self.fields:
            return True
        self.report(
            path,
            f"{verb} undeclared state field '{name}'"
            f"{did_you_mean(name, self.fields)} (declare it under state.schema)",
        )
        return False

    # -- ids and references ----------------------------------------------------------------------

    def _check_ids(self) -> None:
        phases = {p.get("id", str) for p in _items(self.data, "phases")} - {None}
        seen: dict[str, JsonPath] = {}
        for item in [*self.nodes, *self.pipelines, *self.loops]:
            ident = item.get("id", str)
            if ident is None:
                continue
            if ident in seen:
                line, _ = self.loc.value((*seen[ident], "id"))
                self.report(
                    (*item.path, "id"), f"duplicate id '{ident}' (first used on line {line})"
                )
                continue
            seen[ident] = item.path
            if item.path[1] == "nodes":
                self.node_ids[ident] = item
        if "phases" in self.data:
            for node in self.nodes:
                phase = node.get("phase", str)
                if phase is not None and phase not in phases:
                    self.report(
                        (*node.path, "phase"),
                        f"unknown phase '{phase}'{did_you_mean(phase, phases)}",
                    )
        self.steps = set(seen)

    def _node_ref(self, path: JsonPath, name: Any, role: str) -> bool:
        if not isinstance(name, str):
            return False
        if name in self.node_ids:
            return True
        hint = did_you_mean(name, self.node_ids)
        self.report(path, f"{role} names unknown node '{name}'{hint}")
        return False

    def _check_groups(self) -> None:
        for pipe in self.pipelines:
            stages = pipe.get("stages", list) or []
            for i, stage in enumerate(stages):
                if self._node_ref((*pipe.path, "stages", i), stage, "pipeline stage"):
                    self._own(stage, pipe, (*pipe.path, "stages", i))
            self._array_path(pipe, "items")
        for loop in self.loops:
            body = loop.get("body", str)
            if self._node_ref((*loop.path, "body"), body, "loop body"):
                self._own(body, loop, (*loop.path, "body"))
            self._expression((*loop.path, "until"), loop.get("until", str), item_allowed=False)

    def _own(self, node: str, group: _Item, path: JsonPath) -> None:
        ident = group.get("id", str)
        if node in self.owner:
            self.report(path, f"node '{node}' already runs inside '{self.owner[node]}'")
        elif ident:
            self.owner[node] = ident

    def _check_edges(self) -> None:
        for edge in self.edges:
            for end in ("from", "to"):
                name = edge.get(end, str)
                if name is None:
                    continue
                path = (*edge.path, end)
                if name in self.owner:
                    self.report(
                        path,
                        f"node '{name}' runs inside '{self.owner[name]}'; "
                        f"connect the edge to '{self.owner[name]}' instead",
                    )
                elif name not in self.steps:
                    hint = did_you_mean(name, self.steps)
                    self.report(path, f"edge '{end}' names unknown node '{name}'{hint}")
            self._expression((*edge.path, "when"), edge.get("when", str), item_allowed=False)

    def _check_cycles(self) -> None:
        from graphlib import CycleError, TopologicalSorter

        closing: dict[tuple[str, str], JsonPath] = {}
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for edge in self.edges:
            source, target = edge.get("from", str), edge.get("to", str)
            if source in self.steps and target in self.steps:
                sorter.add(target, source)
                closing.setdefault((source, target), edge.path)
        try:
            sorter.prepare()
        except CycleError as exc:
            cycle = list(exc.args[1])  # each an immediate predecessor of the next: edge order
            self.report(
                closing[(cycle[-2], cycle[-1])],
                "cycle in the graph: " + " -> ".join(cycle) + " (use a loop to repeat a node)",
            )

    # -- expressions ---------------------------------------------------------------------------

    def _expression(
        self, path: JsonPath, source: str | None, *, item_allowed: bool, case_allowed: bool = False
    ) -> None:
        if source is None:
            return
        try:
            expression = parse_expression(source)
        except ExpressionError as exc:
            self.problems.append(
                self.loc.expression_problem(path, exc.offset, f"invalid expression: {exc}")
            )
            return
        for ref in expression.paths:
            if ref.root == "$case":
                if not case_allowed:
                    self.problems.append(
                        self.loc.expression_problem(
                            path, ref.offset, "$case is only available in evals"
                        )
                    )
            elif ref.root != "$" and not item_allowed:
                self.problems.append(
                    self.loc.expression_problem(
                        path, ref.offset, f"{ref.root} is only available inside for_each"
                    )
                )
        for problem in path_problems(expression, self.fields):
            self.problems.append(self.loc.expression_problem(path, problem.offset, problem.message))
        self.expressions[path] = expression

    def _array_path(self, item: _Item, key: str) -> None:
        source = item.get(key, str)
        path = (*item.path, key)
        self._expression(path, source, item_allowed=False)
        expression = self.expressions.get(path)
        if expression is None:
            return
        tree = expression.tree
        if not (hasattr(tree, "root") and tree.root == "$"):
            self.report(path, f"'{source}' must be a state path such as $.items")
            return
        field = self.fields.get(tree.parts[0])
        if field is not None and len(tree.parts) == 1 and field.get("type") != "array":
            self.report(
                path,
                f"'{source}' must name an array field; '{tree.parts[0]}' is {field.get('type')}",
            )

    # -- nodes ---------------------------------------------------------------------------------

    def _check_node(self, node: _Item) -> None:
        for verb in ("reads", "writes"):
            for i, name in enumerate(node.get(verb, list) or []):
                self._field_ref((*node.path, verb, i), name, verb)
        if isinstance(node.get("for_each", dict), dict):
            self._array_path(_Item((*node.path, "for_each"), node.data["for_each"]), "source")
        for key, value in (node.get("args", dict) or {}).items():
            if isinstance(value, str) and value.startswith("$."):
                self._expression((*node.path, "args", key), value, item_allowed=False)
        kind = node.get("kind", str)
        check = {
            "tool": self._tool,
            "agent": self._agent,
            "dataset": self._dataset,
            "experience": self._child,
            "cli-agent": self._cli_agent,
            "skill": self._skill,
        }.get(kind or "")
        if check:
            check(node)

    def _file(
        self, path: JsonPath, value: str | None, what: str, *, is_file: bool = False
    ) -> Path | None:
        """Resolve `value` inside the experience directory, reporting a missing or escaping file
        (or, with `is_file`, anything but a regular file)."""
        if not value:
            return None
        found = self._resolve(value)
        if isinstance(found, str):
            self.report(path, f"{what} '{value}' is not a usable path ({found})")
            return None
        if not found.inside:
            self.report(path, f"{what} '{value}' is outside the experience directory")
            return None
        if not found.exists:
            self.report(path, f"{what} '{value}' does not exist")
            return None
        if is_file and not found.is_file:
            self.report(path, f"{what} '{value}' is not a file")
            return None
        self.paths[path] = found.path
        if found.is_file:
            self.referenced_files.append(found.path)
        return found.path

    def _resolve(self, value: str) -> _Found | str:
        """What `value` names inside the experience directory, or why it is not a usable path."""
        if value not in self._resolved:
            try:
                resolved = (self.root / value).resolve()
                inside = resolved.is_relative_to(self.root)
                exists = inside and resolved.exists()
                self._resolved[value] = _Found(resolved, inside, exists, resolved.is_file())
            except (OSError, ValueError, RuntimeError) as exc:  # too long, a NUL, a link loop
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self._resolved[value] = reason
        return self._resolved[value]

    def _tool(self, node: _Item) -> None:
        impl = node.get("impl", str)
        if impl is None:
            return
        file, _, function = impl.partition(":") if ".py:" in impl else (impl, "", "")
        path = self._file((*node.path, "impl"), file, "tool file")
        if path is None:
            return
        if not self._resolve(file).is_file:  # type: ignore[union-attr]  # _file found it
            self.report((*node.path, "impl"), f"tool '{file}' is not a file")
        elif path.suffix == ".py":
            self._python_function((*node.path, "impl"), path, function or "run")
        elif path.suffix not in (".js", ".mjs") and not os.access(path, os.X_OK):
            self.report((*node.path, "impl"), f"tool '{file}' is not executable (chmod +x {file})")

    def _python_function(self, path: JsonPath, file: Path, function: str) -> None:
        if file not in self._defined:
            self._defined[file] = _top_level_names(file)
        defined = self._defined[file]
        if isinstance(defined, BaseException):
            line = getattr(defined, "lineno", None)
            self.report(
                path,
                f"tool '{file.name}' has a syntax error"
                + (f" on line {line}" if line else "")
                + f": {defined.msg}"
                if isinstance(defined, SyntaxError)
                else f"tool '{file.name}' is unreadable",
            )
            return
        if function not in defined:
            self.report(
                path,
                f"tool '{file.name}' defines no function '{function}'"
                f"{did_you_mean(function, defined)}",
            )

    def _agent(self, node: _Item) -> None:
        self._file(
            (*node.path, "system"), node.get("system", str), "system prompt file", is_file=True
        )
        self._prompt_and_output(node)

    def _prompt_and_output(self, node: _Item, *, text_output: bool = True) -> None:
        """The prompt file and its placeholders; an output schema, or exactly one writes field."""
        prompt = self._file(
            (*node.path, "prompt"), node.get("prompt", str), "prompt file", is_file=True
        )
        writes = node.get("writes", list) or []
        schema = node.get("schema", dict)
        if schema is not None:
            self._output_schema(node, schema, writes)
        elif text_output and len(writes) != 1:
            self.report(
                self._writes_path(node),
                f"{self._label(node)} has no output schema, "
                f"so it needs exactly one writes field (it has {len(writes)})",
            )
        if prompt is not None:
            self._placeholders(node, prompt)

    def _skill(self, node: _Item) -> None:
        from evolve.spec.skills import SKILL_FILE, SkillError, read_skill

        path = (*node.path, "skill")
        folder = self._file(path, node.get("skill", str), "skill folder")
        if folder is not None and not folder.is_dir():
            self.report(path, f"skill '{node.data['skill']}' is not a folder")
        elif folder is not None and not (folder / SKILL_FILE).is_file():
            self.report(path, f"skill folder '{node.data['skill']}' has no {SKILL_FILE}")
        elif folder is not None:
            try:
                read_skill(folder)
            except SkillError as exc:
                display = os.path.normpath(
                    Path(self.loc.file).parent / node.data["skill"] / SKILL_FILE
                )
                self.problems.append(
                    Problem(display, exc.line, 1, str(exc), self.loc.problem(path, "").json_path)
                )
            else:
                self.referenced_files += [p for p in folder.rglob("*") if p.is_file()]
        self._prompt_and_output(node)

    def _cli_agent(self, node: _Item) -> None:
        has_provider, has_command = "provider" in node.data, "command" in node.data
        if has_provider == has_command:
            self.report(
                (*node.path, "command") if has_command else node.path,
                f"{self._label(node)} needs exactly one of provider "
                "(claude-code, codex, gemini) and command",
                at_key=has_command,
            )
        json_output = node.get("output_format", str) == "json"
        if "schema" in node.data and not json_output:
            self.report(
                (*node.path, "schema"),
                f"{self._label(node)} has an output schema, so it needs output_format: json",
                at_key=True,
            )
        self._prompt_and_output(node, text_output=not json_output)
        self._workdir(node)

    def _workdir(self, node: _Item) -> None:
        value = node.get("workdir", str)
        path = (*node.path, "workdir")
        if value is None:
            return
        if value.startswith("$."):
            self._expression(path, value, item_allowed=False)
            return
        try:
            resolved = (self.root / value).resolve()
        except (OSError, ValueError, RuntimeError) as exc:
            self.report(path, f"workdir '{value}' is not a usable path ({exc})")
            return
        if not resolved.is_relative_to(self.root):
            self.report(
                path,
                f"workdir '{value}' is outside the experience directory "
                "(give a path inside it, or $.field to take one from state)",
            )
        elif resolved.exists() and not resolved.is_dir():
            self.report(path, f"workdir '{value}' is not a directory")

    def _output_schema(self, node: _Item, schema: dict[str, Any], writes: list[Any]) -> None:
        import jsonschema

        path = (*node.path, "schema")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            self.report(
                (*path, *exc.path), f"invalid output schema of {self._label(node)}: {exc.message}"
            )
            return
        if schema.get("type", "object") != "object":
            self.report(
                (*path, "type") if "type" in schema else path,
                f"output schema of {self._label(node)} must describe an object "
                "(its keys are state fields)",
            )
        for key in (
            schema.get("properties", {}) if isinstance(schema.get("properties"), dict) else {}
        ):
            if key not in writes:
                self.report(
                    (*path, "properties", key),
                    f"output schema property '{key}' is not in the writes of {self._label(node)}",
                    at_key=True,
                )

    def _placeholders(self, node: _Item, prompt: Path) -> None:
        try:
            text = prompt.read_text("utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            problem = (
                "is not UTF-8 text"
                if isinstance(exc, UnicodeDecodeError)
                else f"cannot be read ({exc.strerror})"
            )
            self.report((*node.path, "prompt"), f"prompt file '{prompt.name}' {problem}")
            return
        readable = {x for x in node.get("reads", list) or [] if isinstance(x, str)}
        readable |= set(node.get("args", dict) or {})
        # $item and $index exist under for_each and in pipeline stages, never in a loop body
        stage = node.get("id", str) in {
            s
            for p in self.pipelines
            for s in (p.get("stages", list) or [])
            if isinstance(s, str)  # a malformed stage was reported by the schema already
        }
        item_ok = "for_each" in node.data or stage
        # named the way the spec file is named: beside it, by the path written in the spec
        display = os.path.normpath(Path(self.loc.file).parent / node.data["prompt"])
        for ph in placeholders(text):
            line, col = line_col(text, ph.offset)
            if not ph.valid:
                message = f"malformed placeholder '{{{{ {ph.text} }}}}'"
            elif ph.root in ("$item", "$index"):
                if item_ok:
                    continue
                message = f"placeholder '{{{{ {ph.text} }}}}' needs for_each on the node"
            elif ph.root in readable:
                continue
            else:
                message = (
                    f"placeholder '{{{{ {ph.text} }}}}' names no readable field"
                    f"{did_you_mean(ph.root, readable)} (add it to reads or args)"
                )
            self.problems.append(
                Problem(
                    display,
                    line,
                    col,
                    message,
                    self.loc.problem((*node.path, "prompt"), "").json_path,
                )
            )

    def _dataset(self, node: _Item) -> None:
        source = node.get("source", dict)
        writes = node.get("writes", list) or []
        if len(writes) != 1:
            self.report(
                self._writes_path(node),
                f"{self._label(node)} must write exactly one field (it writes {len(writes)})",
            )
        if source is None or source.get("type") == "http":
            return
        spath = (*node.path, "source")
        path = self._file(
            (*spath, "uri"),
            source.get("uri") if isinstance(source.get("uri"), str) else None,
            "data file",
            is_file=True,
        )
        if (
            path
            and source.get("type") == "file"
            and "format" not in source
            and path.suffix.lower() not in _DATA_FORMATS
        ):
            self.report(
                (*spath, "uri"),
                f"cannot tell the format of '{source['uri']}'; "
                "set source.format to json, jsonl or csv",
            )

    def _child(self, node: _Item) -> None:
        path = self._file((*node.path, "impl"), node.get("impl", str), "child experience")
        if path is not None and path == self.root:
            self.report(
                (*node.path, "impl"),
                f"child experience '{node.data['impl']}' is this experience itself "
                "(it would run itself forever)",
            )
        elif path is not None and not (path / "experience.yaml").is_file():
            self.report(
                (*node.path, "impl"),
                f"child experience '{node.data['impl']}' has no experience.yaml",
            )

    # -- evals and cases -------------------------------------------------------------------------

    def _check_evals(self) -> None:
        seen: set[str] = set()
        for ev in _items(self.data, "evals"):
            name = ev.get("name", str)
            if name in seen:
                self.report((*ev.path, "name"), f"duplicate eval name '{name}'")
            seen.add(name or "")
            kinds = [k for k in _EVAL_KINDS if k in ev.data]
            if len(kinds) != 1:
                said = ", ".join(kinds) if kinds else "none"
                self.report(
                    ev.path,
                    f"eval '{name}' needs exactly one of expr, impl or judge (it has {said})",
                )
                continue
            if kinds[0] == "expr":
                self._expression(
                    (*ev.path, "expr"), ev.get("expr", str), item_allowed=False, case_allowed=True
                )
            elif kinds[0] == "impl":
                self._eval_impl(ev)
            else:
                self._judge(ev)

    def _eval_impl(self, ev: _Item) -> None:
        impl = ev.get("impl", str)
        if impl is None:
            return
        file, _, function = impl.partition(":")
        path = self._file((*ev.path, "impl"), file, "eval file", is_file=True)
        if path is None:
            return
        if path.suffix != ".py":
            self.report((*ev.path, "impl"), f"eval '{file}' must be a .py file")
            return
        self._python_function((*ev.path, "impl"), path, function or "run")

    def _judge(self, ev: _Item) -> None:
        judge = ev.get("judge", dict)
        if judge is None or not isinstance(judge.get("prompt"), str):
            return
        path = (*ev.path, "judge", "prompt")
        prompt = self._file(path, judge["prompt"], "judge prompt file", is_file=True)
        if prompt is None:
            return
        try:
            text = prompt.read_text("utf-8")
        except (UnicodeDecodeError, OSError):
            self.report(path, f"judge prompt file '{prompt.name}' cannot be read as UTF-8 text")
            return
        display = os.path.normpath(Path(self.loc.file).parent / judge["prompt"])
        found = placeholders(text)
        if any(ph.root == "$case" for ph in found):
            self.judges_reading_case.add((*ev.path, "judge"))
        for ph in found:
            if ph.valid and (ph.root == "$case" or ph.root in self.fields):
                continue
            line, col = line_col(text, ph.offset)
            message = (
                f"placeholder '{{{{ {ph.text} }}}}' names no state field"
                f"{did_you_mean(ph.root, self.fields)} (a judge reads state fields and $case)"
                if ph.valid
                else f"malformed placeholder '{{{{ {ph.text} }}}}'"
            )
            self.problems.append(
                Problem(display, line, col, message, self.loc.problem(path, "").json_path)
            )

    def _check_cases(self) -> None:
        cases = _mapping(self.data, "cases")
        if not isinstance(cases.get("source"), str):
            return
        path = self._file(("cases", "source"), cases["source"], "cases file", is_file=True)
        if path is not None and "format" not in cases and path.suffix.lower() not in _CASE_FORMATS:
            self.report(
                ("cases", "source"),
                f"cannot tell the format of '{cases['source']}'; "
                "set cases.format to jsonl, json, csv or yaml",
            )

    @staticmethod
    def _writes_path(node: _Item) -> JsonPath:
        return (*node.path, "writes") if "writes" in node.data else node.path

    @staticmethod
    def _label(node: _Item) -> str:
        ident = node.get("id", str)
        return f"node '{ident}'" if ident else f"node #{node.path[-1] + 1}"

    # -- build ---------------------------------------------------------------------------------

    def build(self, spec_path: Path, spec_hash: str) -> model.Experience:
        data = self.data
        runtime = _mapping(data, "runtime")
        return model.Experience(
            name=data["name"],
            version=data["version"],
            description=data.get("description", ""),
            directory=self.root,
            spec_path=spec_path.resolve(),
            spec_hash=spec_hash,
            runtime=model.Runtime(
                model=runtime.get("model"),
                concurrency=runtime.get("concurrency", model.DEFAULT_CONCURRENCY),
                timeout_ms=runtime.get("timeout_ms", model.DEFAULT_TIMEOUT_MS),
                structured_output=runtime.get("structured_output", "auto"),
                context_window=runtime.get("context_window"),
                executor=runtime.get("executor", "local"),
            ),
            state={name: _field(name, spec) for name, spec in self.fields.items()},
            phases=tuple(
                model.Phase(p.data["id"], p.data.get("description", ""))
                for p in _items(data, "phases")
            ),
            nodes={n.data["id"]: self._build_node(n) for n in self.nodes},
            edges=tuple(
                model.Edge(e.data["from"], e.data["to"], self.expressions.get((*e.path, "when")))
                for e in self.edges
            ),
            pipelines={
                p.data["id"]: model.Pipeline(
                    p.data["id"],
                    self.expressions[(*p.path, "items")],
                    tuple(p.data["stages"]),
                    p.data.get("concurrency"),
                )
                for p in self.pipelines
            },
            loops={
                lp.data["id"]: model.Loop(
                    lp.data["id"],
                    lp.data["body"],
                    self.expressions[(*lp.path, "until")],
                    lp.data["max_iters"],
                )
                for lp in self.loops
            },
            evals=tuple(self._build_eval(ev) for ev in _items(data, "evals")),
            cases=self._build_cases(),
            files=tuple(sorted(set(self.referenced_files))),
            data=data,
        )

    def _build_eval(self, ev: _Item) -> model.Eval:
        d = ev.data
        kind = next(k for k in _EVAL_KINDS if k in d)
        impl = d.get("impl", "")
        judge = d.get("judge")
        return model.Eval(
            name=d["name"],
            kind=kind,
            description=d.get("description", ""),
            expression=self.expressions.get((*ev.path, "expr")),
            impl=self.paths.get((*ev.path, "impl")),
            function=impl.partition(":")[2] or "run",
            judge=model.Judge(self.paths[(*ev.path, "judge", "prompt")], judge.get("model"))
            if judge
            else None,
            weight=float(d.get("weight", 1)),
            threshold=d.get("threshold"),
            required=d.get("required", False),
            reads_case=(*ev.path, "judge") in self.judges_reading_case
            or any(
                p.root == "$case"
                for p in getattr(self.expressions.get((*ev.path, "expr")), "paths", ())
            ),
        )

    def _build_cases(self) -> model.Cases | None:
        cases = _mapping(self.data, "cases")
        if not cases:
            return None
        return model.Cases(
            path=self.paths[("cases", "source")],
            uri=cases["source"],
            format=cases.get("format") or _CASE_FORMATS[Path(cases["source"]).suffix.lower()],
            concurrency=cases.get("concurrency"),
        )

    def _build_node(self, node: _Item) -> model.Node:
        d = node.data
        on_error = d.get("on_error", {})
        policy = on_error.get("policy", "fail_run")
        for_each = d.get("for_each")
        source = d.get("source")
        impl = d.get("impl")
        function = impl.partition(":")[2] if impl and ".py:" in impl else None
        return model.Node(
            id=d["id"],
            kind=d["kind"],
            phase=d.get("phase"),
            description=d.get("description", ""),
            reads=tuple(d.get("reads", ())),
            writes=tuple(d.get("writes", ())),
            on_error=model.OnError(
                policy=policy,
                attempts=on_error.get("attempts", 3 if policy == "retry" else 1),
                backoff=on_error.get("backoff", "exponential"),
                base_ms=on_error.get("base_ms", 100),
                then=on_error.get("then", "fail_run"),
            ),
            for_each=model.ForEach(
                self.expressions[(*node.path, "for_each", "source")], for_each.get("concurrency")
            )
            if for_each
            else None,
            timeout_ms=d.get("timeout_ms"),
            frozen=d.get("frozen", False),
            impl=self.paths.get((*node.path, "impl")),
            impl_text=impl,
            function=function or ("run" if d["kind"] == "tool" else None),
            args=d.get("args", {}),
            prompt=self.paths.get((*node.path, "prompt")),
            system=self.paths.get((*node.path, "system")),
            model=d.get("model"),
            schema=d.get("schema"),
            temperature=d.get("temperature"),
            max_tokens=d.get("max_tokens"),
            structured_output=d.get("structured_output"),
            source=self._build_source(node.path, source) if source else None,
            cli=model.CliAgent(
                provider=d.get("provider"),
                base=self.root,
                command=tuple(d.get("command", ())),
                workdir=d["workdir"],
                output_format=d.get("output_format", "text"),
                extra_args=tuple(d.get("extra_args", ())),
            )
            if d["kind"] == "cli-agent"
            else None,
            skill=self._build_skill(node.path) if d["kind"] == "skill" else None,
            cache=_cache(d.get("cache")),
        )

    def _build_source(self, path: JsonPath, source: dict[str, Any]) -> model.DatasetSource:
        if source["type"] == "http":
            return model.DatasetSource(
                type="http",
                url=source["url"],
                format=source.get("format", "json"),
                headers=dict(source.get("headers", {})),
            )
        return model.DatasetSource(
            type=source["type"],
            path=self.paths[(*path, "source", "uri")],
            uri=source["uri"],
            format=source.get("format") or _DATA_FORMATS.get(Path(source["uri"]).suffix.lower()),
            query=source.get("query"),
        )

    def _build_skill(self, path: JsonPath) -> model.Skill:
        from evolve.spec.skills import read_skill

        folder = self.paths[(*path, "skill")]
        text = read_skill(folder)
        return model.Skill(folder, text.name, text.description, text.body)


def _top_level_names(file: Path) -> set[str] | BaseException:
    """The names a Python file defines at its top level, or why it cannot be parsed."""
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except (SyntaxError, ValueError, OSError, RecursionError, MemoryError) as exc:
        return exc
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    defined |= {
        t.id
        for n in tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    defined |= {
        a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
    }
    return defined


def _field(name: str, spec: dict[str, Any]) -> model.StateField:
    return model.StateField(
        name=name,
        type=spec["type"],
        merge=spec.get("merge", "last_wins"),
        default=spec.get("default"),
        has_default="default" in spec,
        description=spec.get("description", ""),
        schema={k: v for k, v in spec.items() if k not in _FIELD_KEYS},
    )


TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _cache(value: Any) -> model.Cache | None:
    """`cache: true` or `{ttl: 1d}` (the schema has checked the shape)."""
    if not value:
        return None
    if value is True:
        return model.Cache()
    ttl = value["ttl"]
    if isinstance(ttl, str):
        return model.Cache(int(ttl[:-1]) * TTL_UNITS[ttl[-1]])
    return model.Cache(ttl)
