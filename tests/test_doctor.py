"""`evolve doctor`: the workspace checked against its event logs, and rebuilt from them, so a lost
or corrupted database loses no run."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from evolve.runtime.run import RunOptions, start_run
from evolve.store.workspace import Workspace
from fakes import ScriptedModel
from helpers import build, spec, tool

runner = CliRunner()

COUNT = (
    "def run(i):\n    return {'state_delta': {'n': i['_state']['n'] + 1, 'seen': [i['$item']]}}\n"
)
FLAKY = "def run(i):\n    raise ConnectionError('down')\n"


def experience(tmp_path: Path) -> Path:
    """Tools, a fan-out, a failure under skip, an agent node: every kind of row a run writes."""
    nodes = [
        tool(
            "count",
            "tools/count.py",
            reads=["n"],
            writes=["n", "seen"],
            for_each={"source": "$.items"},
        ),
        tool(
            "flaky",
            "tools/flaky.py",
            on_error={"policy": "retry", "attempts": 2, "base_ms": 1, "then": "skip"},
        ),
        {"id": "say", "kind": "agent", "prompt": "p.md", "writes": ["answer"]},
    ]
    state = {
        "n": {"type": "integer", "default": 0},
        "items": {"type": "array", "default": ["a", "b", "c"]},
        "seen": {"type": "array", "merge": "array_append", "default": []},
        "answer": {"type": "string"},
    }
    files = {"tools/count.py": COUNT, "tools/flaky.py": FLAKY, "p.md": "Say hi"}
    return build(tmp_path / "x", spec(nodes, [{"from": "count", "to": "say"}], state=state), files)


def invoke(workspace: Path, *args: str):
    return runner.invoke(app, [*args, "--workspace", str(workspace)])


def snapshot(workspace: Path) -> dict:
    """What the readers show of every run: rows, attempts, model calls, state and its history."""
    db = sqlite3.connect(workspace / "state.sqlite")
    shown = {}
    for (run_id,) in db.execute("select id from runs order by id"):
        shown[run_id] = {
            "run": db.execute(
                "select status, reason, tokens_in, tokens_out, cost_usd from runs where id = ?",
                [run_id],
            ).fetchone(),
            "node_runs": sorted(
                db.execute(
                    "select node_id, coalesce(item, -1), attempt, status, coalesce(error_type, '') "
                    "from node_runs where run_id = ?",
                    [run_id],
                ).fetchall()
            ),
            "llm_calls": db.execute(
                "select node_id, model, tokens_in, tokens_out, cost_usd from llm_calls "
                "where run_id = ?",
                [run_id],
            ).fetchall(),
            "state": json.loads(invoke(workspace, "state", run_id, "--json").stdout),
            "inspect": json.loads(invoke(workspace, "inspect", run_id, "--json").stdout),
            "history": db.execute(
                "select field, node_id, value_old, value_new from state_history where run_id = ? "
                "order by id",
                [run_id],
            ).fetchall(),
        }
    return shown


@pytest.fixture
def two_runs(tmp_path):
    exp = experience(tmp_path)
    ws = tmp_path / "ws"
    for _ in range(2):
        result = start_run(exp, Workspace(ws), RunOptions(model="fake/m"), ScriptedModel(["hi"]))
        assert result.status == "partial", result.reason
    return ws


def test_a_healthy_workspace(two_runs):
    result = invoke(two_runs, "doctor")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{two_runs}: 2 logs, 2 runs checked, healthy\n"
    checked = json.loads(invoke(two_runs, "doctor", "--json").stdout)
    assert checked == {
        "workspace": str(two_runs),
        "healthy": True,
        "logs": 2,
        "runs_checked": 2,
        "findings": [],
    }


def test_a_deleted_database_is_rebuilt_from_the_logs(two_runs):
    before = snapshot(two_runs)
    for name in os.listdir(two_runs):
        if name.startswith("state.sqlite"):
            (two_runs / name).unlink()
    found = invoke(two_runs, "doctor")
    assert found.exit_code == 1
    assert found.stdout.splitlines()[0] == (
        f"problem: database: {two_runs / 'state.sqlite'} is missing; the logs hold 2 runs"
    )
    repaired = invoke(two_runs, "doctor", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert repaired.stdout.splitlines()[-1] == f"{two_runs}: 2 logs, 2 runs checked, healthy"
    assert snapshot(two_runs) == before  # no run lost: rows, attempts, calls, state, history
    assert invoke(two_runs, "doctor").exit_code == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupted_database_is_moved_aside_and_rebuilt(two_runs, damage):
    before = snapshot(two_runs)
    database = two_runs / "state.sqlite"
    sqlite3.connect(database).execute("pragma wal_checkpoint(truncate)")
    data = database.read_bytes()
    database.write_bytes(os.urandom(8192) if damage == "garbage" else data[: len(data) // 2])
    found = invoke(two_runs, "doctor")
    assert found.exit_code == 1
    assert found.stdout.startswith(f"problem: database: the state store {database} is corrupted")
    repaired = invoke(two_runs, "doctor", "--repair")
    assert repaired.exit_code == 0, repaired.output
    aside = [p.name for p in two_runs.iterdir() if p.name.startswith("state.sqlite.broken-")]
    aside = [name for name in aside if not name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and re.fullmatch(r"state\.sqlite\.broken-\d{8}T\d{6}", aside[0])
    assert f"moved aside to {aside[0]} and rebuilt from the logs" in repaired.stdout
    assert snapshot(two_runs) == before


def test_a_run_whose_rows_disagree_with_its_log_is_found_and_rebuilt(two_runs):
    before = snapshot(two_runs)
    run_id = sorted(before)[0]
    db = sqlite3.connect(two_runs / "state.sqlite")
    db.execute("update runs set status = 'success' where id = ?", [run_id])
    db.execute("delete from node_runs where run_id = ? and node_id = 'flaky'", [run_id])
    db.execute("update state_snapshot set value = '99' where run_id = ? and field = 'n'", [run_id])
    db.commit()
    found = invoke(two_runs, "doctor")
    assert found.exit_code == 1
    assert found.stdout.splitlines() == [
        f"problem: {run_id}: the state store disagrees with its log: its status is success, the "
        "log's is partial; node_runs: 2 rows missing, 0 not in the log; state_snapshot: 1 rows "
        "missing, 1 not in the log",
        f"{two_runs}: 2 logs, 2 runs checked, 1 problem (evolve doctor --repair)",
    ]
    repaired = invoke(two_runs, "doctor", "--repair")
    assert repaired.exit_code == 0
    assert repaired.stdout.splitlines()[0].startswith(f"repaired: {run_id}: the state store")
    assert snapshot(two_runs) == before


def test_log_findings_torn_line_garbage_line_and_empty_log(two_runs):
    logs = sorted((two_runs / "runs").glob("*.jsonl"))
    with logs[0].open("a") as f:
        f.write('{"v": 1, "seq": 99, "ty')  # a kill mid-line
    lines = logs[1].read_text().splitlines()
    logs[1].write_text("\n".join([lines[0], "not json", *lines[1:]]) + "\n")
    empty = two_runs / "runs" / "r-empty000.jsonl"
    empty.write_text("")
    found = invoke(two_runs, "doctor")
    assert found.exit_code == 1
    assert sorted(found.stdout.splitlines()[:3]) == sorted(
        [
            f"note: {logs[0].name}: torn last line (its process was killed); readers skip it",
            "note: r-empty000.jsonl: empty log: a run refused before it started",
            f"problem: {logs[1].name}: lines that are not JSON events: 2",
        ]
    )
    repaired = invoke(two_runs, "doctor", "--repair")
    assert not empty.exists()
    assert repaired.exit_code == 1  # a garbled line cannot be mended: the log is never rewritten


def test_a_log_from_before_state_was_logged_is_checked_without_its_state(two_runs):
    logs = sorted((two_runs / "runs").glob("*.jsonl"))
    kept = [
        line
        for line in logs[0].read_text().splitlines()
        if json.loads(line)["type"] != "state.init"
    ]
    logs[0].write_text("\n".join(kept) + "\n")  # as an older evolve wrote it
    checked = invoke(two_runs, "doctor")
    assert checked.exit_code == 0, checked.output
    assert checked.stdout == f"{two_runs}: 2 logs, 2 runs checked, healthy\n"


def kept(workspace: Path) -> list[tuple]:
    db = sqlite3.connect(workspace / "state.sqlite")
    rows = db.execute(
        "select run_id, node_id, item, fingerprint, delta, edge_output, origin_run_id, created_at "
        "from node_results order by run_id, node_id, item"
    ).fetchall()
    db.close()
    return rows


def test_kept_results_the_store_lacks_are_found_and_restored_from_the_logs(two_runs):
    before = kept(two_runs)
    assert len(before) == 2 * 4  # per run: three items and the agent node succeeded
    db = sqlite3.connect(two_runs / "state.sqlite")
    db.execute("delete from node_results where item = 2 or item is null")
    db.commit()
    db.close()
    found = json.loads(invoke(two_runs, "doctor", "--json").stdout)
    assert not found["healthy"]
    assert (
        sorted(f["message"] for f in found["findings"])
        == [
            "2 kept results its log reports are not in the state store (resuming it would execute "
            "them again)"
        ]
        * 2
    )
    repaired = invoke(two_runs, "doctor", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert kept(two_runs) == before
    assert invoke(two_runs, "doctor").exit_code == 0


def test_a_rebuilt_database_has_the_kept_results_again(two_runs):
    before = kept(two_runs)
    for name in os.listdir(two_runs):
        if name.startswith("state.sqlite"):
            (two_runs / name).unlink()
    assert invoke(two_runs, "doctor", "--repair").exit_code == 0
    assert kept(two_runs) == before
