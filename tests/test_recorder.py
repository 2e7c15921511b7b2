"""The recorder: one record makes the event and the row, the run's end is in the store before
`run.finished` is in the log, and a log replays into the rows it was written with."""

from __future__ import annotations

import sqlite3

import pytest

from evolve.store.log import read_events
from evolve.store.recorder import Recorder, replay
from evolve.store.writer import StateStore
from fakes import ScriptedModel
from helpers import build, run, spec, tool

FLAKY = """
def run(inputs):
    if inputs["$item"] == 1 and inputs.get("fail", True):
        raise ConnectionError("flaky")
    return {"state_delta": {"seen": [inputs["$item"]]}, "metrics": {"n": inputs["$item"]}}
"""
SLOW = "import time\n\ndef run(inputs):\n    time.sleep(0.3)\n    return {}\n"


def mixed_run(tmp_path):
    """One run with retries, a timeout, a skip, a blocked node, a fan-out and model calls."""
    fan = tool(
        "fan",
        "tools/f.py",
        writes=["seen"],
        for_each={"source": "$.items"},
        on_error={"policy": "retry", "attempts": 2, "base_ms": 1, "then": "skip"},
    )
    slow = tool("slow", "tools/s.py", timeout_ms=50, on_error={"policy": "skip"})
    after = tool("after_slow", "tools/s.py")
    ask = {
        "id": "ask",
        "kind": "agent",
        "prompt": "prompts/ask.md",
        "writes": ["answer"],
        "model": "fake/model",
    }
    document = spec(
        [fan, slow, after, ask],
        [{"from": "slow", "to": "after_slow"}, {"from": "fan", "to": "ask"}],
        state={
            "items": {"type": "array", "default": [0, 1, 2]},
            "seen": {"type": "array", "merge": "array_append", "default": []},
            "answer": {"type": "string"},
        },
    )
    files = {"tools/f.py": FLAKY, "tools/s.py": SLOW, "prompts/ask.md": "Say hi."}
    experience = build(tmp_path / "x", document, files)
    return run(experience, tmp_path / "ws", model=ScriptedModel(["hi"]))


def rows(db: sqlite3.Connection, table: str, run_id: str, skip: tuple[str, ...] = ()) -> list:
    db.row_factory = sqlite3.Row
    found = db.execute(f"select * from {table} where run_id = ?", [run_id])
    return sorted(
        (tuple((k, r[k]) for k in r.keys() if k not in ("id", *skip)) for r in found),  # noqa: SIM118
        key=repr,
    )


def test_a_log_replays_into_the_rows_it_was_recorded_with(tmp_path):
    result = mixed_run(tmp_path)
    assert result.status == "partial"
    database = tmp_path / "ws" / "state.sqlite"
    db = sqlite3.connect(database)
    node_runs = rows(db, "node_runs", result.run_id)
    llm_calls = rows(db, "llm_calls", result.run_id, skip=("request", "response"))
    snapshot = rows(db, "state_snapshot", result.run_id, skip=("updated_at",))
    history = rows(db, "state_history", result.run_id, skip=("ts",))
    run_row = db.execute("select * from runs where id = ?", [result.run_id]).fetchone()
    statuses = {(r[1][1], r[3][1]) for r in node_runs}  # (node_id, attempt) present
    assert {("fan", 0), ("slow", 1), ("after_slow", 0), ("ask", 1)} <= statuses
    assert snapshot and history
    for table in ("node_runs", "llm_calls", "state_snapshot", "state_history"):
        db.execute(f"delete from {table} where run_id = ?", [result.run_id])
    db.execute("delete from runs where id = ?", [result.run_id])
    db.commit()

    store = StateStore.open(database)
    done = replay(read_events(result.log_path), store, log_path=str(result.log_path))
    store.close()

    assert done.finished and done.node_runs == len(node_runs) and done.llm_calls == 1
    assert rows(db, "node_runs", result.run_id) == node_runs
    assert rows(db, "llm_calls", result.run_id, skip=("request", "response")) == llm_calls
    assert done.state
    assert rows(db, "state_snapshot", result.run_id, skip=("updated_at",)) == snapshot
    assert rows(db, "state_history", result.run_id, skip=("ts",)) == history
    rebuilt = db.execute("select * from runs where id = ?", [result.run_id]).fetchone()
    columns = [c[1] for c in db.execute("pragma table_info(runs)")]
    differ = {c for c, a, b in zip(columns, run_row, rebuilt, strict=True) if a != b}
    # a rebuilt row belongs to no process, and the digests of the spec's files are not logged
    assert differ == {"pid", "spec_files"}


class Spy:
    """A store and a log that note the order of what reaches them."""

    def __init__(self, order: list[str], fail: bool = False):
        self.order, self.fail, self.closed = order, fail, False

    def finish_run(self, run_id, **fields):
        if self.fail:
            raise sqlite3.OperationalError("database is locked")
        self.order.append(f"store:{fields['status']}")

    def write(self, event, ts=None):
        self.order.append(f"log:{event.TYPE}:{event.status}")
        return {}

    def close(self):
        self.closed = True


def test_the_end_of_a_run_is_in_the_store_before_run_finished_is_in_the_log():
    from evolve.events import RunFinished
    from evolve.store.recorder import RunEnd

    order: list[str] = []
    spy = Spy(order)
    end = RunEnd(RunFinished(status="success", duration_ms=5, tokens={"in": 0, "out": 0}))
    Recorder("r-x", spy, spy).run_finished(end)  # type: ignore[arg-type]
    assert order == ["store:success", "log:run.finished:success"] and spy.closed


def test_a_store_that_cannot_record_the_end_never_gets_a_log_saying_success():
    from evolve.events import RunFinished
    from evolve.store.recorder import RunEnd

    order: list[str] = []
    spy = Spy(order, fail=True)
    end = RunEnd(RunFinished(status="success", duration_ms=5, tokens={"in": 0, "out": 0}))
    with pytest.raises(sqlite3.OperationalError):
        Recorder("r-x", spy, spy).run_finished(end)  # type: ignore[arg-type]
    assert order == ["log:run.finished:failed"]
