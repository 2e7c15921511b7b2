"""The Ray executor (docs/ray.md): for_each items of Python tools run as Ray tasks, and the run
records the same final state and event types as a local run, plus each attempt's worker node.

Without Ray installed only the missing-extra message is checked. With it, the tests run on a
real local Ray started here (num_cpus=2, one per module) and on a one-node cluster started with
`ray start --head` and joined by address. Each fixture stops the Ray it started, and checks with
`ps` that no Ray process it started is left. The head node is stopped by the pids of its own
processes (found by its --temp-dir), not with `ray stop`, which stops every Ray of the user on
the machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import build, events, run, spec, tool
from typer.testing import CliRunner

from evolve.cli import app
from evolve.runtime import ray_executor
from evolve.runtime.ray_executor import RayExecutor
from evolve.store.writer import StateStore

# the `ray` job of ci.yml sets EVOLVE_CI_RAY=1: there a missing Ray fails the tests, never skips
HAS_RAY = importlib.util.find_spec("ray") is not None or os.environ.get("EVOLVE_CI_RAY") == "1"
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install evolve[ray])")
runner = CliRunner()

TOOL = """\
import os
import signal
import time


def run(inputs):
    x = inputs["$item"]
    if x in inputs.get("bad", []):
        raise ValueError(f"bad item {x}")
    if x in inputs.get("dies", []):
        os._exit(3)
    if x in inputs.get("slow", []):
        time.sleep(60)
    return {"state_delta": {"ys": [x * x]}, "metrics": {"x": x}}
"""


def fan_out(root: Path, *, executor: str | None = None, **args: list[int]) -> Path:
    node = tool(
        "sq",
        "tools/sq.py",
        args=args,
        writes=["ys"],
        for_each={"source": "$.xs"},
        on_error={"policy": "skip"},
        timeout_ms=10_000,  # generous: a loaded machine starts Ray workers slowly
    )
    state = {
        "xs": {"type": "array", "default": [1, 2, 3, 4, 5, 6]},
        "ys": {"type": "array", "merge": "array_append", "default": []},
    }
    document = spec([node], state=state)
    if executor:
        document["runtime"] = {"executor": executor}
    return build(root, document, {"tools/sq.py": TOOL})


def attempts(result) -> list[dict]:
    return [e for e in events(result) if "attempt" in e and e["type"].startswith("node.")]


def test_a_missing_ray_is_one_clear_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.setattr("evolve.runtime.ray_executor._EXECUTORS", {})
    experience = fan_out(tmp_path / "x")
    workspace = tmp_path / "ws"
    out = runner.invoke(
        app, ["run", str(experience), "--executor", "ray", "--workspace", str(workspace)]
    )
    assert out.exit_code == 2, out.output
    assert "pip install 'evolve[ray]'" in out.output
    assert "Traceback" not in out.output
    assert not list(workspace.rglob("r-*.jsonl"))  # nothing was started, so nothing recorded


def test_runtime_executor_ray_in_the_yaml_needs_ray_too(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr("evolve.runtime.ray_executor._EXECUTORS", {})
    experience = fan_out(tmp_path / "x", executor="ray")
    out = runner.invoke(app, ["run", str(experience), "--workspace", str(tmp_path / "ws")])
    assert out.exit_code == 2 and "evolve[ray]" in out.output
    local = runner.invoke(
        app, ["run", str(experience), "--executor", "local", "--workspace", str(tmp_path / "ws")]
    )
    assert local.exit_code == 0, local.output  # --executor local wins: Ray is never imported
    assert "evolve[ray]" not in local.output


def test_eval_with_the_ray_executor_needs_ray_too(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr("evolve.runtime.ray_executor._EXECUTORS", {})
    experience = fan_out(tmp_path / "x")
    workspace = str(tmp_path / "ws")
    out = runner.invoke(
        app, ["eval", str(experience), "--executor", "ray=auto", "--workspace", workspace]
    )
    assert out.exit_code == 2 and "evolve[ray]" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("bad", ["remote", "local=x", "ray="])
def test_a_malformed_executor_is_a_usage_error(tmp_path, bad):
    experience = fan_out(tmp_path / "x")
    out = runner.invoke(
        app, ["run", str(experience), "--executor", bad, "--workspace", str(tmp_path)]
    )
    assert out.exit_code == 2 and "--executor" in out.output and "Traceback" not in out.output


# -- on a real Ray ---------------------------------------------------------------------------


def _ray_cli() -> list[str]:
    return [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


def _ray_processes() -> set[str]:
    """pid and command of every Ray process on the machine (read only: nothing is killed)."""
    listing = subprocess.run(
        ["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True
    ).stdout
    marks = ("raylet", "gcs_server", "ray::", "ray/_private", "ray.util.client", "dashboard")
    running = [line for line in listing.splitlines() if "<defunct>" not in line]  # zombies: gone
    return {line.strip() for line in running if any(m in line for m in marks)}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """The local Ray a run starts for itself (`--executor ray`), held at num_cpus=2 and shut
    down at the end of the module, leaving no process behind."""
    if not HAS_RAY:
        pytest.skip("Ray is not installed")
    before = _ray_processes()
    executor = RayExecutor(None, num_cpus=2)
    saved = dict(ray_executor._EXECUTORS)
    ray_executor._EXECUTORS.clear()
    ray_executor._EXECUTORS[None] = executor
    try:
        yield
    finally:
        executor.shutdown()
        ray_executor._EXECUTORS.clear()
        ray_executor._EXECUTORS.update(saved)
        _settled(before)


def _settled(before: set[str]) -> None:
    """Ray's processes exit a moment after it stops: wait for them, then none may be left."""
    left = _ray_processes() - before
    for _ in range(60):
        if not left:
            break
        time.sleep(0.5)
        left = _ray_processes() - before
    assert not left, f"Ray processes left running: {sorted(left)}"


