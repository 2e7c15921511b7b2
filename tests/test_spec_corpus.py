"""A corpus of malformed experiences, each checked through `evolve validate`.

Every case lists every problem the CLI must print, in the order it prints them (by file, line,
column): the exact LINE:COL and a few words that must appear in the message (the JSON path in
brackets counts as part of it). Each LINE:COL was worked out by hand from the YAML text: lines
and columns are 1-based, a key's problem points at the key, a value's problem at the value (for
a quoted string, at its quote; inside an expression, at the offending character). A location of
the form "prompts/p.md:1:7" is in that file of the experience instead of experience.yaml.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from conftest import write_experience
from evolve.cli import app
from evolve.errors import SpecError
from evolve.spec import load_experience, loader
from evolve.spec.shape import shape_errors
from evolve.spec.source import parse_yaml

runner = CliRunner()

TOOL = "def run(inputs):\n    return {}\n"
TOOLS = {"tools/a.py": TOOL}
PROMPT = {"prompts/p.md": "Summarise {{ text }}.\n"}


def case(ident, yaml_text, *expected, files=TOOLS, executable=()):
    return pytest.param(yaml_text, expected, files, executable, id=ident)


CASES = [
    # -- YAML itself -------------------------------------------------------------------------
    case(
        "yaml-unclosed-flow-mapping",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py
  edges: []
""",
        # the parser only notices at the ':' after `edges` (a plain scalar may span lines in
        # a flow mapping); the message names where the unclosed mapping started
        (
            "6:8",
            "YAML syntax error",
            "expected ',' or '}'",
            "flow mapping started at line 5, column 7",
        ),
    ),
    case(
        "yaml-unterminated-quote",
        """\
name: demo
version: 0.1.0
description: "never closed
graph: {nodes: []}
""",
        ("5:1", "unexpected end of stream", "quoted scalar started at line 3, column 14"),
    ),
    case(
        "yaml-mapping-value-in-scalar",
        """\
name: demo
  version: 0.1.0
""",
        # `demo version` is one plain scalar continued on line 2, so its ':' is not allowed
        ("2:10", "YAML syntax error", "mapping values are not allowed"),
    ),
    case(
        "yaml-tab-indentation",
        "name: demo\n\tversion: 0.1.0\n",
        ("2:1", "YAML syntax error", "tab character"),
    ),
    case(
        "yaml-bad-block-indentation",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
  - id: a
   kind: tool
""",
        ("6:4", "YAML syntax error", "did not find expected key"),
    ),
    case(
        "yaml-undefined-alias",
        """\
name: demo
version: 0.1.0
graph:
  nodes: *nodes
""",
        ("4:10", "YAML syntax error", "undefined alias"),
    ),
    case(
        "yaml-duplicate-anchor",
        """\
name: demo
version: 0.1.0
runtime: &r {concurrency: 2}
state: &r {}
graph:
  nodes: []
""",
        (
            "4:8",
            "YAML syntax error: second occurrence",
            "duplicate anchor",
            "first occurrence at line 3, column 10",
        ),
    ),
    case(
        "yaml-two-documents",
        """\
name: demo
version: 0.1.0
---
name: other
""",
        ("3:1", "YAML syntax error", "another document"),
    ),
    case(
        "yaml-character-cannot-start-token",
        """\
name: demo
version: 0.1.0
description: @mention
""",
        ("3:14", "YAML syntax error", "cannot start any token"),
    ),
    case(
        "duplicate-top-level-key",
        """\
name: demo
version: 0.1.0
name: again
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("3:1", "duplicate key 'name' (first defined on line 1)", "[$.name]"),
    ),
    case(
        "duplicate-key-in-flow-node",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py, id: b}
""",
        ("5:45", "duplicate key 'id' (first defined on line 5)", "[$.graph.nodes[0].id]"),
    ),
    case("empty-file", "", ("1:1", "the file is empty; expected a mapping")),
    case(
        "comments-only",
        "# name: demo\n# version: 0.1.0\n",
        ("1:1", "the file is empty; expected a mapping"),
    ),
    case("null-document", "~\n", ("1:1", "expected a mapping at the top level")),
    case(
        "top-level-list",
        "- name: demo\n- version: 0.1.0\n",
        ("1:1", "expected a mapping at the top level"),
    ),
    case(
        "top-level-scalar-after-comment",
        "# an experience\njust text\n",
        ("2:1", "expected a mapping at the top level"),
    ),
    case(
        "python-object-tag",
        """\
