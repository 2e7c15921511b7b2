"""`--record-missing` on `run`, `eval` and `propose`: what the cassette has is served, and only
the calls it misses go to the model (a loopback OpenAI-compatible server) and are appended to
`cassettes/recorded.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from helpers import build
from loopback import LoopbackServer

runner = CliRunner()
MODEL = "openai/evolve-test"

SPEC = """\
name: judged
version: 0.1.0
state:
  schema:
    title: {type: string, default: ""}
    verdict: {type: string}
graph:
  nodes:
    - id: judge
      kind: agent
      prompt: prompts/judge.md
      reads: [title]
      writes: [verdict]
      on_error: {policy: skip}
      schema:
        type: object
        required: [verdict]
        properties: {verdict: {enum: [ok, bad]}}
evals:
  - {name: ok, expr: "$.verdict == 'ok'"}
cases: {source: data/cases.jsonl}
"""


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-record-missing")


def experience(tmp_path: Path, titles: list[str]) -> Path:
    return build(
        tmp_path / "judged",
        SPEC,
        {"prompts/judge.md": "Judge {{ title }}.", "data/cases.jsonl": cases(titles)},
    )


def cases(titles: list[str]) -> str:
    return "".join(json.dumps({"id": t, "args": {"title": t}}) + "\n" for t in titles)


def reply(body: dict) -> dict:
    """The advisor gets no proposals; a judge gets `ok`."""
    if body["messages"][0]["content"].startswith("You improve"):
        return {"json": {"proposals": []}}
    return {"json": {"verdict": "ok"}}


def invoke(tmp_path: Path, *args: str, code: int = 0):
    result = runner.invoke(app, [*args, "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == code, result.output
    return result


def recorded(exp: Path) -> list[dict]:
    path = exp / "cassettes" / "recorded.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_option_is_on_run_eval_and_propose():
    for command in ("run", "eval", "propose"):
        help_text = runner.invoke(app, [command, "--help"]).output
        assert "--record-missing" in help_text, command


def test_eval_records_only_the_cases_the_cassette_misses(tmp_path):
    exp = experience(tmp_path, ["a", "b"])
    options = ["--model", MODEL, "--record-missing", "--json"]
    with LoopbackServer(respond=reply) as server:
        first = invoke(tmp_path, "eval", str(exp), "--api-base", server.base, *options)
        assert json.loads(first.stdout)["score"] == 1.0
        assert len(server.requests) == 2
        assert sorted(e["node"] for e in recorded(exp)) == ["judge", "judge"]
        # everything is in the cassette now: served from it, nothing new is made or appended
        invoke(tmp_path, "eval", str(exp), "--api-base", server.base, *options)
        assert len(server.requests) == 2 and len(recorded(exp)) == 2
        # a new case: only its call is made, and only its line is appended
        (exp / "data" / "cases.jsonl").write_text(cases(["a", "b", "c"]))
        third = invoke(tmp_path, "eval", str(exp), "--api-base", server.base, *options)
        assert json.loads(third.stdout)["score"] == 1.0
        assert len(server.requests) == 3
        assert "Judge c." in json.dumps(server.requests[-1]["messages"])
    lines = recorded(exp)
    assert len(lines) == 3
    assert "Judge c." in json.dumps(lines[-1]["request"]["messages"])


def test_propose_serves_the_advisor_from_the_cassette_and_records_a_miss(tmp_path):
    exp = experience(tmp_path, ["a"])
    with LoopbackServer(respond=reply) as server:
        invoke(tmp_path, "run", str(exp), "--model", MODEL, "--api-base", server.base)
        assert len(server.requests) == 1  # the run's own call, not recorded (no option)
        assert recorded(exp) == []
        args = ["propose", "--model", MODEL, "--api-base", server.base, "--record-missing"]
        first = invoke(tmp_path, *args)
        assert len(server.requests) == 2  # the advisor's call: missing, so made
        assert [e["node"] for e in recorded(exp)] == ["advisor"]
        assert "or openai/evolve-test for calls they miss (recorded)" in first.output
        invoke(tmp_path, *args)
        assert len(server.requests) == 2  # now served from the cassette
    assert [e["node"] for e in recorded(exp)] == ["advisor"]  # nothing appended twice


def cut_short(body: dict) -> dict:
    """A reply that fits only in a larger max_tokens: cut JSON below 24 tokens."""
    if (body.get("max_tokens") or 4096) < 24:
        return {"text": '{"verdict": "o'}
    return {"json": {"verdict": "ok"}}


@pytest.mark.slow  # a run, then two proposals each re-running a candidate
def test_propose_verify_records_only_the_re_runs_new_calls(tmp_path):
    exp = experience(tmp_path, ["a"])
    spec = exp / "experience.yaml"
    spec.write_text(
        spec.read_text().replace(
            "on_error: {policy: skip}", "max_tokens: 16\n      on_error: {policy: skip}"
        )
    )
    with LoopbackServer(respond=cut_short) as server:
        model = ["--model", MODEL, "--api-base", server.base]
        invoke(tmp_path, "run", str(exp), *model, code=1)  # partial: the judge's reply was cut
        made = len(server.requests)  # the first reply and its repair, both cut
        args = ["propose", "--verify", "--no-llm", "--record-missing", "--json", *model]
        first = json.loads(invoke(tmp_path, *args).stdout)
        top = first["proposals"][0]
        assert top["title"] == "Raise max_tokens of 'judge' to 32"
        assert top["verification"]["verdict"] == "better"
        assert top["verification"]["new_model_calls"] == 1
        assert len(server.requests) == made + 1  # the re-run's one new call, made
        [line] = recorded(exp)
        assert line["node"] == "judge"
        again = json.loads(invoke(tmp_path, *args).stdout)
        assert again["proposals"][0]["verification"]["verdict"] == "better"
        assert len(server.requests) == made + 1  # served from the cassette this time
    assert len(recorded(exp)) == 1