def _compare_with_local(tmp_path: Path, executor: str) -> None:
    local = run(fan_out(tmp_path / "a", bad=[4]), tmp_path / "wa")
    remote = run(fan_out(tmp_path / "b", bad=[4]), tmp_path / "wb", executor=executor)
    failures = [(e.get("item"), e["error_type"], e["error"]) for e in events(remote, "node.failed")]
    assert local.status == remote.status == "partial", failures
    assert remote.state == local.state, failures
    assert remote.state["ys"] == [1, 4, 9, 25, 36]
    assert [e["type"] for e in events(remote)] != []
    assert sorted({e["type"] for e in events(remote)}) == sorted({e["type"] for e in events(local)})
    workers = {e.get("worker") for e in attempts(remote) if e["type"] != "node.started"}
    assert None not in workers and len(workers) == 1  # one Ray node, named on every attempt end
    assert all("worker" not in e for e in events(local))
    failed = [e for e in events(remote, "node.failed") if "attempt" in e]
    assert [(f["item"], f["error"]) for f in failed] == [
        (f["item"], f["error"]) for f in events(local, "node.failed") if "attempt" in f
    ]
    assert "ValueError: bad item 4" in failed[0]["error"]


@needs_ray
@pytest.mark.slow
def test_a_run_on_local_ray_matches_the_local_executor(tmp_path, local_ray):
    _compare_with_local(tmp_path, "ray")


@needs_ray
@pytest.mark.slow
def test_a_timeout_cancels_the_task_and_a_dying_worker_fails_its_attempt_only(tmp_path, local_ray):
    experience = fan_out(tmp_path / "x", slow=[2], dies=[5])
    result = run(experience, tmp_path / "ws", executor="ray")
    assert result.status == "partial"
    failures = [(e.get("item"), e["error_type"], e["error"]) for e in events(result, "node.failed")]
    assert result.state["ys"] == [1, 9, 16, 36], failures
    timeouts = events(result, "node.timeout")
    assert [(t["item"], t["timeout_ms"]) for t in timeouts] == [(1, 10_000)]
    died = [e for e in events(result, "node.failed") if e.get("error_type") == "worker_died"]
    assert [e["item"] for e in died] == [4]
    store = StateStore.open(tmp_path / "ws" / "state.sqlite")
    try:
        rows = list(store.db["node_runs"].rows_where("run_id = ?", [result.run_id]))
    finally:
        store.close()
    by_item = {(r["item"], r["attempt"]): r["status"] for r in rows}
    assert by_item[(1, 1)] == "timeout" and by_item[(4, 1)] == "failed"
    assert by_item[(0, 1)] == by_item[(5, 1)] == "succeeded"