name: demo
version: 0.1.0
description: !!python/object/apply:os.system [echo pwned]
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        # nothing else is said of the dropped value (no "must be a string, not null")
        ("3:14", "unsupported YAML tag '!!python/object/apply:os.system'", "[$.description]"),
    ),
    case(
        "python-name-tag-on-scalar",
        """\
name: !!python/name:os.system ''
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("1:7", "unsupported YAML tag '!!python/name:os.system'", "[$.name]"),
    ),
    case(
        "custom-include-tag",
        """\
name: demo
version: 0.1.0
description: !include README.md
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("3:14", "unsupported YAML tag '!include'"),
    ),
    case(
        "set-tag",
        """\
name: demo
version: 0.1.0
phases: !!set {a, b}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("3:9", "unsupported YAML tag '!!set'", "[$.phases]"),
    ),
    case(
        "explicit-int-tag-on-text",
        """\
name: demo
version: 0.1.0
runtime:
  concurrency: !!int four
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("4:16", "invalid YAML value", "'four' is not a valid !!int"),
    ),
    case(
        "merge-key-of-a-scalar",
        """\
name: demo
version: 0.1.0
runtime:
  <<: 5
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("4:7", "'<<' merges only mappings", "[$.runtime]"),
    ),
    case(
        "non-string-mapping-key",
        """\
name: demo
version: 0.1.0
? [a, b]
: 1
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("3:3", "mapping keys must be strings"),
    ),
    # -- unknown keys, at every level ----------------------------------------------------------
    case(
        "unknown-top-level-key",
        """\
name: demo
versoin: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("1:1", "the experience is missing required key 'version'"),
        ("2:1", "unknown key 'versoin' in the experience", "did you mean 'version'?"),
    ),
    case(
        "unknown-runtime-key",
        """\
name: demo
version: 0.1.0
runtime:
  concurency: 2
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        (
            "4:3",
            "unknown key 'concurency' in 'runtime'",
            "did you mean 'concurrency'?",
            "[$.runtime.concurency]",
        ),
    ),
    case(
        "unknown-state-key",
        """\
name: demo
version: 0.1.0
state:
  fields:
    text: {type: string}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("4:3", "unknown key 'fields' in 'state'"),
    ),
    case(
        "unknown-state-field-key",
        """\
name: demo
version: 0.1.0
state:
  schema:
    total: {type: integer, defualt: 0}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("5:28", "unknown key 'defualt' in state field 'total'", "did you mean 'default'?"),
    ),
    case(
        "unknown-phase-key",
        """\
name: demo
version: 0.1.0
phases:
  - id: load
    label: Load
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("5:5", "unknown key 'label' in item #1 of 'phases'", "[$.phases[0].label]"),
    ),
    case(
        "unknown-tool-node-key",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      frozn: true
""",
        ("8:7", "unknown key 'frozn' in node 'a'", "did you mean 'frozen'?"),
    ),
    case(
        "agent-key-on-tool-node",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      prompt: prompts/p.md
""",
        ("8:7", "unknown key 'prompt' in node 'a'", "[$.graph.nodes[0].prompt]"),
    ),
    case(
        "unknown-agent-node-key",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: {type: string}
graph:
  nodes:
    - id: ask
      kind: agent
      prompt: prompts/p.md
      reads: [text]
      writes: [text]
      temprature: 0.2
""",
        ("13:7", "unknown key 'temprature' in node 'ask'", "did you mean 'temperature'?"),
        files=PROMPT,
    ),
    case(
        "unknown-dataset-node-key",
        """\
name: demo
version: 0.1.0
state:
  schema:
    rows: {type: array}
graph:
  nodes:
    - id: load
      kind: dataset
      impl: tools/a.py
      source: {type: file, uri: data/rows.json}
      writes: [rows]
""",
        ("10:7", "unknown key 'impl' in node 'load'"),
        files={"data/rows.json": "[]"},
    ),
    case(
        "unknown-experience-node-key",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: sub, kind: experience, impl: child, prompt: p.md}
""",
        ("5:48", "unknown key 'prompt' in node 'sub'"),
        files={"child/experience.yaml": "name: child\n"},
    ),
    case(
        "unknown-on-error-key",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      on_error: {policy: retry, retries: 3}
""",
        (
            "8:33",
            "unknown key 'retries' in 'on_error' of node 'a'",
            "[$.graph.nodes[0].on_error.retries]",
        ),
    ),
    case(
        "unknown-for-each-key",
        """\
name: demo
version: 0.1.0
state:
  schema:
    items: {type: array}
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      for_each:
        source: $.items
        parallel: 2
""",
        ("13:9", "unknown key 'parallel' in 'for_each' of node 'a'"),
    ),
    case(
        "unknown-dataset-source-key",
        """\
name: demo
version: 0.1.0
state:
  schema:
    rows: {type: array}
graph:
  nodes:
    - id: load
      kind: dataset
      source: {type: file, uri: data/rows.json, fromat: json}
      writes: [rows]
""",
        ("10:49", "unknown key 'fromat' in 'source' of node 'load'", "did you mean 'format'?"),
        files={"data/rows.json": "[]"},
    ),
    case(
        "sqlite-key-on-file-source",
        """\
name: demo
version: 0.1.0
state:
  schema:
    rows: {type: array}
graph:
  nodes:
    - id: load
      kind: dataset
      source:
        type: file
        uri: data/rows.json
        query: select * from rows
      writes: [rows]
""",
        ("13:9", "unknown key 'query' in 'source' of node 'load'"),
        files={"data/rows.json": "[]"},
    ),
    case(
        "unknown-edge-key",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: b, kind: tool, impl: tools/a.py}
  edges:
    - {from: a, to: b, condition: 'true'}
""",
        ("8:24", "unknown key 'condition' in edge #1", "[$.graph.edges[0].condition]"),
    ),
    case(
        "unknown-pipeline-key",
        """\
name: demo
version: 0.1.0
state:
  schema:
    docs: {type: array}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
  pipelines:
    - id: per_doc
      items: $.docs
      stages: [a]
      parallel: 2
""",
        ("13:7", "unknown key 'parallel' in pipeline #1"),
    ),
    case(
        "unknown-loop-key",
        """\
name: demo
version: 0.1.0
state:
  schema:
    done: {type: boolean}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py, writes: [done]}
  loops:
    - id: again
      body: a
      until: $.done
      max_iterations: 3
""",
        ("10:7", "loop #1 is missing required key 'max_iters'"),
        ("13:7", "unknown key 'max_iterations' in loop #1", "did you mean 'max_iters'?"),
    ),
    # -- types, enums, bounds, patterns ----------------------------------------------------------
    case(
        "concurrency-not-an-integer",
        """\
