"""A newcomer's first hour: a closed pipe ends quietly, a model that cannot answer says so with
the fix, ideas held back are counted, and --offline without cassettes is refused up front."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from helpers import build, spec, tool

runner = CliRunner()
ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "review-branch"


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly_like_unix_tools(tmp_path):
    ws = tmp_path / "ws"
    for _ in range(2):
        ran = runner.invoke(
            app, ["run", str(ROOT / "examples" / "starter"), "--workspace", str(ws)]
        )
        assert ran.exit_code == 0, ran.output
    # the reader is gone before evolve writes its first line
    script = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'evolve', *sys.argv[1:]],"
        " stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
        "p.stdout.close()\n"
        "err = p.stderr.read(); code = p.wait()\n"
        "sys.stdout.write(f'{code}\\n{err.decode()}')\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for args in (["schema"], ["runs", "--workspace", str(ws)]):
        done = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env
        )
        code, _, err = done.stdout.partition("\n")
        assert err == "", err  # no "error: Broken pipe", no "Exception ignored"
        assert code == "141", code  # as a Unix tool killed by SIGPIPE


@pytest.fixture
def ran(tmp_path):
    exp = tmp_path / "review-branch"
    shutil.copytree(EXAMPLE, exp)
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["run", str(exp), "--offline", "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    return ws, exp


def test_a_model_without_a_key_says_so_with_the_fixes(ran, monkeypatch):
    ws, _ = ran
    for name in ("OPENAI_API_KEY", "EVOLVE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(
        app,
        [
            "propose",
            "last",
            "--workspace",
            str(ws),
            "--model",
            "openai/gpt-4o-mini",
            "--api-base",
            "http://127.0.0.1:9/v1",
            "--timeout",
            "5",
        ],
    )
    assert result.exit_code == 1
    assert "error: the model advisor failed: openai/gpt-4o-mini" in result.stderr
    assert "fix: " in result.stderr
    assert "--no-llm" in result.stderr and "--offline" in result.stderr


def test_propose_help_states_the_model_order_the_code_uses():
    result = runner.invoke(app, ["propose", "--help"])
    text = " ".join(result.stdout.split())
    assert "default: runtime.model, then EVOLVE_MODEL" in text


SLEEP = "import time\ndef run(i):\n    time.sleep(0.3)\n    return {'state_delta': {}}\n"


def test_ideas_held_back_are_counted_on_stderr(tmp_path):
    exp = build(
        tmp_path / "x",
        spec(
            [tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})], name="x"
        ),
        {"tools/slow.py": SLEEP},
    )
    ws = str(tmp_path / "ws")
    subprocess.run(["git", "init", "-q", str(exp)], check=True)
    runner.invoke(app, ["run", str(exp), "--workspace", ws])  # partial: the slow tool timed out
    first = runner.invoke(app, ["propose", "last", "--no-llm", "--workspace", ws])
    assert first.exit_code == 0, first.output
    assert "held back" not in first.stderr
    runner.invoke(app, ["run", str(exp), "--workspace", ws])  # again, without applying it
    held = runner.invoke(app, ["propose", "last", "--no-llm", "--workspace", ws])
    assert "note: 1 earlier proposal held back (1 rejected (ran again without it))" in held.stderr


AGENT = spec(
    [
        {
            "id": "a",
            "kind": "agent",
            "prompt": "prompts/a.md",
            "model": "openai/x",
            "writes": ["out"],
        }
    ],
    state={"out": {"type": "string"}},
)


def test_offline_without_cassettes_is_refused_before_the_run(tmp_path):
    exp = build(tmp_path / "e", AGENT, {"prompts/a.md": "Say hi.\n"})
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["run", str(exp), "--offline", "--workspace", str(ws)])
    assert result.exit_code == 2, result.output
    assert "holds no *.jsonl cassette" in result.stderr
    assert "--record" in result.stderr and "without --offline" in result.stderr
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())  # nothing started


def test_offline_on_a_tool_only_experience_still_runs(tmp_path):
    exp = build(tmp_path / "e", spec([tool("t", "tools/t.py")]), {"tools/t.py": SLEEP})
    result = runner.invoke(app, ["run", str(exp), "--offline", "--workspace", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
