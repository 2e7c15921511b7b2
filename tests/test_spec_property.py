"""Whatever is done to a valid experience, loading it returns or raises SpecError: never a crash.

Three valid experiences (the starter, one with every node kind, one written with anchors, merge
keys and block scalars) are mutated at random: their data (keys deleted, renamed or added, values
replaced by values of any type, list items duplicated), their YAML text (truncated, characters
inserted or deleted, lines duplicated, dropped, swapped or re-indented, CRLF line ends) and the
files they reference (rewritten with random text or deleted). Every problem found must be located
inside the file it names.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import write_experience
from evolve.errors import SpecError
from evolve.spec import Experience, load_experience, loader
from evolve.spec.shape import shape_errors
from evolve.spec.source import parse_yaml

ROOT = Path(__file__).resolve().parents[1]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FULL = """\
name: full-demo
version: 1.2.3-rc.1+build.5
description: Every node kind, a pipeline and a loop.
runtime: {model: openai/gpt-4o-mini, concurrency: 2, timeout_ms: 5000}
state:
  schema:
    docs: {type: array, items: {type: object}, default: []}
    cleaned: {type: array, merge: array_append, default: []}
    summary: {type: string, description: what the agent wrote}
    score: {type: number, default: 0, minimum: 0, maximum: 1}
    done: {type: boolean, default: false}
    child_out: {type: object}
phases: [{id: load, description: Get the data}, {id: work}]
graph:
  nodes:
    - id: load
      kind: dataset
      phase: load
      source: {type: file, uri: data/docs.json}
      writes: [docs]
    - id: clean
      kind: tool
      impl: tools/clean.py:clean
      reads: [docs]
      writes: [cleaned]
      for_each: {source: $.docs, concurrency: 2}
      on_error: {policy: retry, attempts: 3, backoff: exponential, base_ms: 10, then: skip}
    - id: summarise
      kind: agent
      phase: work
      prompt: prompts/summarise.md
      system: prompts/system.md
      model: openai/gpt-4o
      reads: [cleaned]
      writes: [summary, score]
      temperature: 0.2
      max_tokens: 500
      args: {style: short}
      schema:
        type: object
        required: [summary]
        properties:
          summary: {type: string}
          score: {type: number}
    - id: check
      kind: tool
      impl: tools/check.sh
      reads: [score]
      writes: [done]
      timeout_ms: 1000
      frozen: true
    - id: per_item
      kind: tool
      impl: tools/clean.py:clean
      writes: [cleaned]
    - id: child
      kind: experience
      impl: child
      args: {n: 1}
      writes: [child_out]
    - id: rows
      kind: dataset
      source: {type: sqlite, uri: data/rows.db, query: select * from rows}
      writes: [docs]
  pipelines:
    - {id: each_doc, items: $.docs, stages: [per_item], concurrency: 2}
  loops:
    - {id: until_done, body: check, until: '$.done == true || $.score >= 0.9', max_iters: 5}
  edges:
    - {from: load, to: clean}
    - {from: clean, to: summarise, when: 'length($.cleaned) > 0'}
    - {from: summarise, to: until_done}
    - {from: load, to: each_doc}
    - {from: until_done, to: child, when: '!($.score < 0.5)'}
"""
FULL_FILES = {
    "data/docs.json": '[{"text": "a"}]\n',
    "data/rows.db": "",
    "tools/clean.py": "async def clean(inputs):\n    return {'state_delta': {}}\n",
    "tools/check.sh": "#!/bin/sh\necho '{}'\n",
    "prompts/summarise.md": "Summarise {{ cleaned }} in a {{ style }} way.\n",
    "prompts/system.md": "You are terse.\n",
    "child/experience.yaml": "name: child\n",
}

YAML_FEATURES = """\
# A valid experience written with YAML's less common features.
name: "yaml-features"
version: '0.0.1'
description: >
  Folded text
  over two lines.
state:
  schema:
    items: &list {type: array, default: []}
    more: *list
    text: {type: string, default: "a \\"quoted\\" default"}
graph:
  nodes:
    - &tool
      id: first
      kind: tool
      impl: tools/t.py
      writes: [items]
    - <<: *tool
      id: second
      reads: [items]
      writes: [more]
    - <<: [*tool]
      id: third
      writes: [text]
      for_each: {source: $.items}
  edges:
    - from: first
      to: second
      when: |-
        length($.items) > 0
    - from: second
      to: third
      when: >-
        $.more != null &&
        length($.more) >= 0
