"""Crash safety: kills at random moments, Ctrl-C, and two runs sharing one workspace."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evolve.store.log import read_events
from evolve.store.writer import StateStore
from helpers import build, spec, tool

SLEEPY = """
import asyncio

async def run(inputs):
    await asyncio.sleep(0.02)
    return {"state_delta": {"done": [inputs["$index"]]}}
"""


def busy_experience(root: Path, name: str = "t", items: int = 80) -> Path:
    node = tool(
        "work", "tools/w.py", writes=["done"], for_each={"source": "$.items", "concurrency": 2}
    )
    after = tool("after", "tools/a.py", reads=["done"], writes=["count"])
    document = spec(
        [node, after],
        [{"from": "work", "to": "after"}],
        state={
            "items": {"type": "array", "default": list(range(items))},
            "done": {"type": "array", "merge": "array_append", "default": []},
            "count": {"type": "integer"},
        },
    )
    document["name"] = name
    return build(
        root,
        document,
        {
            "tools/w.py": SLEEPY,
            "tools/a.py": "def run(i):\n"
            "    return {'state_delta': {'count': len(i['_state']['done'])}}\n",
        },
    )


def start(experience: Path, workspace: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "evolve", "run", str(experience), "--workspace", str(workspace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_log(workspace: Path, known: set[Path], timeout: float = 20) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = set((workspace / "runs").glob("*.jsonl")) - known
        if logs:
            return logs.pop()
        time.sleep(0.005)
    raise AssertionError("the run never started its log")


def assert_log_readable(log: Path) -> list[dict]:
    lines = log.read_bytes().split(b"\n")
    complete, last = lines[:-1], lines[-1]
    for line in complete:  # every complete line is JSON; only a torn tail may not be
        json.loads(line)
    events = list(read_events(log))
    assert len(events) == len(complete)
    assert last == b"" or events == [json.loads(x) for x in complete]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    return events


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_readable_log_and_sound_database(tmp_path):
    experience = busy_experience(tmp_path / "x")
    workspace = tmp_path / "ws"
    rng = random.Random(20261122)
    known: set[Path] = set()
    killed_mid_run = 0
    for _ in range(20):
        proc = start(experience, workspace)
        log = wait_for_log(workspace, known)
        known.add(log)
        time.sleep(rng.uniform(0.0, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        events = assert_log_readable(log)
        db = sqlite3.connect(workspace / "state.sqlite")
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        db.close()
        run_id = log.stem
        store = StateStore.open(workspace / "state.sqlite")
        store.reconcile()
        row = store.run(run_id)
        store.close()
        if events and events[-1]["type"] == "run.finished":
            assert row["status"] == "success"  # the log never says more than the store holds
        elif row is not None and row["status"] == "success":
            pass  # killed after the store recorded the end, before the log's last line
        else:
            killed_mid_run += 1
            assert row is None or row["status"] == "interrupted"
    assert killed_mid_run >= 15  # the kills really landed while runs were going


@pytest.mark.slow
def test_ctrl_c_interrupts_the_run_cleanly(tmp_path):
    experience = busy_experience(tmp_path / "x", items=400)
    workspace = tmp_path / "ws"
    proc = start(experience, workspace)
    log = wait_for_log(workspace, set())
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stdout.startswith("interrupted: run r-")
    finished = [e for e in read_events(log) if e["type"] == "run.finished"]
    assert len(finished) == 1 and finished[0]["status"] == "interrupted"
    db = sqlite3.connect(workspace / "state.sqlite")
    assert db.execute("select status from runs where id = ?", [log.stem]).fetchone() == (
        "interrupted",
    )


@pytest.mark.slow
def test_two_runs_share_one_workspace_without_locking_errors(tmp_path):
    first = busy_experience(tmp_path / "one", name="one", items=150)
    second = busy_experience(tmp_path / "two", name="two", items=150)
    workspace = tmp_path / "ws"
    env = {**os.environ, "EVOLVE_WORKSPACE": str(workspace)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "evolve", "run", str(exp)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for exp in (first, second)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
        assert "locked" not in stderr
        assert stdout.startswith("success: run r-")
    db = sqlite3.connect(workspace / "state.sqlite")
    rows = db.execute("select experience, status from runs order by experience").fetchall()
    assert rows == [("one", "success"), ("two", "success")]
    counts = db.execute("select value from state_snapshot where field = 'count'").fetchall()
    assert counts == [("150",), ("150",)]  # every item of both runs was merged
