"""`evolve runs`, `evolve inspect` and `evolve state`: exact output, ids and times normalised."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from helpers import build, run, spec, tool

runner = CliRunner()

FLAKY = """
from pathlib import Path

def run(inputs):
    counter = Path(inputs["counter"])
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n == 1:
        raise ConnectionError("reset by peer")
    return {"state_delta": {"greeting": "hello <world>"}}
"""
SLOW = "import asyncio\n\nasync def run(inputs):\n    await asyncio.sleep(5)\n"
FANOUT = "def run(i):\n    return {'state_delta': {'seen': [i['$item'] * 10]}}\n"


def normalise(text: str) -> str:
    text = re.sub(r"r-[a-z0-9]{8}", "r-ID", text)
    text = re.sub(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+Z?)?", "TIME", text)
    text = re.sub(r"\b\d+(\.\d+)? (ms|s)\b", "N ms", text)
    text = re.sub(r"seq \d+|^\d+ ", "SEQ ", text, flags=re.M)
    # nodes finishing within a few ms of each other may rank either way on a busy machine
    text = re.sub(
        r"^slowest: (.*)$",
        lambda m: "slowest: " + ", ".join(sorted(m[1].split(", "))),
        text,
        flags=re.M,
    )
    return "\n".join(re.sub(r" +", " ", line).rstrip() for line in text.splitlines())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Three runs: a success with retries and a timeout (partial), and a failure."""
    root = tmp_path_factory.mktemp("inspect")
    nodes = [
        tool(
            "greet",
            "tools/flaky.py",
            writes=["greeting"],
            args={"counter": str(root / "count")},
            on_error={"policy": "retry", "attempts": 2, "base_ms": 5},
        ),
        tool("fan", "tools/fan.py", writes=["seen"], for_each={"source": "$.items"}),
        tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"}),
        tool("after_slow", "tools/fan.py"),
    ]
    edges = [{"from": "greet", "to": "fan"}, {"from": "slow", "to": "after_slow"}]
    state = {
        "greeting": {"type": "string"},
        "items": {"type": "array", "default": [1, 2, 3]},
        "seen": {"type": "array", "merge": "array_append", "default": []},
    }
    exp = build(
        root / "mixed",
        spec(nodes, edges, state=state, name="mixed"),
        {"tools/flaky.py": FLAKY, "tools/fan.py": FANOUT, "tools/slow.py": SLOW},
    )
    exp_doc = spec([tool("boom", "tools/boom.py")])
    exp_doc["name"] = "boom"
    boom = build(
        root / "boom",
        exp_doc,
        {"tools/boom.py": "def run(i):\n    raise ValueError('bad input')\n"},
    )
    ws = root / "ws"
    mixed = run(exp, ws)
    failed = run(boom, ws)
    assert (mixed.status, failed.status) == ("partial", "failed")
    return ws


def cli(workspace, *args):
    result = runner.invoke(app, [*args, "--workspace", str(workspace)])
    return result


def test_runs_lists_newest_first(workspace):
    result = cli(workspace, "runs")
    assert result.exit_code == 0, result.output
    assert normalise(result.stdout) == "\n".join(
        [
            "run experience status started duration nodes ✓/✗/– items tokens cost",
            "r-ID boom failed TIME N ms 0/1/0 —",
            "r-ID mixed partial TIME N ms 2/1/1 3 —",
        ]
    )
    only = cli(workspace, "runs", "--experience", "mixed", "--json")
    rows = json.loads(only.stdout)
    assert [r["experience"] for r in rows] == ["mixed"]
    assert set(rows[0]) == {
        "id",
        "experience",
        "status",
        "reason",
        "started_at",
        "finished_at",
        "duration_ms",
        "nodes_succeeded",
        "nodes_failed",
        "nodes_skipped",
        "items",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "parent_run_id",
        "kind",
        "score",
        "evals_passed",
        "pass_rate",
        "cases",
        "resumed_from",
    }
    assert (rows[0]["nodes_succeeded"], rows[0]["items"]) == (2, 3)