name: demo
version: 0.1.0
runtime: {concurrency: four}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("3:24", "'concurrency' must be an integer, not a string", "[$.runtime.concurrency]"),
    ),
    case(
        "timeout-is-a-boolean",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      timeout_ms: yes
""",
        ("8:19", "'timeout_ms' of node 'a' must be an integer, not a boolean"),
    ),
    case(
        "reads-is-a-string",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: {type: string}
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      reads: text
""",
        ("11:14", "'reads' of node 'a' must be a list, not a string"),
    ),
    case(
        "nodes-is-a-mapping",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    a: {kind: tool, impl: tools/a.py}
""",
        ("5:5", "'nodes' must be a list, not a mapping", "[$.graph.nodes]"),
    ),
    case(
        "nodes-empty",
        """\
name: demo
version: 0.1.0
graph:
  nodes: []
""",
        ("4:10", "'nodes' must not be empty"),
    ),
    case(
        "state-field-not-a-mapping",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: string
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("5:11", "state field 'text' must be a mapping, not a string"),
    ),
    case(
        "when-is-a-number",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: b, kind: tool, impl: tools/a.py}
  edges:
    - {from: a, to: b, when: 1}
""",
        ("8:30", "'when' of edge #1 must be a string, not an integer"),
    ),
    case(
        "bad-node-kind",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tol, impl: tools/a.py}
""",
        (
            "5:21",
            "'kind' of node 'a' is 'tol'",
            "expected one of: tool, agent, dataset, experience",
            "did you mean 'tool'?",
        ),
    ),
    case(
        "bad-on-error-values",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      on_error:
        policy: retri
        attempts: 0
        backoff: quadratic
        then: retry
""",
        ("9:17", "'on_error.policy' of node 'a' is 'retri'", "did you mean 'retry'?"),
        ("10:19", "'on_error.attempts' of node 'a' must be at least 1, not 0"),
        ("11:18", "'on_error.backoff' of node 'a' is 'quadratic'", "linear, exponential"),
        ("12:15", "'on_error.then' of node 'a' is 'retry'", "fail_run, skip"),
    ),
    case(
        "on-error-is-a-string",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py, on_error: skip}
""",
        ("5:55", "'on_error' of node 'a' must be a mapping, not a string"),
    ),
    case(
        "bad-state-type-and-merge",
        """\
name: demo
version: 0.1.0
state:
  schema:
    n: {type: int}
    log: {type: array, merge: append}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        # one problem for `int`, not a second one from checking the field's JSON Schema
        ("5:15", "'type' of state field 'n' is 'int'", "did you mean 'integer'?"),
        ("6:31", "'merge' of state field 'log' is 'append'", "did you mean 'array_append'?"),
    ),
    case(
        "bad-dataset-format-and-type",
        """\
name: demo
version: 0.1.0
state:
  schema:
    rows: {type: array}
    more: {type: array}
graph:
  nodes:
    - id: load
      kind: dataset
      source: {type: file, uri: data/rows.json, format: yaml}
      writes: [rows]
    - id: fetch
      kind: dataset
      source: {type: ftp, uri: data/rows.json}
      writes: [more]
""",
        ("11:57", "'source.format' of node 'load' is 'yaml'", "json, jsonl, csv"),
        ("15:22", "'source.type' of node 'fetch' is 'ftp'", "file, sqlite, http"),
        files={"data/rows.json": "[]"},
    ),
    case(
        "bounds-of-agent-and-loop",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: {type: string}
graph:
  nodes:
    - id: ask
      kind: agent
      prompt: prompts/p.md
      reads: [text]
      writes: [text]
      temperature: 3
      max_tokens: 0
  loops:
    - {id: again, body: ask, until: '$.text == "ok"', max_iters: 5000}
""",
        ("13:20", "'temperature' of node 'ask' must be at most 2, not 3"),
        ("14:19", "'max_tokens' of node 'ask' must be at least 1, not 0"),
        ("16:66", "'max_iters' of loop #1 must be at most 1000, not 5000"),
        files=PROMPT,
    ),
    case(
        "missing-required-keys",
        """\
# no name, no version
graph:
  nodes:
    - {id: a, kind: tool}
    - {id: b, kind: agent, writes: []}
    - kind: tool
      impl: tools/a.py
""",
        ("2:1", "the experience is missing required key 'name'"),
        ("2:1", "the experience is missing required key 'version'"),
        ("4:7", "node 'a' is missing required key 'impl'"),
        ("5:7", "node 'b' is missing required key 'prompt'"),
        ("5:36", "node 'b' has no output schema", "(it has 0)"),
        ("6:7", "node #3 is missing required key 'id'"),
    ),
    case(
        "bad-name-and-version",
        """\
name: My_Experience
version: 1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("1:7", "'name' is 'My_Experience'", "lowercase letters, digits and dashes"),
        ("2:10", "'version' must be a string, not a number"),
    ),
    case(
        "version-not-semver",
        """\
name: demo
version: 'v1.2'
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("2:10", "'version' is 'v1.2'", "semantic version"),
    ),
    case(
        "bad-ids",
        """\
name: demo
version: 0.1.0
phases: [{id: load-phase}]
graph:
  nodes:
    - {id: 1st, kind: tool, impl: tools/a.py}
""",
        ("3:15", "'id' is 'load-phase'", "[$.phases[0].id]"),
        ("6:12", "'id' of node '1st' is '1st'", "must start with a letter or _"),
    ),
    case(
        "bad-state-field-name",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: {type: string}
    word-count: {type: integer}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        (
            "6:5",
            "state field name 'word-count' must start with a letter or _",
            "[$.state.schema.word-count]",
        ),
    ),
    case(
        "duplicate-reads",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: {type: string}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py, reads: [text, text]}
""",
        ("8:52", "'reads' of node 'a' lists the same entry twice"),
    ),
    case(
        "invalid-state-default",
        """\
name: demo
version: 0.1.0
state:
  schema:
    total: {type: integer, default: none}
    tags: {type: array, items: {type: string}, default: [a, 2]}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        (
            "5:37",
            "default of state field 'total' does not match its schema",
            "'none' is not of type 'integer'",
        ),
        # at the item that does not match, not at the whole list
        (
            "6:61",
            "default of state field 'tags' does not match its schema",
            "2 is not of type 'string'",
            "[$.state.schema.tags.default[1]]",
        ),
    ),
    case(
        "invalid-state-field-schema",
        """\
name: demo
version: 0.1.0
state:
  schema:
    code: {type: string, pattern: '(unclosed'}
    doc: {type: object, properties: {title: {type: text}}}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("5:35", "state field 'code' has an invalid schema", "is not a 'regex'"),
        (
            "6:52",
            "state field 'doc' has an invalid schema",
            "[$.state.schema.doc.properties.title.type]",
        ),
    ),
    case(
        "array-append-on-a-number",
        """\
name: demo
version: 0.1.0
state:
  schema:
    total: {type: integer, merge: array_append}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("5:35", "merge array_append needs type: array"),
    ),
    # -- references, ids, cycles -----------------------------------------------------------------
    case(
        "duplicate-node-id",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: a, kind: tool, impl: tools/a.py}
""",
        ("6:12", "duplicate id 'a' (first used on line 5)", "[$.graph.nodes[1].id]"),
    ),
    case(
        "edge-names-unknown-nodes",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: review, kind: tool, impl: tools/a.py}
    - {id: score, kind: tool, impl: tools/a.py}
  edges:
    - {from: review, to: scroe}
    - from: nowhere
      to: review