"""
YAML_FEATURES_FILES = {"tools/t.py": "from json import dumps as run\n"}


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("bases")
    starter = root / "starter"
    shutil.copytree(ROOT / "examples" / "starter", starter)
    full = write_experience(root / "full", FULL, FULL_FILES, executable=("tools/check.sh",))
    features = write_experience(root / "features", YAML_FEATURES, YAML_FEATURES_FILES)
    return [starter, full, features]


def test_the_bases_are_valid(bases):
    loaded = [load_experience(base) for base in bases]
    assert [e.name for e in loaded] == ["starter", "full-demo", "yaml-features"]
    features = loaded[2]
    assert features.nodes["second"].impl == features.nodes["first"].impl  # merged in
    assert features.nodes["third"].for_each is not None
    assert features.description == "Folded text over two lines.\n"
    assert features.state["text"].default == 'a "quoted" default'


# -- strategies --------------------------------------------------------------------------------

WORDS = [
    "$.text",
    "$.docs",
    "$.paragraphs",
    "$.nope",
    "$item",
    "$item.x",
    "$index",
    "$.",
    "$",
    "length($.counts) > 0",
    "$.a ==",
    "!",
    "tools/split.py",
    "tools/split.py:nope",
    "tools/clean.py:clean",
    "tools",
    "../outside.py",
    "/etc/passwd",
    "data/text.txt",
    "data/docs.json",
    "prompts/summarise.md",
    "child",
    "tool",
    "agent",
    "dataset",
    "experience",
    "retry",
    "skip",
    "fail_run",
    "array",
    "object",
    "string",
    "array_append",
    "set_once",
    "{{ text }}",
    "{{",
    "",
    " ",
    "<<",
    "load_text",
    "split",
    "count_words",
    "total",
    "load",
    "clean",
    "summarise",
    "id",
    "kind",
    "impl",
    "writes",
    "reads",
    "source",
    "type",
    "file",
    "sqlite",
    "0.1.0",
    "a-b",
    "\t",
    "\n",
    "é",
    "null",
    "~",
    "*a",
    "&a",
    "!!str",
]
KEYS = st.sampled_from(WORDS) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(WORDS)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value inside `value`, the root excluded."""
    found = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, child in items:
        found.append((*path, key))
        found += _paths(child, (*path, key))
    return found


def _at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated_data(draw, document: dict[str, Any]) -> dict[str, Any]:
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _at(document, path[:-1]), path[-1]
        action = draw(st.sampled_from(["delete", "rename", "replace", "insert", "duplicate"]))
        if action == "delete":
            del parent[last]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(last)
        elif action == "insert" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(VALUES)
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(last, parent[last])
        else:
            parent[last] = draw(VALUES)
    return document


SNIPPETS = st.sampled_from(
    [
        ":",
        ": ",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "#",
        "&a ",
        "*a",
        "!!python/object ",
        "!x ",
        "<<: ",
        "'",
        '"',
        "|",
        ">",
        "\t",
        "\n",
        "  ",
        "---\n",
        "...",
        "%YAML 1.1\n",
        "? ",
        "@",
        "`",
        "\\",
        "$",
        "\ufeff",
        "\x00",
        "\x85",
        "\u2028",
        "é",
    ]
) | st.text(max_size=6)


@st.composite
def mutated_text(draw, text: str) -> str:
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        action = draw(
            st.sampled_from(
                [
                    "truncate",
                    "insert",
                    "delete",
                    "dup-line",
                    "drop-line",
                    "swap-lines",
                    "indent",
                    "dedent",
                    "crlf",
                ]
            )
        )
        where = draw(st.integers(0, len(text)))
        row = draw(st.integers(0, len(lines) - 1))
        if action == "truncate":
            text = text[:where]
        elif action == "insert":
            text = text[:where] + draw(SNIPPETS) + text[where:]
        elif action == "delete":
            text = text[:where] + text[where + draw(st.integers(1, 10)) :]
        elif action == "crlf":
            text = text.replace("\n", "\r\n")
        else:
            if action == "dup-line":
                lines.insert(row, lines[row])
            elif action == "drop-line":
                del lines[row]
            elif action == "swap-lines":
                other = draw(st.integers(0, len(lines) - 1))
                lines[row], lines[other] = lines[other], lines[row]
            elif action == "indent":
                lines[row] = " " * draw(st.integers(1, 4)) + lines[row]
            else:
                lines[row] = lines[row][draw(st.integers(1, 4)) :]
            text = "\n".join(lines)
    return text


# -- the property --------------------------------------------------------------------------------

_BREAKS = re.compile(r"\r\n|\r|\n|\x85|\u2028|\u2029")


def assert_loads_or_reports(directory: Path) -> Experience | None:
    """load_experience returns, or raises SpecError whose problems all stand inside their file."""
    try:
        return load_experience(directory)
    except SpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.message and problem.json_path.startswith("$"), problem
            assert problem.line >= 1 and problem.col >= 1, problem
            file = Path(problem.file)
            if file.is_file():
                try:
                    text = file.read_text("utf-8")
                except UnicodeDecodeError:
                    continue
                lines = _BREAKS.split(text)
                assert problem.line <= len(lines), problem
                if text.isascii() and "\r" not in text:
                    assert problem.col <= len(lines[problem.line - 1]) + 1, problem
        return None


def _copy(base: Path, into: str) -> Path:
    target = Path(into) / "exp"
    shutil.copytree(base, target, symlinks=True)
    return target