def test_inspect_a_run_with_retries_and_a_timeout(workspace):
    mixed = json.loads(cli(workspace, "runs", "--experience", "mixed", "--json").stdout)[0]["id"]
    result = cli(workspace, "inspect", mixed[:6])
    assert result.exit_code == 0, result.output
    assert normalise(result.stdout) == "\n".join(
        [
            "run r-ID · mixed · partial · N ms · started TIME",
            "",
            "mixed",
            "├── ✓ greet tool · N ms · 1 retry",
            "│ ├── ✗ attempt 1 N ms connection: flaky.py:run raised ConnectionError: reset by peer",
            "│ └── ✓ attempt 2 N ms",
            "├── ✓ fan tool · 3 items · N ms",
            "│ ├── ✓ item 0 N ms",
            "│ ├── ✓ item 1 N ms",
            "│ └── ✓ item 2 N ms",
            "├── ✗ slow tool · N ms · failed (on_error skip): timed out after N ms",
            "│ └── ⏱ attempt 1 N ms timeout: timed out after N ms",
            "└── – after_slow tool · N ms · predecessor 'slow' failed",
            "",
            "nodes 2 ✓ 1 ✗ 1 – · retries 1 · timeouts 1 · failures 2 · tokens 0+0 · cost — · "
            "26 events",
            "slowest: fan N ms, greet N ms, slow N ms",
            "",
            "failures",
            "seq node item attempt error",
            "SEQ greet 1 connection: flaky.py:run raised ConnectionError: reset by peer",
            "SEQ slow 1 timeout: timed out after N ms",
            "",
            "state diff",
            "field before after writes",
            "greeting null hello <world> 1",
            "seen [] [10, 20, 30] 1",
        ]
    )


def test_inspect_json_shape(workspace):
    data = json.loads(cli(workspace, "inspect", "last", "--json").stdout)
    assert set(data) == {
        "run",
        "summary",
        "failures",
        "phases",
        "edges",
        "nodes",
        "state_diff",
        "evals",
    }
    assert data["evals"] == [] and data["summary"]["score"] is None
    assert data["run"]["status"] == "failed" and data["run"]["experience"] == "boom"
    assert data["summary"]["failures"] == 1
    node = data["nodes"][0]
    assert node["id"] == "boom" and node["status"] == "failed"
    assert node["attempts"][0]["error"] == "boom.py:run raised ValueError: bad input"
    assert data["failures"][0]["error_type"] == "tool_error"


def test_inspect_json_is_printed_in_pieces_that_make_the_whole(workspace):
    """`inspect --json` streams the run (a node's items one at a time); the text is exactly one
    json.dumps of the whole, for a run with a fan-out, retries, a timeout and a skipped node."""
    from evolve.store.queries import inspect_run
    from evolve.store.workspace import Workspace

    ws = Workspace(workspace)
    mixed = next(
        r for r in json.loads(cli(workspace, "runs", "--json").stdout) if r["experience"] == "mixed"
    )
    report = inspect_run(ws, mixed["id"])
    whole = json.dumps(report.to_json(), ensure_ascii=False)
    assert "".join(report.json_chunks()) == whole
    assert [i["index"] for i in json.loads(whole)["nodes"][1]["items"]] == [0, 1, 2]
    printed = cli(workspace, "inspect", mixed["id"], "--json").stdout
    assert printed == whole + "\n"


def test_inspect_a_failed_run_says_why(workspace):
    result = cli(workspace, "inspect", "last")
    text = normalise(result.stdout)
    assert text.splitlines()[:2] == [
        "run r-ID · boom · failed · N ms · started TIME",
        "reason: node 'boom' failed after 1 attempt: boom.py:run raised ValueError: bad input",
    ]
    assert "state diff\nfield before after writes\n(no field was written)" in text


def test_inspect_events_filters(workspace):
    result = cli(workspace, "inspect", "last", "--events", "--type", "node.")
    types = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert types == ["node.ready", "node.started", "node.failed"]
    only = cli(workspace, "inspect", "last", "--events", "--type", "run.finished")
    assert [json.loads(x)["status"] for x in only.stdout.splitlines()] == ["failed"]


