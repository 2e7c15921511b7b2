"""`evolve new`: drafts from scripted replies of a loopback OpenAI-compatible server.

The server answers the analysis, the synthesis and each repair round in turn; the tests check
what evolve wrote, what it sent back, and how it ended.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from loopback import LoopbackServer

MODEL = "openai/evolve-author"

ANALYSIS = {
    "name": "greeter",
    "description": "Greet a person by name.",
    "phases": [],
    "state": [{"name": "person", "type": "string"}, {"name": "greeting", "type": "string"}],
    "nodes": [{"id": "greet", "kind": "tool", "purpose": "write the greeting"}],
    "open_questions": ["Formal or informal?"],
}

SPEC = """\
name: greeter
version: 0.1.0
description: Greet a person by name.
state:
  schema:
    person: {type: string, default: Ada}
    greeting: {type: string}
graph:
  nodes:
    - id: greet
      kind: tool
      impl: tools/greet.py
      reads: [person]
      writes: [greeting]
"""

TOOL = (
    "def run(inputs):\n"
    '    return {"state_delta": {"greeting": "Hello " + inputs["_state"]["person"]}}\n'
)


def files(spec: str = SPEC, **extra: str) -> list[dict[str, str]]:
    found = {"experience.yaml": spec, "tools/greet.py": TOOL, "README.md": "# greeter\n", **extra}
    return [{"path": path, "content": content} for path, content in found.items()]


def synthesis(spec: str = SPEC, **extra: str) -> dict:
    return {"json": {"files": files(spec, **extra), "next_steps": ["Pick a tone."]}}


def repair(**changed: str) -> dict:
    return {"json": {"files": [{"path": p, "content": c} for p, c in changed.items()]}}


@pytest.fixture
def author(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-authoring-key-000")
    runner = CliRunner()

    def run(script: list[dict], *args: str) -> tuple[object, LoopbackServer]:
        with LoopbackServer(script) as server:
            result = runner.invoke(
                app, ["new", "greet people", "--model", MODEL, "--api-base", server.base, *args]
            )
        return result, server

    return run


def test_a_good_draft_is_written_validated_and_summarised(author, tmp_path):
    result, server = author([{"json": ANALYSIS}, synthesis()])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "drafted greeter (3 files)",
        "open questions:",
        "  - Formal or informal?",
        "next:",
        "  - Pick a tone.",
        "  evolve validate greeter",
        "  evolve run greeter",
        "  evolve propose last",
    ]
    spec = (tmp_path / "greeter" / "experience.yaml").read_text()
    assert spec.startswith("# yaml-language-server: $schema=./experience.schema.json\nname:")
    assert (tmp_path / "greeter" / "experience.schema.json").is_file()
    assert (tmp_path / "greeter" / "tools" / "greet.py").read_text() == TOOL
    assert len(server.requests) == 2
    assert server.requests[0]["messages"][-1]["content"] == "Task: greet people"
    assert '"name": "greeter"' in server.requests[1]["messages"][-1]["content"]
    runner = CliRunner()
    assert runner.invoke(app, ["validate", "greeter"]).exit_code == 0
    ran = runner.invoke(app, ["run", "greeter", "--json"])
    assert json.loads(ran.stdout)["status"] == "success"


def test_a_draft_that_needs_two_repair_rounds(author, tmp_path):
    typo = SPEC.replace("reads: [person]", "reeds: [person]")
    wrong_field = SPEC.replace("writes: [greeting]", "writes: [greting]")
    result, server = author(
        [
            {"json": ANALYSIS},
            synthesis(typo),
            repair(**{"experience.yaml": wrong_field}),
            repair(**{"experience.yaml": SPEC}),
        ],
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["repair_rounds"] == 2
    first_repair = server.requests[2]["messages"][-1]["content"]
    assert first_repair.startswith("evolve validate found these problems in the draft:\n- ")
    # located as `evolve validate` prints them (line 14: evolve added the schema line on top)
    assert "greeter/experience.yaml:14:7: unknown key 'reeds' in node 'greet'" in first_repair
    assert "did you mean 'reads'?" in first_repair
    second_repair = server.requests[3]["messages"][-1]["content"]
    assert "undeclared state field 'greting'" in second_repair
    # each round sees the conversation so far
    assert len(server.requests[3]["messages"]) == len(server.requests[2]["messages"]) + 2
    assert "reads: [person]" in (tmp_path / "greeter" / "experience.yaml").read_text()


def test_a_draft_that_never_validates_is_kept_and_fails(author, tmp_path):
    broken = SPEC.replace("impl: tools/greet.py", "impl: tools/missing.py")
    result, server = author(
        [
            {"json": ANALYSIS},
            synthesis(broken),
            repair(**{"README.md": "# still\n"}),
            repair(**{"README.md": "# again\n"}),
        ],
        "--max-rounds",
        "2",
    )
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "the draft in greeter still does not validate after 2 repair rounds:"
    assert lines[1] == (
        "  greeter/experience.yaml:13:13: tool file 'tools/missing.py' does not exist "
        "[$.graph.nodes[0].impl]"
    )
    assert "the draft is kept in greeter: fix it by hand, then `evolve validate greeter`" in lines
    assert (tmp_path / "greeter" / "README.md").read_text() == "# again\n"  # the last round's
    assert len(server.requests) == 4


def test_a_reply_writing_outside_its_directory_is_refused(author, tmp_path):
    outside = tmp_path / "outside.txt"
    result, server = author(
        [
            {"json": ANALYSIS},
            synthesis(**{"../outside.txt": "escaped", str(outside): "absolute"}),
            repair(),
        ],
        "--max-rounds",
        "1",
    )
    assert not outside.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["greeter"]
    refusal = server.requests[2]["messages"][-1]["content"]
    assert "- ../outside.txt: refused: files must be relative paths inside the new" in refusal
    assert f"- {outside}: refused" in refusal
    assert result.exit_code == 0, result.output  # the repair round left them out
    assert "  refused to write ../outside.txt (outside greeter)" in result.stdout


def test_an_existing_directory_is_never_written_into(author, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result, server = author([], "--dir", "taken")
    assert result.exit_code == 2
    assert "taken already exists and is not an empty directory" in result.stderr
    assert server.requests == []  # refused before any model call
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["keep.txt"]


def test_an_analysis_off_its_schema_gets_one_repair_turn_then_fails(author, tmp_path):
    result, server = author([{"json": {"name": "Bad Name"}}, {"json": {"name": "still bad"}}])
    assert result.exit_code == 1
    assert "the analysis reply could not be used after a repair turn" in result.stderr
    assert len(server.requests) == 2
    assert list(tmp_path.iterdir()) == []


def test_offline_replays_the_recorded_demo_with_no_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVOLVE_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    runner = CliRunner()
    made = runner.invoke(app, ["new", "count the words of a text", "--offline", "--dir", "wc"])
    assert made.exit_code == 0, made.output
    assert made.stdout.startswith("drafted wc (")
    assert runner.invoke(app, ["validate", "wc"]).exit_code == 0
    ran = runner.invoke(app, ["run", "wc", "--json"])
    assert json.loads(ran.stdout)["status"] == "success"


def test_a_recorded_draft_replays(author, tmp_path):
    cassette = tmp_path / "new.jsonl"
    first, _ = author([{"json": ANALYSIS}, synthesis()], "--record", str(cassette), "--dir", "a")
    assert first.exit_code == 0, first.output
    replayed = CliRunner().invoke(
        app, ["new", "greet people", "--model", MODEL, "--replay", str(cassette), "--dir", "b"]
    )
    assert replayed.exit_code == 0, replayed.output
    assert (tmp_path / "b" / "tools" / "greet.py").read_text() == TOOL


def test_no_model_is_a_usage_error_that_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVOLVE_MODEL", raising=False)
    result = CliRunner().invoke(app, ["new", "anything"])
    assert result.exit_code == 2
    assert "pass --model" in result.stderr and "--offline" in result.stderr
    assert not Path(tmp_path / "anything").exists()


def test_a_repair_round_that_fails_keeps_the_draft_and_says_why(author, tmp_path):
    broken = SPEC.replace("impl: tools/greet.py", "impl: tools/missing.py")
    result, _ = author(
        [{"json": ANALYSIS}, synthesis(broken), {"status": 500}], "--max-rounds", "3"
    )
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "the draft in greeter still does not validate after 1 repair round:"
    assert lines[2].startswith("  repair round 1 failed: openai/evolve-author: ")
    assert (tmp_path / "greeter" / "tools" / "greet.py").read_text() == TOOL
