"""Live progress and the run view agree on how nodes ended: a for_each item failing under
fail_run fails its node everywhere; the progress table counts items against the real total,
never shows a running node as skipped, has timeouts and failed-items columns, and stays on
screen with the outcome; ✓/✗ lines print on a terminal as they do when piped."""

from __future__ import annotations

import io
import json

from rich.console import Console
from typer.testing import CliRunner

from evolve.cli import app
from evolve.report.html import render_html
from evolve.report.progress import Progress
from evolve.store.queries import inspect_run
from evolve.store.workspace import Workspace
from helpers import build, events, run, spec, tool

runner = CliRunner()

ITEMS = """
import time

def run(inputs):
    time.sleep(0.01)
    if inputs["$item"] in inputs.get("bad", []):
        raise ValueError("bad item")
    if inputs["$item"] in inputs.get("slow", []):
        time.sleep(60)  # runs on past its deadline in a daemon thread
    return {}
"""


def fan_out(tmp_path, *, bad=(), slow=(), policy="fail_run", concurrency=1, timeout_ms=None):
    node = tool(
        "fan",
        "tools/t.py",
        args={"bad": list(bad), "slow": list(slow)},
        for_each={"source": "$.items", "concurrency": concurrency},
        on_error={"policy": policy},
    )
    if timeout_ms:
        node["timeout_ms"] = timeout_ms
    first = tool("first", "tools/ok.py")
    document = spec(
        [first, node],
        [{"from": "first", "to": "fan"}],
        state={"items": {"type": "array", "default": list(range(6))}},
    )
    files = {"tools/t.py": ITEMS, "tools/ok.py": "def run(inputs):\n    return {}\n"}
    return build(tmp_path / "x", document, files)


def text(renderable) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_a_for_each_item_failing_under_fail_run_fails_its_node_everywhere(tmp_path):
    shown = io.StringIO()
    experience = fan_out(tmp_path, bad=[2])
    result = run(experience, tmp_path / "ws", listeners=[Progress(stream=shown)])
    assert result.status == "failed"

    report = inspect_run(Workspace(tmp_path / "ws"), result.run_id)
    assert report.view.nodes["fan"].status == "failed"
    workspace = ["--workspace", str(tmp_path / "ws")]
    inspected = runner.invoke(app, ["inspect", "last", "--json", *workspace])
    nodes = {n["id"]: n["status"] for n in json.loads(inspected.stdout)["nodes"]}
    assert nodes == {"first": "succeeded", "fan": "failed"}
    listed = runner.invoke(app, ["runs", "--json", *workspace])
    assert json.loads(listed.stdout)[0]["nodes_failed"] == 1
    page = render_html(report)
    assert 'data-card="failed"><span class="card-value">1<' in page
    assert any(line.startswith("✗ fan") for line in shown.getvalue().splitlines())


def test_the_item_total_is_the_for_each_length_from_the_start(tmp_path):
    progress = Progress(stream=io.StringIO())
    seen: list[str] = []

    def look(event):
        if event["type"] == "node.finished" and event.get("item") == 0:
            seen.append(text(progress.table()))

    run(fan_out(tmp_path), tmp_path / "ws", listeners=[progress, look])
    row = next(line for line in seen[0].splitlines() if line.startswith("fan"))
    assert "1/6" in row.split()


def test_a_node_whose_item_failed_under_skip_is_running_not_skipped(tmp_path):
    progress = Progress(stream=io.StringIO())
    seen: list[str] = []

    def look(event):
        if event["type"] == "node.started" and event.get("item") == 3:
            seen.append(text(progress.table()))

    run(fan_out(tmp_path, bad=[0], policy="skip"), tmp_path / "ws", listeners=[progress, look])
    row = next(line for line in seen[0].splitlines() if line.startswith("fan")).split()
    assert row[:3] == ["fan", "running", "3/6"]
    assert row[-1] == "1"  # the failed-items column


def test_the_table_has_timeouts_and_failed_items(tmp_path):
    progress = Progress(stream=io.StringIO())
    experience = fan_out(tmp_path, bad=[1], slow=[4], policy="skip", concurrency=6, timeout_ms=2000)
    run(experience, tmp_path / "ws", listeners=[progress])
    table = text(progress.table()).splitlines()
    header = next(line for line in table if line.startswith("node")).split()
    assert header == ["node", "status", "items", "retries", "timeouts", "failed", "items"]
    assert next(line for line in table if line.startswith("fan")).split() == [
        "fan",
        "done",
        "6/6",
        "1",
        "2",
    ]


def test_on_a_terminal_the_lines_print_and_the_final_table_stays_with_the_reason(tmp_path):
    shown = io.StringIO()
    experience = fan_out(tmp_path, bad=[1], policy="skip")
    with Progress(stream=shown, plain=False) as progress:
        result = run(experience, tmp_path / "ws", listeners=[progress])
    assert result.status == "partial"
    out = shown.getvalue()
    assert "✓ first (" in out and "✗ fan item 1: failed (on_error skip)" in out
    assert "partial · " in out
    assert "reason: failed under on_error: skip: fan item 1" in out
    assert out.rindex("fan item 1") < out.rindex("done")  # the table comes last and stays


def test_python_tools_report_activity_from_a_coroutine_or_a_thread(tmp_path):
    tools = {
        "tools/a.py": "async def run(i):\n    i['_activity']('fetching')\n    return {}\n",
        "tools/s.py": "def run(i):\n    i['_activity']('parsing ' * 40)\n    return {}\n",
    }
    experience = build(
        tmp_path / "x",
        spec([tool("a", "tools/a.py"), tool("s", "tools/s.py")], [{"from": "a", "to": "s"}]),
        tools,
    )
    progress = Progress(stream=io.StringIO())
    result = run(experience, tmp_path / "ws", listeners=[progress])
    said = [(e["node_id"], e["attempt"], e["activity"]) for e in events(result, "node.activity")]
    assert said == [("a", 1, "fetching"), ("s", 1, ("parsing " * 40)[:200])]
    row = next(line for line in text(progress.table()).splitlines() if line.startswith("a "))
    assert row.split()[-1] == "fetching"
