"""Edges found by trying evolve as a user would: each of these once misbehaved."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from typer.testing import CliRunner

from evolve.advisor.propose import propose
from evolve.cli import app
from evolve.report.progress import Progress
from evolve.store.workspace import Workspace
from helpers import build, events, run, spec, tool

runner = CliRunner()


def test_an_experience_that_runs_itself_is_refused(tmp_path):
    root = build(
        tmp_path / "rec",
        "name: rec\nversion: 0.1.0\ngraph:\n  nodes:\n"
        "    - {id: self, kind: experience, impl: .}\n",
    )
    result = runner.invoke(app, ["validate", str(root)])
    assert result.exit_code == 2
    assert "child experience '.' is this experience itself" in result.stdout


def test_nesting_stops_at_a_depth_limit(tmp_path, monkeypatch):
    # a child may not reach outside its parent, so a cycle cannot be written; the limit is a
    # safety net all the same: here two honest levels meet a limit of one
    import evolve.runtime.run as runtime_run

    monkeypatch.setattr(runtime_run, "MAX_NESTING", 1)
    build(
        tmp_path / "a",
        "name: a\nversion: 0.1.0\ngraph:\n  nodes:\n    - {id: b, kind: experience, impl: b}\n",
    )
    build(
        tmp_path / "a" / "b",
        "name: b\nversion: 0.1.0\ngraph:\n  nodes:\n    - {id: c, kind: experience, impl: c}\n",
    )
    build(
        tmp_path / "a" / "b" / "c",
        spec([tool("t", "tools/t.py")], name="c"),
        {"tools/t.py": "def run(inputs):\n    return {}\n"},
    )
    result = run(tmp_path / "a", tmp_path / "ws")
    assert result.status == "failed"
    assert "experiences nest deeper than 1 levels" in result.reason


def test_sys_exit_in_a_tool_fails_only_its_attempt(tmp_path):
    nodes = [tool("exits", "tools/e.py", on_error={"policy": "skip"}), tool("fine", "tools/f.py")]
    exp = build(
        tmp_path / "x",
        spec(nodes),
        {
            "tools/e.py": "import sys\n\ndef run(inputs):\n    sys.exit(4)\n",
            "tools/f.py": "def run(inputs):\n    return {}\n",
        },
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "partial"
    assert events(result, "node.failed")[0]["error"] == "e.py:run called sys.exit(4)"
    assert [e["node_id"] for e in events(result, "node.finished")] == ["fine"]


def test_a_tools_print_never_mixes_into_json_output(tmp_path):
    exp = build(
        tmp_path / "x",
        spec([tool("p", "tools/p.py")]),
        {"tools/p.py": "def run(inputs):\n    print('debug: hello')\n    return {}\n"},
    )
    result = runner.invoke(app, ["run", str(exp), "--json", "--workspace", str(tmp_path / "w")])
    assert json.loads(result.stdout)["status"] == "success"
    assert "debug: hello" in result.stderr


def test_a_js_tool_error_is_reported_by_its_message(tmp_path):
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    exp = build(
        tmp_path / "x",
        spec([tool("js", "tools/t.mjs", on_error={"policy": "skip"})]),
        {"tools/t.mjs": 'export default function () { throw new Error("js boom"); }\n'},
    )
    failed = events(run(exp, tmp_path / "ws"), "node.failed")[0]
    assert failed["error"] == "t.mjs exited with status 1: Error: js boom"


def test_csv_with_a_byte_order_mark_and_bad_jsonl_lines(tmp_path):
    root = tmp_path / "x"
    (root / "data").mkdir(parents=True)
    (root / "data" / "x.csv").write_bytes(b"\xef\xbb\xbfname,age\nann,3\n")
    (root / "data" / "x.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": 3}\n{oops\n')
    nodes = [
        {
            "id": "c",
            "kind": "dataset",
            "source": {"type": "file", "uri": "data/x.csv"},
            "writes": ["c"],
        },
        {
            "id": "j",
            "kind": "dataset",
            "source": {"type": "file", "uri": "data/x.jsonl"},
            "writes": ["j"],
            "on_error": {"policy": "skip"},
        },
    ]
    result = run(
        build(root, spec(nodes, state={"c": {"type": "array"}, "j": {"type": "array"}})),
        tmp_path / "ws",
    )
    assert result.state["c"] == [{"name": "ann", "age": "3"}]
    assert "data/x.jsonl failed: line 4: " in events(result, "node.failed")[0]["error"]


def test_proposals_keep_crlf_line_endings_and_apply(tmp_path):
    import subprocess

    document = spec(
        [tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})], name="x"
    )
    exp = build(
        tmp_path / "repo" / "x",
        document,
        {"tools/slow.py": "import asyncio\n\nasync def run(i):\n    await asyncio.sleep(0.15)\n"},
    )
    spec_file = exp / "experience.yaml"
    spec_file.write_bytes(spec_file.read_bytes().replace(b"\n", b"\r\n"))
    run(exp, tmp_path / "ws")
    report = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    assert report.rejected == [] and len(report.proposals) == 1
    subprocess.run(
        ["git", "apply"],
        cwd=report.apply_root,
        input=report.proposals[0].diff,
        text=True,
        check=True,
    )
    assert b"    timeout_ms: 200\r\n" in spec_file.read_bytes()


def test_file_system_errors_are_one_line_not_a_traceback(tmp_path):
    (tmp_path / "afile").write_text("")
    result = runner.invoke(app, ["init", str(tmp_path / "afile" / "sub")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output
    exp = build(
        tmp_path / "x",
        spec([tool("a", "tools/a.py")]),
        {"tools/a.py": "def run(inputs):\n    return {}\n"},
    )
    ran = runner.invoke(app, ["run", str(exp), "--workspace", str(tmp_path / "afile")])
    assert ran.exit_code == 1 and ran.stderr.startswith("error: ")


def test_progress_lines_never_show_a_secret(tmp_path, monkeypatch):
    secret = "hunter2supersecret99"
    monkeypatch.setenv("MY_SERVICE_TOKEN", secret)
    exp = build(
        tmp_path / "x",
        spec([tool("boom", "tools/b.py", on_error={"policy": "skip"})]),
        {
            "tools/b.py": "import os\n\ndef run(inputs):\n"
            "    raise RuntimeError('failed with ' + os.environ['MY_SERVICE_TOKEN'])\n"
        },
    )
    shown = io.StringIO()
    run(exp, tmp_path / "ws", listeners=[Progress(stream=shown)])
    assert "failed with [REDACTED:MY_SERVICE_TOKEN]" in shown.getvalue()
    assert secret not in shown.getvalue()


def test_a_python_file_is_not_an_experience(tmp_path):
    (tmp_path / "t.py").write_text("print(1)\n")
    result = runner.invoke(app, ["run", str(tmp_path / "t.py")])
    assert result.exit_code == 2
    assert (
        "not an experience: give the experience's directory or its experience.yaml" in result.stderr
    )


def test_a_malformed_pipeline_stage_is_reported_not_a_crash(tmp_path):
    root = build(
        tmp_path / "x",
        "name: x\nversion: 0.1.0\nstate:\n  schema:\n"
        "    items: {type: array}\n    t: {type: string}\n"
        "graph:\n  nodes:\n"
        "    - {id: a, kind: agent, prompt: p.md, writes: [t]}\n"
        "  pipelines:\n    - {id: p, items: $.items, stages: [[a]]}\n",
        {"p.md": "{{ $item }}"},
    )
    result = runner.invoke(app, ["validate", str(root)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "needs for_each on the node" in result.stdout