def _started_under(temp_dir: str) -> list[int]:
    """The processes of the Ray whose --temp-dir is `temp_dir`, and their children."""
    listing = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,args"], capture_output=True, text=True)
    rows = [line.split(None, 2) for line in listing.stdout.splitlines()[1:]]
    rows = [
        (int(pid), int(ppid), args)
        for pid, ppid, *rest in rows
        for args in [rest[0] if rest else ""]
    ]
    ours = {pid for pid, _, args in rows if temp_dir in args and "ps -eo" not in args}
    grew = True
    while grew:
        children = {pid for pid, ppid, _ in rows if ppid in ours} - ours
        ours |= children
        grew = bool(children)
    return sorted(ours)


def _stop(temp_dir: str) -> None:
    """Stop the head node started under `temp_dir`: its own processes, by pid. (`ray stop`
    would stop every Ray of this user on the machine, other people's included.)"""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _started_under(temp_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in range(40):
            if not _started_under(temp_dir):
                return
            time.sleep(0.5)


@pytest.fixture(scope="module")
def head_node(local_ray) -> Iterator[str]:
    """A one-node cluster from `ray start --head`, stopped at the end with nothing left."""
    before = _ray_processes()
    temp_dir = tempfile.mkdtemp(prefix="evhead")
    port = "6391"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [*_ray_cli(), "start", "--head", "--num-cpus=2", f"--port={port}"]
    start += ["--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    try:
        subprocess.run(start, check=True, capture_output=True, env=env, timeout=180)
        executor = RayExecutor(f"127.0.0.1:{port}")
        ray_executor._EXECUTORS[executor.address] = executor
        yield executor.address
    finally:
        ray_executor._EXECUTORS.pop(f"127.0.0.1:{port}", RayExecutor(None)).shutdown()
        _stop(temp_dir)
        assert _started_under(temp_dir) == []
        _settled(before)


@needs_ray
@pytest.mark.slow
def test_a_run_joined_to_a_head_node_by_address_matches_the_local_executor(tmp_path, head_node):
    _compare_with_local(tmp_path, f"ray={head_node}")
    out = runner.invoke(
        app,
        ["run", str(fan_out(tmp_path / "c")), "--executor", f"ray={head_node}", "--json"],
        env={"EVOLVE_WORKSPACE": str(tmp_path / "wc")},
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["status"] == "success"


@needs_ray
@pytest.mark.slow
def test_ctrl_c_cancels_the_outstanding_tasks_and_the_run_ends_interrupted(tmp_path, head_node):
    experience = fan_out(tmp_path / "x", slow=[1, 2, 3, 4, 5, 6])
    workspace = tmp_path / "ws"
    command = [sys.executable, "-m", "evolve", "run", str(experience)]
    command += ["--executor", f"ray={head_node}", "--workspace", str(workspace)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until every item's attempt has started (or the command ended)
            logs = list(workspace.glob("runs/r-*.jsonl"))
            text = logs[0].read_text("utf-8") if logs else ""
            if text.count('"node.started"') == 6 or proc.poll() is not None:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    finished = [json.loads(line) for line in text.splitlines() if '"run.finished"' in line]
    assert finished == []  # read before the interrupt: no item had ended
    log = [json.loads(line) for line in logs[0].read_text("utf-8").splitlines()]
    assert log[-1]["type"] == "run.finished" and log[-1]["status"] == "interrupted"
    assert not [e for e in log if e["type"] == "node.finished" and "attempt" in e]
