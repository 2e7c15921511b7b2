"""Frozen nodes (SPEC §6): a proposal may not touch a frozen node by any route: its spec entry
(prompt, system, dataset source...), the files it reads (prompt, data file, tool source and the
helper modules the tool imports), or a condition on an edge into it. Each is set aside with the
reason in the appendix."""

from __future__ import annotations

import pytest

from evolve.advisor.propose import propose
from evolve.store.workspace import Workspace
from fakes import ScriptedModel
from helpers import build, run

SPEC = """\
name: x
version: 0.1.0
runtime:
  model: fake/m
state:
  schema:
    doc: {type: string}
    rows: {type: array}
    summary: {type: string}
    extra: {type: string}
graph:
  nodes:
    - id: load
      kind: tool
      impl: tools/load.py
      writes: [doc]
      frozen: true
    - id: rows
      kind: dataset
      source: {type: file, uri: data/rows.json}
      writes: [rows]
      frozen: true
    - id: summarise
      kind: agent
      prompt: prompts/sum.md
      reads: [doc]
      writes: [summary]
      frozen: true
    - id: free
      kind: tool
      impl: tools/free.py
      writes: [extra]
  edges:
    - {from: load, to: summarise}
    - {from: rows, to: summarise}
"""

FILES = {
    "tools/load.py": "import json\n\nimport texts\nfrom lib import fmt\n\n\n"
    "def run(i):\n    return {'state_delta': {'doc': fmt.shout(texts.text())}}\n",
    "tools/texts.py": "def text():\n    return 'text'\n",
    "tools/lib/__init__.py": "",
    "tools/lib/fmt.py": "def shout(s):\n    return s.upper()\n",
    "tools/free.py": "import texts\n\n\ndef run(i):\n"
    "    return {'state_delta': {'extra': texts.text()}}\n",
    "data/rows.json": '[{"a": 1}]\n',
    "prompts/sum.md": "Summarise: {{ doc }}\n",
}


def proposal(title, *edits):
    return {
        "operation": "tune-param",
        "title": title,
        "confidence": "medium",
        "rationale": "r",
        "evidence": ["x"],
        "edits": list(edits),
    }


def spec_edit(search, replace):
    return {"file": "experience.yaml", "search": search, "replace": replace}


def new(file, content="hello {{ doc }}\n"):
    return {"file": file, "content": content}


def advise(tmp_path, idea):
    exp = build(tmp_path / "x", SPEC, FILES)
    result = run(exp, tmp_path / "ws", ScriptedModel(["a summary"]))
    assert result.status == "success", result.reason
    model = ScriptedModel([{"proposals": [idea]}, {"proposals": [idea]}])
    return propose(Workspace(tmp_path / "ws"), [], model_client=model)


CASES = [
    (
        proposal(
            "New prompt file",
            spec_edit("prompt: prompts/sum.md", "prompt: prompts/sum2.md"),
            new("prompts/sum2.md"),
        ),
        "it changes the frozen node 'summarise'",
    ),
    (
        proposal(
            "Add a system prompt",
            spec_edit(
                "      prompt: prompts/sum.md\n",
                "      prompt: prompts/sum.md\n      system: prompts/sys.md\n",
            ),
            new("prompts/sys.md", "Be brief.\n"),
        ),
        "it changes the frozen node 'summarise'",
    ),
    (
        proposal(
            "Another data file",
            spec_edit("uri: data/rows.json", "uri: data/rows2.json"),
            new("data/rows2.json", "[]\n"),
        ),
        "it changes the frozen node 'rows'",
    ),
    (
        proposal(
            "One more row",
            {"file": "data/rows.json", "search": '[{"a": 1}]', "replace": '[{"a": 1}, {"a": 2}]'},
        ),
        "it changes data/rows.json, which belongs to the frozen node 'rows'",
    ),
    (
        proposal(
            "Better helper",
            {"file": "tools/texts.py", "search": "'text'", "replace": "'more text'"},
        ),
        "it changes tools/texts.py, which the frozen node 'load' imports",
    ),
    (
        proposal(
            "Better formatting",
            {"file": "tools/lib/fmt.py", "search": "s.upper()", "replace": "s.lower()"},
        ),
        "it changes tools/lib/fmt.py, which the frozen node 'load' imports",
    ),
    (
        proposal("Shadow a module", new("tools/json.py", "dumps = None\n")),
        "it changes tools/json.py, which the frozen node 'load' imports",
    ),
    (
        proposal(
            "Never summarise",
            spec_edit(
                "    - {from: load, to: summarise}\n",
                "    - {from: load, to: summarise, when: 'false'}\n",
            ),
        ),
        "it adds a condition (when) on the edge load -> summarise into the frozen node 'summarise'",
    ),
    (
        proposal(
            "Gate on a new edge",
            spec_edit(
                "    - {from: rows, to: summarise}\n",
                "    - {from: rows, to: summarise}\n"
                "    - {from: free, to: summarise, when: 'length($.rows) > 5'}\n",
            ),
        ),
        "it adds a condition (when) on the edge free -> summarise into the frozen node 'summarise'",
    ),
]


@pytest.mark.parametrize(("idea", "reason"), CASES, ids=[c[0]["title"] for c in CASES])
def test_a_proposal_touching_a_frozen_node_is_set_aside(tmp_path, idea, reason):
    report = advise(tmp_path, idea)
    assert report.proposals == []
    assert [r.title for r in report.rejected] == [idea["title"]]
    assert reason in report.rejected[0].reason
    assert f"- {idea['title']}: {reason}" in report.path.read_text()


def test_what_is_not_frozen_can_still_change(tmp_path):
    idea = proposal(
        "A plain edge and a longer timeout for free",
        spec_edit(
            "      impl: tools/free.py\n", "      impl: tools/free.py\n      timeout_ms: 9000\n"
        ),
        spec_edit(
            "    - {from: rows, to: summarise}\n",
            "    - {from: rows, to: summarise}\n    - {from: free, to: summarise}\n",
        ),
    )
    report = advise(tmp_path, idea)
    assert [p.title for p in report.proposals] == [idea["title"]], report.rejected
