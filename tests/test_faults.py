"""Faults inside a run: outputs that are not JSON, tools that block the event loop or leave a
child holding their stdout. Each fails (or succeeds) its own attempt, never the whole run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from helpers import build, events, run, spec, tool

runner = CliRunner()


def strict(text: str) -> object:
    """Parse as RFC 8259 JSON: Python's json accepts NaN and Infinity, JSON does not."""

    def refuse(name: str) -> object:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


NOT_JSON_TOOLS = {
    "tools/tuple_key.py": "def run(i):\n    return {'state_delta': {'a': {(1, 2): 3}}}\n",
    "tools/nan.py": "def run(i):\n    return {'state_delta': {'n': float('nan')}}\n",
    "tools/inf.py": "def run(i):\n    return {'edge_output': [1, float('-inf')]}\n",
    "tools/metrics.py": "def run(i):\n    return {'metrics': {'score': float('inf')}}\n",
    "tools/deep.py": (
        "def run(i):\n    x = {}\n    for _ in range(5000):\n        x = {'k': x}\n"
        "    return {'state_delta': {'a': x}}\n"
    ),
    "tools/nan.sh": '#!/bin/sh\necho \'{"state_delta": {"n": NaN}}\'\n',
}


def test_an_output_that_is_not_json_fails_that_attempt_under_its_policy(tmp_path):
    skip = {"on_error": {"policy": "skip"}}
    nodes = [
        tool("tuple_key", "tools/tuple_key.py", writes=["a"], **skip),
        tool("nan", "tools/nan.py", writes=["n"], **skip),
        tool("inf", "tools/inf.py", **skip),
        tool("metrics", "tools/metrics.py", **skip),
        tool("deep", "tools/deep.py", writes=["a"], **skip),
        tool("nan_sh", "tools/nan.sh", writes=["n"], **skip),
        tool("fine", "tools/fine.py", writes=["n"]),
    ]
    state = {"a": {"type": "object"}, "n": {"type": "number"}}
    files = {
        **NOT_JSON_TOOLS,
        "tools/fine.py": "def run(i):\n    return {'state_delta': {'n': 1.5}}\n",
    }
    exp = build(tmp_path / "x", spec(nodes, state=state), files)
    result = run(exp, tmp_path / "ws")
    assert result.status == "partial", result.reason  # the run went on past every bad output
    failed = {e["node_id"]: (e["error_type"], e["error"]) for e in events(result, "node.failed")}
    prefix = "returned a value that is not JSON: output."
    deep = "output.state_delta.a" + ".k" * 200
    assert failed == {
        "tuple_key": (
            "bad_output",
            f"node 'tuple_key' {prefix}state_delta.a has the key (1, 2) (tuple); "
            "JSON object keys are strings",
        ),
        "nan": (
            "bad_output",
            f"node 'nan' {prefix}state_delta.n is NaN, which is not a JSON number",
        ),
        "inf": (
            "bad_output",
            f"node 'inf' {prefix}edge_output[1] is -Infinity, which is not a JSON number",
        ),
        "metrics": (
            "bad_output",
            f"node 'metrics' {prefix}metrics.score is Infinity, which is not a JSON number",
        ),
        "deep": (
            "bad_output",
            f"node 'deep' returned a value that is not JSON: {deep[:77]}... nests deeper than "
            "200 levels",
        ),
        "nan_sh": (
            "bad_output",
            'nan.sh printed output that is not JSON: \'{"state_delta": {"n": NaN}}\'',
        ),
    }
    assert result.state == {"n": 1.5}
    # the log, the store and `state --json` hold strict JSON only
    for line in result.log_path.read_text().splitlines():
        strict(line)
    db = sqlite3.connect(tmp_path / "ws" / "state.sqlite")
    for table, column in [("state_snapshot", "value"), ("node_runs", "metrics")]:
        for (text,) in db.execute(f"select {column} from {table} where {column} is not null"):
            strict(text)
    shown = runner.invoke(app, ["state", "last", "--json", "--workspace", str(tmp_path / "ws")])
    assert shown.exit_code == 0, shown.output
    assert strict(shown.stdout) == {"n": 1.5}


def test_not_json_under_retry_is_retried_then_the_policy_decides(tmp_path):
    node = tool(
        "nan",
        "tools/nan.py",
        writes=["n"],
        on_error={"policy": "retry", "attempts": 2, "base_ms": 1, "then": "fail_run"},
    )
    exp = build(tmp_path / "x", spec([node], state={"n": {"type": "number"}}), NOT_JSON_TOOLS)
    result = run(exp, tmp_path / "ws")
    assert result.status == "failed"
    assert [e["error_type"] for e in events(result, "node.failed")] == ["bad_output"] * 2
    assert result.reason.startswith("node 'nan' failed after 2 attempts: node 'nan' returned")


def test_nan_cannot_enter_through_set_or_a_declared_default(tmp_path):
    exp = build(
        tmp_path / "x",
        spec([tool("t", "tools/t.py")], state={"n": {"type": "number"}}),
        {"tools/t.py": "def run(i):\n    return {}\n"},
    )
    given = runner.invoke(
        app, ["run", str(exp), "--set", "n=NaN", "--workspace", str(tmp_path / "ws")]
    )
    assert given.exit_code == 2
    assert given.stderr == (
        "error: --args/--set value for 'n' is invalid: 'n' is NaN, which is not a JSON number\n"
    )
    bad_default = build(
        tmp_path / "y",
        "name: t\nversion: 0.1.0\nstate:\n  schema:\n    n: {type: number, default: .inf}\n"
        "graph:\n  nodes:\n    - {id: t, kind: tool, impl: tools/t.py}\n",
        {"tools/t.py": "def run(i):\n    return {}\n"},
    )
    checked = runner.invoke(app, ["validate", str(bad_default)])
    assert checked.exit_code == 2
    assert (
        "experience.yaml:5:32: state field 'n': the default is Infinity, which is not a JSON "
        "number [$.state.schema.n.default]"
    ) in checked.stdout