@pytest.mark.slow
@SETTINGS
@given(data=st.data())
def test_random_changes_to_the_data(bases, data):
    base = data.draw(st.sampled_from(bases), label="base")
    document = yaml.load((base / "experience.yaml").read_text(), Loader=_LOADER)
    document = data.draw(mutated_data(document), label="document")
    with tempfile.TemporaryDirectory() as tmp:
        exp = _copy(base, tmp)
        text = yaml.dump(document, Dumper=_DUMPER, allow_unicode=True, sort_keys=False)
        (exp / "experience.yaml").write_text(text, encoding="utf-8")
        assert_loads_or_reports(exp)


@pytest.mark.slow
@SETTINGS
@given(data=st.data())
def test_random_changes_to_the_text(bases, data):
    base = data.draw(st.sampled_from(bases), label="base")
    text = data.draw(mutated_text((base / "experience.yaml").read_text()), label="text")
    with tempfile.TemporaryDirectory() as tmp:
        exp = _copy(base, tmp)
        (exp / "experience.yaml").write_text(text, encoding="utf-8", newline="")
        assert_loads_or_reports(exp)


@pytest.mark.slow
@SETTINGS
@given(data=st.data())
def test_random_changes_to_the_referenced_files(bases, data):
    base = data.draw(st.sampled_from(bases), label="base")
    files = sorted(
        p.relative_to(base).as_posix()
        for p in base.rglob("*")
        if p.is_file() and p.name != "experience.yaml"
    )
    chosen = data.draw(st.lists(st.sampled_from(files), min_size=1, max_size=3, unique=True))
    with tempfile.TemporaryDirectory() as tmp:
        exp = _copy(base, tmp)
        for name in chosen:
            if data.draw(st.booleans(), label=f"delete {name}"):
                (exp / name).unlink()
            else:
                content = data.draw(
                    st.text()
                    | SNIPPETS
                    | st.sampled_from(
                        [
                            "{{ x }}",
                            "{{ $item.a }} {{ $index }}",
                            "{{ }}",
                            "{{{{",
                            "def run(:",
                            "run = 1",
                            "from x import run",
                            "\x00",
                            textwrap.dedent("""\
                         async def run(inputs):
                             return {}
                         """),
                        ]
                    ),
                    label=f"text of {name}",
                )
                (exp / name).write_text(content, encoding="utf-8")
        assert_loads_or_reports(exp)


def _described(errors: Any, data: Any, loc: Any) -> list[tuple[int, int, str, str]]:
    """What the loader makes of schema errors: located messages, in order."""
    found = {
        (p.line, p.col, p.message, p.json_path)
        for error in errors
        for p in loader._describe(error, loc, data)
    }
    return sorted(found)


@pytest.mark.slow
@SETTINGS
@given(data=st.data())
def test_the_shape_check_says_what_the_whole_schema_says(bases, data):
    """The per-kind validators on the load path accept and reject exactly what one validator of
    the whole schema does, with the same errors (so the same located messages)."""
    base = data.draw(st.sampled_from(bases), label="base")
    document = yaml.load((base / "experience.yaml").read_text(), Loader=_LOADER)
    document = data.draw(mutated_data(document), label="document")
    text = yaml.dump(document, Dumper=_DUMPER, allow_unicode=True, sort_keys=False)
    parsed, loc, _ = parse_yaml(text, "experience.yaml")
    assume(isinstance(parsed, dict))
    whole = jsonschema.Draft202012Validator(json.loads(loader.schema_text()))
    fast = shape_errors(parsed, loader.schema_text())
    assert _described(fast, parsed, loc) == _described(whole.iter_errors(parsed), parsed, loc)


def _nesting(text: str) -> int:
    """How deep the document nests, from its parser events."""
    depth = deepest = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            deepest = max(deepest, depth)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return deepest


_NESTED = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3),
        st.dictionaries(st.text(min_size=1, max_size=6), inner, min_size=1, max_size=3),
    ),
    max_leaves=60,
)


@pytest.mark.slow
@SETTINGS
@given(value=_NESTED, flow=st.sampled_from([False, None, True]), indent=st.integers(2, 6))
def test_the_nesting_bound_is_never_below_the_nesting(value, flow, indent):
    """Loading skips its event walk only when this bound is within the limit: it must hold."""
    from evolve.spec.source import _nesting_bound

    text = yaml.dump(value, Dumper=_DUMPER, default_flow_style=flow, indent=indent)
    assert _nesting_bound(text) >= _nesting(text)


@pytest.mark.parametrize(
    "text",
    [
        "- - - - - - a\n",
        "a:\n- b:\n  - c:\n    - - d\n",
        "? - - a\n: - - b\n",
        "x: [[[[1]]]]\n",
        "a:\n  b:\n    c:\n    - d:\n      - e\n",
    ],
)
def test_the_nesting_bound_holds_for_compact_forms(text):
    from evolve.spec.source import _nesting_bound

    assert _nesting_bound(text) >= _nesting(text)