""",
        ("8:26", "edge 'to' names unknown node 'scroe'", "did you mean 'score'?"),
        ("9:13", "edge 'from' names unknown node 'nowhere'"),
    ),
    case(
        "pipeline-stage-and-loop-body-unknown",
        """\
name: demo
version: 0.1.0
state:
  schema:
    docs: {type: array}
graph:
  nodes:
    - {id: clean, kind: tool, impl: tools/a.py}
  pipelines:
    - {id: per_doc, items: $.docs, stages: [clean, reveiw]}
  loops:
    - {id: again, body: cleen, until: 'true', max_iters: 3}
""",
        ("10:52", "pipeline stage names unknown node 'reveiw'", "[$.graph.pipelines[0].stages[1]]"),
        ("12:25", "loop body names unknown node 'cleen'", "did you mean 'clean'?"),
    ),
    case(
        "cycle-of-three",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: b, kind: tool, impl: tools/a.py}
    - {id: c, kind: tool, impl: tools/a.py}
  edges:
    - {from: a, to: b}
    - {from: b, to: c}
    - {from: c, to: a}
""",
        # reported once, at an edge of the cycle, with the whole cycle named
        ("9:7", "cycle in the graph: b -> c -> a -> b", "use a loop"),
    ),
    case(
        "self-loop",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
  edges:
    - from: a
      to: a
""",
        ("7:7", "cycle in the graph: a -> a", "[$.graph.edges[0]]"),
    ),
    case(
        "edge-into-a-pipeline-stage",
        """\
name: demo
version: 0.1.0
state:
  schema:
    docs: {type: array}
graph:
  nodes:
    - {id: fetch, kind: tool, impl: tools/a.py}
    - {id: clean, kind: tool, impl: tools/a.py}
  pipelines:
    - {id: per_doc, items: $.docs, stages: [clean]}
    - {id: again, items: $.docs, stages: [clean]}
  edges:
    - {from: fetch, to: clean}
""",
        ("12:43", "node 'clean' already runs inside 'per_doc'"),
        ("14:25", "node 'clean' runs inside 'per_doc'", "connect the edge to 'per_doc'"),
    ),
    case(
        "undeclared-reads-and-writes",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: {type: string}
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      reads: [txt]
      writes:
        - text
        - summary
""",
        (
            "11:15",
            "reads undeclared state field 'txt'",
            "did you mean 'text'?",
            "[$.graph.nodes[0].reads[0]]",
        ),
        ("14:11", "writes undeclared state field 'summary'", "declare it under state.schema"),
    ),
    case(
        "unknown-phase",
        """\
name: demo
version: 0.1.0
phases: [{id: load}, {id: report}]
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py, phase: lod}
""",
        ("6:52", "unknown phase 'lod'", "did you mean 'load'?"),
    ),
    # -- expressions -------------------------------------------------------------------------------
    case(
        "when-syntax-error",
        """\
name: demo
version: 0.1.0
state:
  schema:
    n: {type: integer}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: b, kind: tool, impl: tools/a.py}
  edges:
    - from: a
      to: b
      when: $.n > > 2
""",
        # the second '>' (offset 6 in the expression, which starts at column 13)
        ("13:19", "invalid expression: expected a value but found '>'"),
    ),
    case(
        "when-in-quotes-reads-undeclared-field",
        """\
name: demo
version: 0.1.0
state:
  schema:
    findings: {type: array}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: b, kind: tool, impl: tools/a.py}
  edges:
    - {from: a, to: b, when: 'length($.findigns) > 0'}
""",
        # the quote is at column 30, so `$` (offset 7 inside it) is at column 38
        (
            "11:38",
            "'$.findigns' reads undeclared state field 'findigns'",
            "did you mean 'findings'?",
        ),
    ),
    case(
        "expressions-in-block-folded-and-escaped-scalars",
        """\
name: demo
version: 0.1.0
state:
  schema:
    n: {type: integer}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: b, kind: tool, impl: tools/a.py}
  edges:
    - from: a
      to: b
      when: >-
        $.n > 0 &&
        $.nope > 1
    - from: a
      to: b
      when: $.n > 0 ||
        $.gone
    - {from: a, to: b, when: "length(\\"\\t\\") > $.missing"}
    - {from: a, to: b, when: &w 'length(''x'') > $.absent'}
""",
        # on the line where the name stands, not past the end of the `when:` line
        ("15:9", "'$.nope' reads undeclared state field 'nope'"),
        ("19:9", "'$.gone' reads undeclared state field 'gone'"),
        # escapes and doubled quotes take more room in the file than in the value:
        # `"` at 30, then `length(\"\t\") > ` is 17 characters of the file
        ("20:48", "'$.missing' reads undeclared state field 'missing'"),
        # the anchor `&w ` comes first (30..32), the quote at 33, `length(''x'') > ` is 16
        ("21:50", "'$.absent' reads undeclared state field 'absent'"),
    ),
    case(
        "paths-that-cannot-resolve",
        """\
name: demo
version: 0.1.0
state:
  schema:
    results: {type: array, items: {type: object, properties: {title: {type: string}}}}
    draft: {type: string}
    count: {type: integer}
    verdict: {type: object, properties: {score: {type: number}}}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: b, kind: tool, impl: tools/a.py}
    - {id: c, kind: tool, impl: tools/a.py}
  edges:
    - {from: a, to: b, when: '$.results.length > 0'}
    - {from: a, to: b, when: '$.draft.x == 1 || $.results.first'}
    - {from: a, to: b, when: '$.verdict.scroe > 3 && length($.count) > 1'}
    - {from: a, to: b, when: '$.draft.length > 2 && $.results.0.titel == "x"'}
  loops:
    - {id: l, body: c, until: '$.count.value >= 1', max_iters: 2}
evals:
  - {name: e, expr: '$.results.size > 0'}
""",
        # located at the step that cannot be taken, with what to write instead
        (
            "15:41",
            "'$.results.length' never resolves: $.results is an array (it has no field "
            "'length'); did you mean length($.results)?",
        ),
        ("16:39", "'$.draft.x' never resolves: $.draft is a string (it has no field 'x')"),
        (
            "16:59",
            "'$.results.first' never resolves: $.results is an array; index it with a number "
            "($.results.0) or use any()/all()",
        ),
        (
            "17:41",
            "'$.verdict.scroe' never resolves: $.verdict has no field 'scroe' (its schema "
            "lists score); did you mean 'score'?",
        ),
        ("17:61", "length($.count) is never defined: $.count is an integer"),
        (
            "18:39",
            "'$.draft.length' never resolves: $.draft is a string (it has no field "
            "'length'); did you mean length($.draft)?",
        ),
        (
            "18:65",
            "'$.results.0.titel' never resolves: $.results.0 has no field 'titel' (its schema "
            "lists title); did you mean 'title'?",
        ),
        (
            "20:40",
            "'$.count.value' never resolves: $.count is an integer (it has no field 'value')",
        ),
        (
            "22:32",
            "'$.results.size' never resolves: $.results is an array; index it with a number "
            "($.results.0) or use any()/all()",
        ),
    ),
    case(
        "item-in-an-edge",
        """\
name: demo
version: 0.1.0
state:
  schema:
    n: {type: integer}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: b, kind: tool, impl: tools/a.py}
  edges:
    - from: a
      to: b
      when: "$.n > 0 && $item.ok == true"
""",
        ("13:25", "$item is only available inside for_each"),
    ),
    case(
        "until-bad-expressions",
        """\
name: demo
version: 0.1.0
state:
  schema:
    n: {type: integer}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py, writes: [n]}
    - {id: b, kind: tool, impl: tools/a.py, writes: [n]}
  loops:
    - {id: l1, body: a, until: '$.n >= 3 and true', max_iters: 5}
    - {id: l2, body: b, until: '$index > 2', max_iters: 5}
""",
        # the quote is at column 32, so `$` is at 33 and `and` (offset 9) at 42
        ("11:42", "invalid expression: unexpected 'and' after a complete expression"),
        ("12:33", "$index is only available inside for_each"),
    ),
    case(
        "for-each-source-not-an-array",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: {type: string}
    items: {type: array}
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      for_each: {source: $.text}
    - id: b
      kind: tool
      impl: tools/a.py
      for_each: {source: $.itmes}
    - id: c
      kind: tool
      impl: tools/a.py
      for_each: {source: items}
""",
        ("12:26", "'$.text' must name an array field; 'text' is string"),
        ("16:26", "'$.itmes' reads undeclared state field 'itmes'", "did you mean 'items'?"),
        # one problem, not also a second "invalid expression" about the same text
        ("20:26", "'for_each.source' of node 'c' is 'items'", "state path such as $.items"),
    ),
    case(
        "pipeline-items-not-an-array",
        """\
name: demo
version: 0.1.0
state:
  schema:
    doc: {type: object}
graph:
  nodes:
    - {id: clean, kind: tool, impl: tools/a.py}
  pipelines:
    - {id: per_doc, items: $.doc, stages: [clean]}
""",
        ("10:28", "'$.doc' must name an array field; 'doc' is object"),
    ),
    case(
        "tool-args-read-undeclared-state",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - id: a
      kind: tool
      impl: tools/a.py
      args: {path: $.input_path, limit: '$.n >'}
""",
        ("8:20", "'$.input_path' reads undeclared state field 'input_path'"),
        ("8:47", "invalid expression: expected a value but found end of expression"),
    ),
    # -- files -----------------------------------------------------------------------------------
    case(
        "tool-file-missing-or-outside",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/missing.py}
    - {id: b, kind: tool, impl: ../outside.py}
    - {id: c, kind: tool, impl: /etc/hostname}
    - {id: d, kind: tool, impl: tools/../../tools/a.py}