def test_state_final_field_and_history(workspace):
    mixed = json.loads(cli(workspace, "runs", "--experience", "mixed", "--json").stdout)[0]["id"]
    assert json.loads(cli(workspace, "state", mixed, "--json").stdout) == {
        "greeting": "hello <world>",
        "items": [1, 2, 3],
        "seen": [10, 20, 30],
    }
    assert cli(workspace, "state", mixed, "greeting").stdout == "hello <world>\n"
    history = json.loads(cli(workspace, "state", mixed, "seen", "--history", "--json").stdout)
    # the fan-out's three items merge in item order as one write
    assert [(h["node"], h["item"], h["old"], h["new"]) for h in history] == [
        ("fan", None, [], [10, 20, 30])
    ]
    missing = cli(workspace, "state", mixed, "seenn")
    assert missing.exit_code == 2
    assert missing.stderr.strip() == (
        f"error: run {mixed} has no value for state field 'seenn' (never set, or not "
        "declared); did you mean 'seen'?"
    )


def test_unknown_and_ambiguous_run_ids(workspace):
    unknown = cli(workspace, "inspect", "r-zzzzzzzz")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: no run 'r-zzzzzzzz' in this workspace")
    assert cli(workspace, "inspect", "r-").stderr.startswith(
        "error: run id 'r-' is ambiguous: it matches r-"
    )


def test_empty_workspace_says_how_to_start(tmp_path):
    result = cli(tmp_path / "nothing", "runs")
    assert result.exit_code == 0
    assert "no runs yet" in result.stderr and "evolve run DIR" in result.stderr
    listed = cli(tmp_path / "nothing", "runs", "--json")
    assert (listed.exit_code, json.loads(listed.stdout)) == (0, [])
    inspected = cli(tmp_path / "nothing", "inspect", "last")
    assert inspected.exit_code == 2 and "no runs yet" in inspected.stderr


@pytest.mark.slow
def test_inspect_an_interrupted_run(tmp_path):
    exp = build(
        tmp_path / "x",
        spec([tool("slow", "tools/slow.py")], name="sleepy"),
        {"tools/slow.py": SLOW},
    )
    ws = tmp_path / "ws"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evolve", "run", str(exp), "--workspace", str(ws)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logs = list((ws / "runs").glob("*.jsonl")) if (ws / "runs").exists() else []
        if logs and b"node.started" in logs[0].read_bytes():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # killed outright: no run.finished
    proc.wait()
    result = cli(ws, "inspect", "last")
    assert normalise(result.stdout).splitlines()[:4] == [
        "run r-ID · sleepy · interrupted · N ms · started TIME",
        "reason: the process ended without finishing the run (killed or crashed)",
        "",
        "sleepy",
    ]
    assert "! attempt 1" in result.stdout
    assert normalise(cli(ws, "runs").stdout).splitlines()[1].startswith("r-ID sleepy interrupted")


@pytest.mark.slow
def test_inspect_and_runs_read_a_run_that_is_still_going(tmp_path):
    exp = build(
        tmp_path / "x",
        spec(
            [tool("quick", "tools/q.py"), tool("slow", "tools/slow.py")],
            [{"from": "quick", "to": "slow"}],
            name="going",
        ),
        {"tools/slow.py": SLOW, "tools/q.py": "def run(i):\n    return {}\n"},
    )
    ws = tmp_path / "ws"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evolve", "run", str(exp), "--workspace", str(ws)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            logs = list((ws / "runs").glob("*.jsonl")) if (ws / "runs").exists() else []
            if logs and b'"node_id": "slow", "attempt"' in logs[0].read_bytes():
                break
            time.sleep(0.02)
        shown = normalise(cli(ws, "inspect", "last").stdout).splitlines()
        assert shown[0] == "run r-ID · going · running · N ms · started TIME"
        assert "├── ✓ quick tool · N ms" in shown
        assert "└── … slow tool · —" in shown
        assert normalise(cli(ws, "runs").stdout).splitlines()[1].startswith("r-ID going running")
    finally:
        proc.kill()
        proc.wait()