BLOCKING_ASYNC = "import time\n\nasync def run(inputs):\n    time.sleep(3)\n    return {}\n"
CANCELLED_ASYNC = """
import asyncio
from pathlib import Path

async def run(inputs):
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        Path(inputs["marker"]).write_text("cancelled")
        raise
"""


def test_an_async_tool_that_blocks_the_loop_still_fails_at_its_deadline(tmp_path):
    nodes = [
        tool("blocks", "tools/blocks.py", timeout_ms=300, on_error={"policy": "skip"}),
        tool("quick", "tools/quick.py", writes=["n"]),
    ]
    exp = build(
        tmp_path / "x",
        spec(nodes, state={"n": {"type": "integer"}}),
        {
            "tools/blocks.py": BLOCKING_ASYNC,
            "tools/quick.py": "def run(i):\n    return {'state_delta': {'n': 1}}\n",
        },
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "partial"
    assert [e["timeout_ms"] for e in events(result, "node.timeout")] == [300]
    assert [(e["node_id"], e["error_type"]) for e in events(result, "node.failed")] == [
        ("blocks", "timeout")
    ]
    assert result.state == {"n": 1}  # the other node ran while the tool blocked
    seqs = {(e["type"], e["node_id"]): e["seq"] for e in events(result) if "node_id" in e}
    assert seqs[("node.finished", "quick")] < seqs[("node.timeout", "blocks")]


def test_an_async_tool_past_its_deadline_is_cancelled(tmp_path):
    marker = tmp_path / "marker"
    node = tool(
        "waits",
        "tools/w.py",
        args={"marker": str(marker)},
        timeout_ms=100,
        on_error={"policy": "skip"},
    )
    exp = build(tmp_path / "x", spec([node]), {"tools/w.py": CANCELLED_ASYNC})
    result = run(exp, tmp_path / "ws")
    assert [e["error_type"] for e in events(result, "node.failed")] == ["timeout"]
    for _ in range(200):  # the cancellation reaches the tool's own loop soon after
        if marker.exists():
            break
        time.sleep(0.01)
    assert marker.read_text() == "cancelled"


def test_a_tool_that_exits_while_its_background_child_holds_stdout_succeeds(tmp_path):
    script = (
        '#!/bin/sh\ncat > /dev/null\nsleep 5 &\necho \'{"state_delta": {"t": "done"}}\'\nexit 0\n'
    )
    node = tool("bg", "tools/bg.sh", writes=["t"], timeout_ms=2000, on_error={"policy": "skip"})
    exp = build(
        tmp_path / "x", spec([node], state={"t": {"type": "string"}}), {"tools/bg.sh": script}
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "success", result.reason
    assert result.state == {"t": "done"}
    assert events(result, "node.timeout") == []


FIRST_CALL = """
import json, sys
sys.path.insert(0, sys.argv[1])
from loopback import LoopbackServer
from evolve.runtime.run import RunOptions, start_run
from pathlib import Path
from evolve.store.workspace import Workspace

loaded_at_start = []

def listen(event):
    if event["type"] == "node.started":
        loaded_at_start.append("litellm" in sys.modules)

with LoopbackServer([{"text": "hello"}]) as server:
    options = RunOptions(model="openai/m", api_base=server.base, listeners=[listen])
    result = start_run(sys.argv[2], Workspace(Path(sys.argv[3])), options)
print(json.dumps({"status": result.status, "loaded_at_start": loaded_at_start}))
"""


@pytest.mark.slow
def test_the_first_agent_attempt_does_not_pay_the_model_import(tmp_path):
    node = {"id": "say", "kind": "agent", "prompt": "p.md", "writes": ["t"], "timeout_ms": 3000}
    exp = build(tmp_path / "x", spec([node], state={"t": {"type": "string"}}), {"p.md": "Hi"})
    env = {**os.environ, "OPENAI_API_KEY": "sk-not-a-real-key"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FIRST_CALL,
            str(Path(__file__).parent),
            str(exp),
            str(tmp_path / "ws"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # a fresh interpreter: litellm was imported before the attempt's clock started
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "status": "success",
        "loaded_at_start": [True],
    }


def test_a_dataset_holding_nan_fails_its_attempt_not_the_log(tmp_path):
    node = {
        "id": "rows",
        "kind": "dataset",
        "source": {"type": "file", "uri": "data/rows.json"},
        "writes": ["rows"],
        "on_error": {"policy": "skip"},
    }
    exp = build(
        tmp_path / "x",
        spec([node], state={"rows": {"type": "array"}}),
        {"data/rows.json": '[{"score": 1.5}, {"score": NaN}]'},
    )
    result = run(exp, tmp_path / "ws")
    assert [(e["error_type"], e["error"]) for e in events(result, "node.failed")] == [
        (
            "bad_output",
            "node 'rows' returned a value that is not JSON: output.edge_output[1].score is "
            "NaN, which is not a JSON number",
        )
    ]
    for line in result.log_path.read_text().splitlines():
        strict(line)
