"""`evolve run` from the command line: arguments, output, exit codes."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from evolve.cli import app
from helpers import build, spec, tool

runner = CliRunner()

ECHO = (
    "def run(i):\n"
    "    return {'state_delta': {'out': f\"{i['_state']['name']} x{i['_state']['n']}\"}}\n"
)


def experience(tmp_path):
    return build(
        tmp_path / "x",
        spec(
            [tool("echo", "tools/e.py", reads=["name", "n"], writes=["out"])],
            state={
                "name": {"type": "string", "default": "world"},
                "n": {"type": "integer", "default": 1},
                "out": {"type": "string"},
            },
        ),
        {"tools/e.py": ECHO},
    )


def invoke(tmp_path, *args):
    return runner.invoke(
        app, ["run", str(experience(tmp_path)), "--workspace", str(tmp_path / "ws"), *args]
    )


def test_run_prints_a_summary_and_exits_0(tmp_path):
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    lines = re.sub(r"r-[a-z0-9]{8}", "r-ID", result.stdout)
    lines = re.sub(r"in \d+\.\d\ds", "in N.NNs", lines)
    assert lines.splitlines()[-2:] == [
        "success: run r-ID of t in N.NNs",
        f"  log: {tmp_path / 'ws' / 'runs' / 'r-ID.jsonl'}",
    ]
    assert "✓ echo" in result.stderr


def test_args_and_set_reach_the_initial_state(tmp_path):
    result = invoke(tmp_path, "--args", '{"name": "evolve"}', "--set", "n=3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "success"
    from evolve.store.queries import RunQueries
    from evolve.store.writer import StateStore

    store = StateStore.open(tmp_path / "ws" / "state.sqlite")
    assert RunQueries(store).final_state(summary["run_id"])["out"] == "evolve x3"
    store.close()


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    for args, message in [
        (
            ["--args", "{nope"],
            "error: --args is not valid JSON: Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (["--args", "[1]"], 'error: --args must be a JSON object, such as \'{"topic": "x"}\''),
        (["--set", "novalue"], "error: --set expects field=value, got 'novalue'"),
        (
            ["--set", "nme=x"],
            "error: --args/--set names unknown state field 'nme'; did you mean 'name'?",
        ),
        (
            ["--set", "n=many"],
            "error: --args/--set value for 'n' is invalid: $: 'many' is not of type 'integer'",
        ),
    ]:
        result = invoke(tmp_path, *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.strip() == message
        assert "Traceback" not in result.output


def test_invalid_experience_exits_2_before_recording_anything(tmp_path):
    root = build(
        tmp_path / "bad",
        "name: t\nversion: 0.1.0\ngraph:\n  nodes:\n"
        "    - {id: a, kind: tool, impl: tools/missing.py}\n",
    )
    result = runner.invoke(app, ["run", str(root), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(
        "experience.yaml:5:33: tool file 'tools/missing.py' does not exist [$.graph.nodes[0].impl]"
    )
    assert not (tmp_path / "ws" / "runs").exists()


def test_failed_run_exits_1_and_says_why(tmp_path):
    root = build(
        tmp_path / "x",
        spec([tool("a", "tools/a.py")]),
        {"tools/a.py": "def run(i):\n    raise KeyError('k')\n"},
    )
    result = runner.invoke(app, ["run", str(root), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1
    assert "failed: run r-" in result.stdout
    assert "reason: node 'a' failed after 1 attempt: a.py:run raised KeyError: 'k'" in result.stdout