""",
        ("5:33", "tool file 'tools/missing.py' does not exist"),
        ("6:33", "tool file '../outside.py' is outside the experience directory"),
        ("7:33", "tool file '/etc/hostname' is outside the experience directory"),
        ("8:33", "is outside the experience directory"),
    ),
    case(
        "tool-function-not-defined",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: 'tools/a.py:main'}
    - {id: b, kind: tool, impl: tools/b.py}
""",
        ("5:33", "tool 'a.py' defines no function 'main'"),
        ("6:33", "tool 'b.py' defines no function 'run'", "did you mean 'rnu'?"),
        files={"tools/a.py": TOOL, "tools/b.py": "def rnu(inputs):\n    return {}\n"},
    ),
    case(
        "tool-not-executable-not-a-file-syntax-error",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/run.sh}
    - {id: b, kind: tool, impl: tools}
    - {id: c, kind: tool, impl: tools/broken.py}
    - {id: d, kind: tool, impl: tools/ok.sh}
""",
        ("5:33", "tool 'tools/run.sh' is not executable", "chmod +x tools/run.sh"),
        ("6:33", "tool 'tools' is not a file"),
        ("7:33", "tool 'broken.py' has a syntax error on line 2"),
        files={
            "tools/run.sh": "#!/bin/sh\necho '{}'\n",
            "tools/ok.sh": "#!/bin/sh\necho '{}'\n",
            "tools/broken.py": "def run(inputs):\n    return {\n",
        },
        executable=("tools/ok.sh",),
    ),
    case(
        "prompt-and-system-files-missing",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: {type: string}
graph:
  nodes:
    - id: ask
      kind: agent
      prompt: prompts/ask.md
      system: ../system.md
      writes: [text]
""",
        ("10:15", "prompt file 'prompts/ask.md' does not exist"),
        ("11:15", "system prompt file '../system.md' is outside the experience directory"),
    ),
    case(
        "prompt-placeholders",
        """\
name: demo
version: 0.1.0
state:
  schema:
    text: {type: string}
    notes: {type: string}
graph:
  nodes:
    - id: ask
      kind: agent
      prompt: prompts/p.md
      reads: [text]
      writes: [notes]
""",
        (
            "prompts/p.md:1:7",
            "placeholder '{{ txt }}' names no readable field",
            "did you mean 'text'?",
            "[$.graph.nodes[0].prompt]",
        ),
        ("prompts/p.md:2:1", "placeholder '{{ notes }}' names no readable field"),
        ("prompts/p.md:3:9", "placeholder '{{ $item.title }}' needs for_each on the node"),
        ("prompts/p.md:4:3", "malformed placeholder '{{ text | upper }}'"),
        files={
            "prompts/p.md": "Read: {{ txt }}\n{{ notes }} is written, not read.\n"
            "Item is {{ $item.title }}\n> {{ text | upper }}\nFine: {{ text }} {{text}}\n"
        },
    ),
    case(
        "output-schemas",
        """\
name: demo
version: 0.1.0
state:
  schema:
    score: {type: number}
    notes: {type: string}
graph:
  nodes:
    - id: bad_type
      kind: agent
      prompt: prompts/p.md
      writes: [score]
      schema: {type: objekt}
    - id: a_list
      kind: agent
      prompt: prompts/p.md
      writes: [score]
      schema: {type: array}
    - id: extra
      kind: agent
      prompt: prompts/p.md
      writes: [score]
      schema:
        type: object
        properties:
          score: {type: number, minimum: '0'}
          notes: {type: string}
""",
        ("13:22", "invalid output schema of node 'bad_type'"),
        ("18:22", "output schema of node 'a_list' must describe an object"),
        ("26:42", "invalid output schema of node 'extra'", "'0' is not of type 'number'"),
        files={"prompts/p.md": "Score it.\n"},
    ),
    case(
        "output-property-not-written",
        """\
name: demo
version: 0.1.0
state:
  schema:
    score: {type: number}
    notes: {type: string}
graph:
  nodes:
    - id: judge
      kind: agent
      prompt: prompts/p.md
      writes: [score]
      schema:
        type: object
        properties:
          score: {type: number}
          notes: {type: string}
""",
        ("17:11", "output schema property 'notes' is not in the writes of node 'judge'"),
        files={"prompts/p.md": "Score it.\n"},
    ),
    case(
        "agent-without-schema-needs-one-write",
        """\
name: demo
version: 0.1.0
state:
  schema:
    score: {type: number}
    notes: {type: string}
graph:
  nodes:
    - id: two
      kind: agent
      prompt: prompts/p.md
      writes: [score, notes]
    - id: none
      kind: agent
      prompt: prompts/p.md
""",
        ("12:15", "node 'two' has no output schema", "exactly one writes field (it has 2)"),
        ("13:7", "node 'none' has no output schema", "(it has 0)"),
        files={"prompts/p.md": "Score it.\n"},
    ),
    case(
        "datasets",
        """\
name: demo
version: 0.1.0
state:
  schema:
    rows: {type: array}
    count: {type: integer}
graph:
  nodes:
    - {id: two, kind: dataset, source: {type: file, uri: data/rows.json}, writes: [rows, count]}
    - {id: gone, kind: dataset, source: {type: file, uri: data/gone.csv}, writes: [rows]}
    - {id: txt, kind: dataset, source: {type: file, uri: data/rows.txt}, writes: [rows]}
    - {id: db, kind: dataset, source: {type: sqlite, uri: data/rows.db}, writes: [rows]}
""",
        ("9:83", "node 'two' must write exactly one field (it writes 2)"),
        ("10:59", "data file 'data/gone.csv' does not exist"),
        ("11:58", "cannot tell the format of 'data/rows.txt'", "set source.format"),
        ("12:31", "'source' of node 'db' is missing required key 'query'"),
        files={"data/rows.json": "[]", "data/rows.txt": "", "data/rows.db": ""},
    ),
    case(
        "paths-that-cannot-be-files",
        """\
name: demo
version: 0.1.0
state:
  schema:
    rows: {type: array}
    text: {type: string}
graph:
  nodes:
    - {id: ask, kind: agent, prompt: prompts, writes: [text]}
    - {id: load, kind: dataset, source: {type: file, uri: data, format: json}, writes: [rows]}
    - {id: nul, kind: tool, impl: "tools/a\\0.py"}
"""
        + "    - {id: long, kind: tool, impl: "
        + "x" * 300
        + "}\n",
        ("9:38", "prompt file 'prompts' is not a file"),
        ("10:59", "data file 'data' is not a file"),
        ("11:35", "is not a usable path (embedded null byte)"),
        ("12:36", "is not a usable path (File name too long)"),
        files={"prompts/p.md": "Hi.\n", "data/rows.json": "[]", "tools/a.py": TOOL},
    ),
    case(
        "child-experience",
        """\
name: demo
version: 0.1.0
graph:
  nodes:
    - {id: sub, kind: experience, impl: child}
    - {id: out, kind: experience, impl: ../elsewhere}
""",
        ("5:41", "child experience 'child' has no experience.yaml"),
        ("6:41", "child experience '../elsewhere' is outside the experience directory"),
        files={"child/README.md": "not an experience\n"},
    ),
    # -- size limits -----------------------------------------------------------------------------
    case(
        "alias-bomb",
        "name: demo\nversion: 0.1.0\n"
        + "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
        # 10**8 values if expanded. Each alias adds its anchor's size (a0 is 11 values, a1
        # 111, a2 1111, a3 11111): a1..a3 add 110 + 1110 + 11110 = 12330, so a4's 8th *a3 (at
        # column 10 + 7 * 5) takes what aliases added past 100000
        ("7:45", "YAML aliases expand to more than 100000 values"),
    ),
    case(
        "nesting-too-deep",
        "name: demo\nversion: 0.1.0\ngraph: " + "[" * 50_000 + "]" * 50_000 + "\n",
        # the top-level mapping is level 1, so the 200th '[' (col 8 holds the first) is level
        # 201; found from the parser's events, before libyaml's composer recurses into it
        ("3:207", "YAML nesting is too deep"),
    ),
    case(
        "recursive-alias",
        """\
name: demo
version: 0.1.0
graph: &g
  nodes:
    - *g
""",
        ("5:7", "recursive YAML alias '*g'"),
    ),
    # -- everything at once ----------------------------------------------------------------------
    case(
        "many-problems-reported-together",
        """\
name: Demo
version: 0.1.0
state:
  schema:
    text: {type: string}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/nope.py, writes: [txt]}
    - {id: b, kind: tool, impl: tools/a.py, reads: [text]}
  edges:
    - {from: a, to: c}
    - {from: b, to: a, when: '$.text =='}
""",
        ("1:7", "'name' is 'Demo'"),
        ("8:33", "tool file 'tools/nope.py' does not exist"),
        ("8:57", "writes undeclared state field 'txt'"),
        ("11:21", "edge 'to' names unknown node 'c'"),
        ("12:40", "invalid expression: expected a value but found end of expression"),
    ),
]

