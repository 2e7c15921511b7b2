"""Live tests: a real model on a real OpenAI-compatible server, end to end.

They run only when `EVOLVE_LIVE_API_BASE` points at a server (for example
`http://127.0.0.1:8080/v1` for llama.cpp, vLLM, LM Studio or Ollama's /v1), and are skipped with
that reason otherwise; CI has no model. `EVOLVE_LIVE_MODEL` names the model (default
`openai/local`), and `EVOLVE_LIVE_CONTEXT_WINDOW` gives the window for servers that do not report
it. Small local models are slow: every limit here is generous, and `pytest -m live --durations=0`
prints how long each test took.

    EVOLVE_LIVE_API_BASE=http://127.0.0.1:8080/v1 OPENAI_API_KEY=local \\
        EVOLVE_LIVE_CONTEXT_WINDOW=4096 pytest -m live --durations=0
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from helpers import build, spec

BASE = os.environ.get("EVOLVE_LIVE_API_BASE")
MODEL = os.environ.get("EVOLVE_LIVE_MODEL", "openai/local")
WINDOW = os.environ.get("EVOLVE_LIVE_CONTEXT_WINDOW")
EXAMPLE = Path(__file__).parent.parent / "examples" / "review-branch"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not BASE, reason="EVOLVE_LIVE_API_BASE is not set: no model server"),
]
runner = CliRunner()


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", os.environ.get("OPENAI_API_KEY") or "local")


def window_args() -> list[str]:
    return ["--context-window", WINDOW] if WINDOW else []


def run(exp: Path, ws: Path, *extra: str):
    args = ["run", str(exp), "--model", MODEL, "--api-base", BASE, "--workspace", str(ws)]
    return runner.invoke(app, [*args, *window_args(), "--json", *extra])


def log(ws: Path) -> list[dict]:
    (path,) = (ws / "runs").glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_agent_node_with_a_schema(tmp_path):
    node = {
        "id": "classify",
        "kind": "agent",
        "prompt": "p.md",
        "reads": ["text"],
        "writes": ["sentiment"],
        "max_tokens": 40,
        "timeout_ms": 600_000,
        "schema": {
            "type": "object",
            "required": ["sentiment"],
            "properties": {"sentiment": {"enum": ["positive", "negative"]}},
        },
    }
    state = {
        "text": {"type": "string", "default": "I love this library, it works perfectly."},
        "sentiment": {"type": "string"},
    }
    exp = build(
        tmp_path / "x",
        spec([node], state=state),
        {"p.md": "Is the sentiment of this text positive or negative?\n\n{{ text }}\n"},
    )
    result = run(exp, tmp_path / "ws")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "success"
    calls = [e for e in log(tmp_path / "ws") if e["type"] == "llm.call"]
    assert calls and all(c.get("mode") in ("json_schema", "json_object", "prompt") for c in calls)
    # the request format never caused a repair: no reply was the schema itself
    echoes = [
        e
        for e in log(tmp_path / "ws")
        if e["type"] == "schema.invalid" and "JSON Schema itself" in e["errors"][0]
    ]
    assert echoes == []


def test_a_text_node(tmp_path):
    node = {
        "id": "name",
        "kind": "agent",
        "prompt": "p.md",
        "writes": ["answer"],
        "max_tokens": 20,
        "timeout_ms": 600_000,
    }
    exp = build(
        tmp_path / "x",
        spec([node], state={"answer": {"type": "string"}}),
        {"p.md": "Name one primary colour. Answer with one word.\n"},
    )
    result = run(exp, tmp_path / "ws")
    assert result.exit_code == 0, result.output
    (call,) = [e for e in log(tmp_path / "ws") if e["type"] == "llm.call"]
    assert "mode" not in call and call["tokens_out"] > 0
    assert "cost_usd" not in call  # no price for a local model: null, never $0


def test_the_advisor_on_a_small_planted_flaw(tmp_path):
    """The worked example's planted flaw (no security dimension), its run replayed offline; only
    the advisor is live. It must make a valid proposal or say why not, within the window."""
    exp = tmp_path / "review-branch"
    shutil.copytree(EXAMPLE, exp)
    ws = tmp_path / "ws"
    replayed = runner.invoke(app, ["run", str(exp), "--offline", "--workspace", str(ws)])
    assert replayed.exit_code == 0, replayed.output
    args = ["propose", "last", "--model", MODEL, "--api-base", BASE, "--workspace", str(ws)]
    result = runner.invoke(app, [*args, *window_args(), "--json"])
    report = json.loads(result.stdout)
    llm_made = [p for p in report["proposals"] if p["source"] == "llm"]
    calls = report["llm_calls"]
    assert calls, "the advisor made no model call"
    if report["llm_failure"]:
        assert result.exit_code == (0 if report["proposals"] else 1)
        assert "the model advisor failed: " in result.stderr and "fix: " in result.stderr
    else:
        assert result.exit_code == 0
        assert llm_made or report["rejected"] == []  # proposals, or "nothing to change"
    window = int(WINDOW) if WINDOW else None
    for call in calls:
        assert call.get("error_type") != "context_overflow", call.get("error")
        if window and call.get("tokens_in"):
            assert call["tokens_in"] + (call.get("tokens_out") or 0) <= window


def test_evolve_new(tmp_path):
    target = tmp_path / "drafted"
    args = ["new", "count the words of a text file", "--dir", str(target), "--model", MODEL]
    result = runner.invoke(app, [*args, "--api-base", BASE, "--max-rounds", "1", "--json"])
    assert result.exit_code in (0, 1), result.output  # 1: a draft that does not validate, kept
    assert "Traceback" not in result.output
    if not result.stdout.strip():  # the model's reply was unusable: said on stderr, as any error
        assert result.exit_code == 1
        assert any(line.startswith("error: ") for line in result.stderr.splitlines()), result.stderr
        return
    printed = json.loads(result.stdout)
    assert (target / "experience.yaml").is_file() or printed.get("error")
