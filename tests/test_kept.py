"""Kept results: carried by the success line, batched in the store, restored from the log when
a killed run's store lost its last batch (docs/resume.md, `store.kept`)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from evolve.runtime.run import RunOptions, resume_run, start_run
from evolve.store.kept import LOG_RESULT_BYTES
from evolve.store.log import read_events
from evolve.store.workspace import Workspace
from evolve.store.writer import StateStore
from fakes import EchoModel
from helpers import build, spec, tool
from test_resume import executions, experience


@pytest.fixture
def counts(tmp_path, monkeypatch):
    """Where the tools of `test_resume.experience` note each execution."""
    path = tmp_path / "counts.txt"
    path.write_text("")
    monkeypatch.setenv("EVOLVE_TEST_COUNTS", str(path))
    return path


KEPT = "select node_id, item, fingerprint, delta, edge_output, origin_run_id, created_at"


def kept_rows(database: Path, run_id: str) -> list[tuple]:
    db = sqlite3.connect(database)
    try:
        return sorted(
            db.execute(f"{KEPT} from node_results where run_id = ?", [run_id]).fetchall(),
            key=repr,
        )
    finally:
        db.close()


def successes(log: Path) -> list[dict]:
    return [e for e in read_events(log) if e["type"] == "node.finished" and "attempt" in e]


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def lose_the_last_batch(database: Path, run_id: str, keep: int) -> None:
    """What a kill leaves: the run still `running` under a process that is gone, its log without
    `run.finished`, and only its first `keep` results in the store."""
    row = StateStore.open(database).run(run_id)
    log = Path(row["log_path"])
    lines = log.read_bytes().splitlines(keepends=True)
    if b'"run.finished"' in lines[-1]:
        log.write_bytes(b"".join(lines[:-1]))
    db = sqlite3.connect(database)
    ids = [
        r[0]
        for r in db.execute("select id from node_results where run_id = ? order by id", [run_id])
    ]
    db.executemany("delete from node_results where id = ?", [(i,) for i in ids[keep:]])
    db.execute(
        "update runs set status = 'running', finished_at = null, pid = ? where id = ?",
        [dead_pid(), run_id],
    )
    db.commit()
    db.close()


def test_a_success_line_carries_the_result_its_row_keeps(tmp_path, counts):
    root = experience(tmp_path / "x")
    result = start_run(root, Workspace(tmp_path / "ws"), RunOptions(), EchoModel())
    assert result.status == "success"

    lines = successes(result.log_path)
    assert len(lines) == 3 + 3 + 1 + 1  # work and describe items, total, side
    from_log = sorted(
        (
            e["node_id"],
            e.get("item"),
            e["fingerprint"],
            e["result"]["delta"],
            e["result"].get("edge_output", e["result"]["delta"]),
        )
        for e in lines
    )
    stored = sorted(
        (node, item, fp, json.loads(delta), json.loads(edge))
        for node, item, fp, delta, edge, origin, _ in kept_rows(
            tmp_path / "ws" / "state.sqlite", result.run_id
        )
    )
    assert from_log == stored
    work = next(e for e in lines if e["node_id"] == "work" and e["item"] == 0)
    assert work["result"] == {"delta": {"done": ["A"]}}  # the edge output is the delta: once


def test_a_result_under_the_limit_travels_in_its_line_even_when_its_edge_output_is_itself(
    tmp_path,
):
    """The default edge output is the delta: the line holds it once, so only the delta's size
    counts against the limit."""
    text = "x" * (LOG_RESULT_BYTES * 3 // 4)
    exp = build(
        tmp_path / "x",
        spec([tool("mid", "tools/mid.py", writes=["t"])], state={"t": {"type": "string"}}),
        {"tools/mid.py": f"def run(inputs):\n    return {{'state_delta': {{'t': '{text}'}}}}\n"},
    )
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions())
    assert result.status == "success"
    (line,) = [e for e in successes(result.log_path) if e["node_id"] == "mid"]
    assert line["result"] == {"delta": {"t": text}}


def test_a_result_too_large_for_its_line_is_committed_before_the_line(tmp_path):
    big = "x" * (LOG_RESULT_BYTES + 10)
    exp = build(
        tmp_path / "x",
        spec(
            [tool("big", "tools/big.py", writes=["t"]), tool("small", "tools/small.py")],
            [{"from": "big", "to": "small"}],
            state={"t": {"type": "string"}},
        ),
        {
            "tools/big.py": f"def run(inputs):\n    return {{'state_delta': {{'t': '{big}'}}}}\n",
            "tools/small.py": "def run(inputs):\n    return {'edge_output': 1}\n",
        },
    )
    database = tmp_path / "ws" / "state.sqlite"
    seen: dict[str, list] = {}

    def look(event: dict) -> None:  # another connection, the moment the line is written
        if event["type"] == "node.finished" and "attempt" in event:
            db = sqlite3.connect(database)
            seen[event["node_id"]] = db.execute(
                "select fingerprint from node_results where node_id = ?", [event["node_id"]]
            ).fetchall()
            db.close()

    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions(listeners=[look]))
    assert result.status == "success"
    lines = {e["node_id"]: e for e in successes(result.log_path)}
    assert "result" not in lines["big"]
    assert seen["big"] == [(lines["big"]["fingerprint"],)]
    assert lines["small"]["result"] == {"delta": {}, "edge_output": 1}
    assert seen["small"] == []  # a small result goes with the next batch
    assert len(kept_rows(database, result.run_id)) == 2


def test_results_a_killed_run_lost_are_restored_from_its_log(tmp_path, counts, monkeypatch):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    database = ws / "state.sqlite"
    monkeypatch.setenv("EVOLVE_TEST_FAIL", "b")
    failed = start_run(root, Workspace(ws), RunOptions(), EchoModel())
    assert failed.status == "failed"
    monkeypatch.delenv("EVOLVE_TEST_FAIL")
    kept = kept_rows(database, failed.run_id)
    assert len(kept) >= 2

    lose_the_last_batch(database, failed.run_id, keep=1)
    assert len(kept_rows(database, failed.run_id)) == 1
    store = StateStore.open(database)
    assert store.reconcile() == 1
    assert store.run(failed.run_id)["status"] == "interrupted"
    store.close()
    assert kept_rows(database, failed.run_id) == kept

    lose_the_last_batch(database, failed.run_id, keep=0)  # and resume reconciles it first
    counts.write_text("")
    again = EchoModel()
    result = resume_run(failed.run_id, Workspace(ws), RunOptions(), again)
    assert result.status == "success"
    done = {(e["node_id"], e.get("item")) for e in successes(failed.log_path)}
    ran = {(line.split()[0], line.split()[1]) for line in executions(counts)}
    assert ("work", "0") not in ran and ("work", "2") not in ran  # reused, not executed
    assert {(c.node_id, c.item) for c in again.calls}.isdisjoint(done)


def test_reused_results_a_killed_run_lost_are_restored_from_the_run_that_executed_them(
    tmp_path, counts, monkeypatch
):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    database = ws / "state.sqlite"
    monkeypatch.setenv("EVOLVE_TEST_FAIL", "b")
    first = start_run(root, Workspace(ws), RunOptions(), EchoModel())
    second = resume_run(first.run_id, Workspace(ws), RunOptions(), EchoModel())
    assert second.status == "failed"  # b fails again; a and c are reused
    reused_lines = [e for e in read_events(second.log_path) if e["type"] == "node.reused"]
    assert {(e["node_id"], e.get("item")) for e in reused_lines} >= {("work", 0), ("work", 2)}
    kept = kept_rows(database, second.run_id)
    assert {r[5] for r in kept if r[0] == "work"} == {first.run_id}

    lose_the_last_batch(database, second.run_id, keep=0)
    store = StateStore.open(database)
    store.reconcile()
    store.close()
    assert kept_rows(database, second.run_id) == kept


EACH = "def run(inputs):\n    return {'edge_output': len(inputs['rows'])}\n"


def test_a_large_argument_is_hashed_once_for_all_the_items_that_get_it(tmp_path, monkeypatch):
    """`args: {rows: $.items}` gives every item of a fan-out the same list: hashed per item,
    the fan-out would cost the square of its size (edge inputs and state reads: test_resume)."""
    import evolve.runtime.reuse as reuse

    hashed: list[int] = []
    real = reuse.value_digest

    def counted(value):
        if isinstance(value, list) and len(value) == 200:  # the items, as the argument
            hashed.append(1)
        return real(value)

    monkeypatch.setattr(reuse, "value_digest", counted)
    exp = build(
        tmp_path / "x",
        spec(
            [
                tool(
                    "each",
                    "tools/each.py",
                    args={"rows": "$.items"},
                    for_each={"source": "$.items"},
                )
            ],
            state={"items": {"type": "array", "default": list(range(200))}},
        ),
        {"tools/each.py": EACH},
    )
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions())
    assert result.status == "success", result.reason
    lines = successes(result.log_path)
    assert len(lines) == 200 and {e["result"]["edge_output"] for e in lines} == {200}
    assert len({e["fingerprint"] for e in lines}) == 200  # $item and $index still tell them apart
    assert hashed == [1]  # once for the 200 items that get it