_LINE = re.compile(r"^exp/(?P<file>\S+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$")


@pytest.mark.parametrize(("yaml_text", "expected", "files", "executable"), CASES)
def test_validate_reports_each_problem_where_it_is(
    tmp_path, monkeypatch, yaml_text, expected, files, executable
):
    write_experience(tmp_path / "exp", yaml_text, files, executable=executable)
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["validate", "exp"])

    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected), "\n".join(lines)
    for line, (where, *words) in zip(lines, expected, strict=True):
        match = _LINE.match(line)
        assert match, line
        file, _, position = where.rpartition(":")
        file, _, row = file.rpartition(":") if file.count(":") else ("", "", file)
        assert (match["file"], match["line"], match["col"]) == (
            file or "experience.yaml",
            row,
            position,
        ), line
        for word in words:
            assert word in match["message"], f"{word!r} not in {line!r}"
    count = len(expected)
    assert result.stderr.startswith(f"{count} problem{'s' * (count != 1)} in "), result.stderr


def test_corpus_is_large_enough():
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


# -- cases that need more than YAML text and files ---------------------------------------------


def test_not_utf8(tmp_path, monkeypatch):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "experience.yaml").write_bytes(b"name: caf\xe9\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["validate", "exp"])
    assert result.exit_code == 2
    assert result.stdout.startswith("exp/experience.yaml:1:1: not UTF-8 text")


def test_directory_without_experience_yaml(tmp_path, monkeypatch):
    (tmp_path / "exp").mkdir()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["validate", "exp"])
    assert result.exit_code == 2
    assert result.stdout == "exp/experience.yaml:1:1: no experience.yaml in exp [$]\n"


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlinks_that_escape_or_loop(tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text(TOOL)
    exp = write_experience(
        tmp_path / "exp",
        """\
        name: demo
        version: 0.1.0
        graph:
          nodes:
            - {id: a, kind: tool, impl: tools/link.py}
            - {id: b, kind: tool, impl: tools/loop.py}
        """,
    )
    (exp / "tools").mkdir()
    (exp / "tools" / "link.py").symlink_to(outside)
    (exp / "tools" / "loop.py").symlink_to("loop.py")
    with pytest.raises(SpecError) as caught:
        load_experience(exp, display="experience.yaml")
    problems = [str(p) for p in caught.value.problems]
    assert problems[0] == (
        "experience.yaml:5:33: tool file 'tools/link.py' is outside the experience directory "
        "[$.graph.nodes[0].impl]"
    )
    assert problems[1].startswith(
        "experience.yaml:6:33: tool file 'tools/loop.py' is not a usable path (Symlink loop"
    )
    assert len(problems) == 2


def test_unreadable_experience_yaml(tmp_path, monkeypatch):
    exp = write_experience(tmp_path / "exp", "name: demo\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(SpecError) as caught:
        load_experience(exp, display="experience.yaml")
    assert str(caught.value) == "experience.yaml:1:1: cannot read it (Permission denied) [$]"


def test_every_problem_is_a_line_of_the_json_output(tmp_path, monkeypatch):
    write_experience(
        tmp_path / "exp",
        """\
        name: demo
        version: 0.1.0
        graph:
          nodes:
            - {id: a, kind: tol, impl: tools/a.py}
        """,
        TOOLS,
    )
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["validate", "exp", "--json"])
    assert result.exit_code == 2
    assert '"line": 5' in result.stdout and '"col": 21' in result.stdout


def test_the_valid_starter_passes():
    root = Path(__file__).resolve().parents[1]
    result = runner.invoke(app, ["validate", str(root / "examples" / "starter")])
    assert result.exit_code == 0, result.output
    assert "ok (starter 0.1.0: 4 nodes, 3 edges, 4 state fields)" in result.stdout


def _chain(n: int) -> str:
    """A spec of `n` tool nodes in a chain, written out in full: no anchor, no alias."""
    nodes = "".join(f"    - {{id: n{i}, kind: tool, impl: tools/t.py}}\n" for i in range(n))
    edges = "".join(f"    - {{from: n{i}, to: n{i + 1}}}\n" for i in range(n - 1))
    return f"name: demo\nversion: 0.1.0\ngraph:\n  nodes:\n{nodes}  edges:\n{edges}"


def test_only_values_aliases_add_count_against_the_alias_limit(monkeypatch):
    from evolve.spec import source

    monkeypatch.setattr(source, "_MAX_EXPANSION", 50)
    data, _, problems = source.parse_yaml(_chain(40), "experience.yaml")  # ~480 values, no alias
    assert problems == [] and len(data["graph"]["nodes"]) == 40
    bomb = "name: demo\nversion: 0.1.0\na: &a [x, x, x, x, x, x, x, x, x]\n"
    bomb += "b: [*a, *a, *a, *a, *a, *a]\n"
    _, _, problems = source.parse_yaml(bomb, "experience.yaml")  # the 6th *a adds values 51 to 60
    assert [(p.line, p.col, p.message) for p in problems] == [
        (4, 25, "YAML aliases expand to more than 50 values")
    ]


@pytest.mark.slow
def test_a_large_spec_without_aliases_is_not_an_alias_bomb():
    from evolve.spec.source import parse_yaml

    data, _, problems = parse_yaml(_chain(12_000), "experience.yaml")
    assert problems == []
    assert len(data["graph"]["nodes"]) == 12_000 and len(data["graph"]["edges"]) == 11_999


@pytest.mark.slow
def test_a_12000_node_chain_loads(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "t.py").write_text("def run(inputs):\n    return {}\n")
    (tmp_path / "experience.yaml").write_text(_chain(12_000))
    experience = load_experience(tmp_path)
    assert len(experience.nodes) == 12_000
    assert len(experience.predecessors("n11999")) == 1


PATHS_THAT_RESOLVE = """\
name: demo
version: 0.1.0
state:
  schema:
    results: {type: array, items: {type: object, properties: {title: {type: string}}}}
    meta: {type: object}
    open: {type: object, properties: {a: {type: string}}, additionalProperties: {type: number}}
    loose: {type: object, properties: {a: {type: string}}, additionalProperties: true}
    pairs: {type: array, prefixItems: [{type: string}, {type: object}]}
graph:
  nodes:
    - {id: a, kind: tool, impl: tools/a.py}
    - {id: b, kind: tool, impl: tools/a.py}
  edges:
    - {from: a, to: b, when: 'length($.results) > 0 && $.results.0.title == "x"'}
    - {from: a, to: b, when: '$.meta.anything.deeper && $.open.other > 1 && $.loose.x.y'}
    - {from: a, to: b, when: 'any($.results, $item.title == "x") && $.pairs.1.k'}
"""


def test_paths_the_schema_allows_validate(tmp_path):
    exp = write_experience(tmp_path / "exp", PATHS_THAT_RESOLVE, TOOLS)
    assert len(load_experience(exp).edges) == 3


def test_the_path_checker_is_one_function_evals_can_call():
    from evolve.spec.expressions import parse_expression
    from evolve.spec.typecheck import path_problems

    fields = {"results": {"type": "array"}, "n": {"type": "number"}}
    [problem] = path_problems(parse_expression("$.n > 0 && $.results.length > 0"), fields)
    assert problem.offset == len("$.n > 0 && $.results.")
    assert problem.message.endswith("did you mean length($.results)?")
    assert path_problems(parse_expression("length($.results) > $.n"), fields) == []


# the cases whose YAML builds a mapping: those the JSON Schema shape check sees
SHAPED = [c for c in CASES if isinstance(parse_yaml(c.values[0], "experience.yaml")[0], dict)]


@pytest.mark.parametrize(("yaml_text", "expected", "files", "executable"), SHAPED)
def test_the_shape_check_says_what_the_whole_schema_says(yaml_text, expected, files, executable):
    """The per-kind validators on the load path report, for each case, exactly the errors one
    validator of the whole shipped schema reports (so the same located messages)."""
    data, loc, _ = parse_yaml(yaml_text, "experience.yaml")
    whole = jsonschema.Draft202012Validator(json.loads(loader.schema_text()))

    def described(errors):
        found = {(p.line, p.col, p.message) for e in errors for p in loader._describe(e, loc, data)}
        return sorted(found)

    assert described(shape_errors(data, loader.schema_text())) == described(whole.iter_errors(data))
