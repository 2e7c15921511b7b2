"""The scheduler: order, concurrency, fan-out merging, skips, pipelines, loops, nesting, kinds."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime

import pytest

from evolve.errors import UsageError
from fakes import ScriptedModel
from helpers import build, events, max_in_flight, run, spec, tool

SLEEP_TOOL = """
import asyncio

async def run(inputs):
    await asyncio.sleep(inputs.get("seconds", 0.05))
    return {"state_delta": {}}
"""

ITEM_TOOL = """
import os
import time


def run(inputs):
    if inputs["$index"] == 1:
        open(inputs["gate"], "w").close()
    if inputs["$index"] == 0:  # item 0 finishes after item 1, however busy the machine
        for _ in range(2000):
            if os.path.exists(inputs["gate"]):
                break
            time.sleep(0.005)
        time.sleep(0.3)
    return {"state_delta": {"seen": [inputs["$item"]]}}
"""


GATED_TOOL = """
import os
import time


def run(inputs):
    if inputs.get("open"):  # c: open the gate and finish at once
        open(inputs["open"], "w").close()
    if inputs.get("after"):  # b: finish well after c has finished, however busy the machine
        for _ in range(2000):
            if os.path.exists(inputs["after"]):
                break
            time.sleep(0.005)
        time.sleep(0.3)
    return {}
"""


def test_nodes_start_only_after_their_predecessors(tmp_path):
    gate = str(tmp_path / "c-done")
    args = {"b": {"after": gate}, "c": {"open": gate}}
    nodes = [tool(n, "tools/g.py", args=args.get(n, {})) for n in "abcd"]
    edges = [
        {"from": "a", "to": "b"},
        {"from": "a", "to": "c"},
        {"from": "b", "to": "d"},
        {"from": "c", "to": "d"},
    ]
    exp = build(tmp_path / "x", spec(nodes, edges), {"tools/g.py": GATED_TOOL})
    result = run(exp, tmp_path / "ws")
    assert result.status == "success"
    seqs = {(e["type"], e["node_id"]): e["seq"] for e in events(result) if "node_id" in e}
    assert seqs[("node.finished", "a")] < seqs[("node.started", "b")]
    assert seqs[("node.finished", "a")] < seqs[("node.started", "c")]
    # c finishes before b (b waits for it), and d must still wait for b (no waves, no early start)
    assert seqs[("node.finished", "c")] < seqs[("node.finished", "b")]
    assert seqs[("node.finished", "b")] < seqs[("node.started", "d")]


def test_runtime_concurrency_caps_nodes_in_flight(tmp_path):
    nodes = [tool(f"n{i}", "tools/s.py") for i in range(10)]
    exp = build(tmp_path / "x", spec(nodes, runtime={"concurrency": 3}), {"tools/s.py": SLEEP_TOOL})
    result = run(exp, tmp_path / "ws")
    assert max_in_flight(events(result)) == 3
    assert max_in_flight(events(run(exp, tmp_path / "ws", concurrency=6))) == 6


def test_for_each_concurrency_caps_items_of_one_node(tmp_path):
    node = tool("fan", "tools/s.py", for_each={"source": "$.items", "concurrency": 2})
    exp = build(
        tmp_path / "x",
        spec(
            [node],
            state={"items": {"type": "array", "default": list(range(8))}},
            runtime={"concurrency": 10},
        ),
        {"tools/s.py": SLEEP_TOOL},
    )
    result = run(exp, tmp_path / "ws")
    assert max_in_flight(events(result), "fan") == 2
    assert len(events(result, "node.started")) == 8


def test_for_each_merges_in_item_order_whatever_order_items_finish(tmp_path):
    gate = str(tmp_path / "item-1-done")
    node = tool(
        "fan", "tools/i.py", args={"gate": gate}, writes=["seen"], for_each={"source": "$.items"}
    )
    state = {
        "items": {"type": "array", "default": ["a", "b", "c", "d", "e", "f"]},
        "seen": {"type": "array", "merge": "array_append", "default": []},
    }
    exp = build(tmp_path / "x", spec([node], state=state), {"tools/i.py": ITEM_TOOL})
    result = run(exp, tmp_path / "ws")
    finished = [e["item"] for e in events(result, "node.finished") if "item" in e]
    assert finished != sorted(finished)  # they really did finish out of order
    assert result.state["seen"] == ["a", "b", "c", "d", "e", "f"]
    writes = events(result, "state.write")
    assert [(w.get("item"), w["writes"]) for w in writes] == [(None, 6)]


def test_when_false_skips_the_node_and_its_dependents(tmp_path):
    nodes = [
        tool("a", "tools/w.py", writes=["flag"]),
        tool("b", "tools/w.py"),
        tool("c", "tools/w.py"),
        tool("d", "tools/w.py"),
    ]
    edges = [
        {"from": "a", "to": "b", "when": "$.flag == 'go'"},
        {"from": "b", "to": "c"},
        {"from": "a", "to": "d", "when": "$.flag == 'stop'"},
    ]
    files = {
        "tools/w.py": "def run(inputs):\n    return {'state_delta': {'flag': 'stop'}}\n"
        "    if False else None\n"
    }
    files["tools/w.py"] = (
        "def run(inputs):\n"
        "    return {'state_delta': {'flag': 'stop'}} if inputs.get('first') else {}\n"
    )
    nodes[0]["args"] = {"first": True}
    exp = build(tmp_path / "x", spec(nodes, edges, state={"flag": {"type": "string"}}), files)
    result = run(exp, tmp_path / "ws")
    assert result.status == "success"
    skipped = {e["node_id"]: e["reason"] for e in events(result, "node.skipped")}
    assert skipped == {
        "b": "when '$.flag == 'go'' on the edge from 'a' is false (it saw $.flag = \"stop\")",
        "c": "predecessor 'b' was skipped",
    }
    assert [e["node_id"] for e in events(result, "node.finished")] == ["a", "d"]


def test_skip_policy_failure_skips_dependents_and_run_is_partial(tmp_path):
    nodes = [
        tool("a", "tools/bad.py", on_error={"policy": "skip"}),
        tool("b", "tools/ok.py"),
        tool("c", "tools/ok.py"),
    ]
    files = {
        "tools/bad.py": "def run(inputs):\n    raise ValueError('boom')\n",
        "tools/ok.py": "def run(inputs):\n    return {}\n",
    }
    exp = build(tmp_path / "x", spec(nodes, [{"from": "a", "to": "b"}]), files)
    result = run(exp, tmp_path / "ws")
    assert result.status == "partial" and result.exit_code == 1
    failed = events(result, "node.failed")
    assert failed[0]["error_type"] == "tool_error"
    assert "ValueError: boom" in failed[0]["error"]
    skipped = {e["node_id"]: e["reason"] for e in events(result, "node.skipped")}
    assert skipped["b"] == "predecessor 'a' failed"
    assert [e["node_id"] for e in events(result, "node.finished")] == ["c"]


def test_fail_run_stops_the_run_and_still_writes_run_finished(tmp_path):
    nodes = [tool("a", "tools/bad.py"), tool("b", "tools/ok.py")]
    files = {
        "tools/bad.py": "def run(inputs):\n    raise RuntimeError('nope')\n",
        "tools/ok.py": "def run(inputs):\n    return {}\n",
    }
    exp = build(tmp_path / "x", spec(nodes, [{"from": "a", "to": "b"}]), files)
    result = run(exp, tmp_path / "ws")
    assert result.status == "failed" and result.exit_code == 1
    assert "node 'a' failed after 1 attempt: " in result.reason
    finished = events(result, "run.finished")
    assert len(finished) == 1 and finished[0]["status"] == "failed"
    assert not [e for e in events(result, "node.started") if e["node_id"] == "b"]


def test_pipeline_and_loop_feed_the_nodes_after_them(tmp_path):
    files = {
        "tools/double.py": "def run(inputs):\n    return {'edge_output': inputs['$item'] * 2}\n",
        "tools/collect.py": "def run(inputs):\n"
        "    prev = list(inputs['_edge_inputs'].values())[0]\n"
        "    return {'state_delta': {'out': [prev + 1]}}\n",
        "tools/inc.py": "def run(inputs):\n"
        "    return {'state_delta': {'n': inputs['_state']['n'] + 1}}\n",
        "tools/final.py": "def run(inputs):\n"
        "    s = inputs['_state']\n"
        "    return {'state_delta': {'summary': f\"{s['out']} {s['n']}\"}}\n",
    }
    state = {
        "items": {"type": "array", "default": [1, 2, 3]},
        "out": {"type": "array", "merge": "array_append", "default": []},
        "n": {"type": "integer", "default": 0},
        "summary": {"type": "string"},
    }
    nodes = [
        tool("double", "tools/double.py"),
        tool("collect", "tools/collect.py", writes=["out"]),
        tool("inc", "tools/inc.py", reads=["n"], writes=["n"]),
        tool("final", "tools/final.py", reads=["out", "n"], writes=["summary"]),
    ]
    document = spec(nodes, [{"from": "p", "to": "l"}, {"from": "l", "to": "final"}], state=state)
    document["graph"]["pipelines"] = [
        {"id": "p", "items": "$.items", "stages": ["double", "collect"]}
    ]
    document["graph"]["loops"] = [{"id": "l", "body": "inc", "until": "$.n >= 3", "max_iters": 10}]
    exp = build(tmp_path / "x", document, files)
    result = run(exp, tmp_path / "ws")
    assert result.status == "success", result.reason
    assert result.state["out"] == [3, 5, 7]
    assert result.state["summary"] == "[3, 5, 7] 3"
    iterations = events(result, "loop.iteration")
    assert [(e["iteration"], e["until_met"]) for e in iterations] == [
        (1, False),
        (2, False),
        (3, True),
    ]


def test_loop_stops_at_max_iters(tmp_path):
    files = {
        "tools/inc.py": "def run(inputs):\n"
        "    return {'state_delta': {'n': inputs['_state']['n'] + 1}}\n"
    }
    document = spec(
        [tool("inc", "tools/inc.py", reads=["n"], writes=["n"])],
        state={"n": {"type": "integer", "default": 0}},
    )
    document["graph"]["loops"] = [{"id": "l", "body": "inc", "until": "$.n > 100", "max_iters": 4}]
    result = run(build(tmp_path / "x", document, files), tmp_path / "ws")
    assert result.state["n"] == 4
    assert len(events(result, "loop.iteration")) == 4


def test_nested_experience_runs_as_a_linked_child(tmp_path):
    child = build(
        tmp_path / "x" / "child",
        spec(
            [tool("sq", "tools/sq.py", reads=["x"], writes=["y"])],
            state={"x": {"type": "integer", "default": 0}, "y": {"type": "integer"}},
        ),
        {"tools/sq.py": "def run(i):\n    return {'state_delta': {'y': i['_state']['x'] ** 2}}\n"},
    )
    assert child.is_dir()
    parent = build(
        tmp_path / "x",
        spec(
            [
                {
                    "id": "kid",
                    "kind": "experience",
                    "impl": "child",
                    "args": {"x": "$.n"},
                    "writes": ["y"],
                }
            ],
            state={"n": {"type": "integer", "default": 7}, "y": {"type": "integer"}},
        ),
    )
    result = run(parent, tmp_path / "ws")
    assert result.status == "success", result.reason
    assert result.state["y"] == 49
    db = sqlite3.connect(tmp_path / "ws" / "state.sqlite")
    rows = db.execute(
        "select id, parent_run_id, parent_node, status from runs where parent_run_id is not null"
    ).fetchall()
    assert len(rows) == 1 and rows[0][1:] == (result.run_id, "kid", "success")


def test_every_run_starts_from_defaults_and_args(tmp_path):
    files = {
        "tools/add.py": "def run(i):\n    return {'state_delta': {'acc': [i['_state']['n']]}}\n"
    }
    exp = build(
        tmp_path / "x",
        spec(
            [tool("add", "tools/add.py", reads=["n"], writes=["acc"])],
            state={
                "n": {"type": "integer", "default": 1},
                "acc": {"type": "array", "merge": "array_append", "default": []},
            },
        ),
        files,
    )
    first = run(exp, tmp_path / "ws")
    second = run(exp, tmp_path / "ws")
    third = run(exp, tmp_path / "ws", args={"n": 5, "acc": [9]})
    assert first.state["acc"] == [1]
    assert second.state["acc"] == [1]  # nothing leaked from the first run
    assert third.state["acc"] == [9, 5]
    with pytest.raises(UsageError, match="unknown state field 'nn'; did you mean 'n'"):
        run(exp, tmp_path / "ws", args={"nn": 1})
    with pytest.raises(UsageError, match="value for 'n' is invalid"):
        run(exp, tmp_path / "ws", args={"n": "five"})


def test_dataset_nodes_read_json_jsonl_csv_and_sqlite(tmp_path):
    root = tmp_path / "x"
    (root / "data").mkdir(parents=True)
    db = sqlite3.connect(root / "data" / "d.sqlite")
    db.execute("create table t (a integer, b text)")
    db.executemany("insert into t values (?, ?)", [(1, "x"), (2, "y")])
    db.commit()
    db.close()
    files = {
        "data/d.json": json.dumps([{"a": 1}]),
        "data/d.jsonl": '{"a": 1}\n{"a": 2}\n',
        "data/d.csv": "a,b\n1,x\n2,y\n",
    }
    nodes = [
        {
            "id": "j",
            "kind": "dataset",
            "source": {"type": "file", "uri": "data/d.json"},
            "writes": ["j"],
        },
        {
            "id": "l",
            "kind": "dataset",
            "source": {"type": "file", "uri": "data/d.jsonl"},
            "writes": ["l"],
        },
        {
            "id": "c",
            "kind": "dataset",
            "source": {"type": "file", "uri": "data/d.csv"},
            "writes": ["c"],
        },
        {
            "id": "s",
            "kind": "dataset",
            "source": {
                "type": "sqlite",
                "uri": "data/d.sqlite",
                "query": "select a, b from t order by a",
            },
            "writes": ["s"],
        },
    ]
    state = {k: {"type": "array"} for k in "jlcs"}
    result = run(build(root, spec(nodes, state=state), files), tmp_path / "ws")
    assert result.status == "success", result.reason
    assert result.state["j"] == [{"a": 1}]
    assert result.state["l"] == [{"a": 1}, {"a": 2}]
    assert result.state["c"] == [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]
    assert result.state["s"] == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_agent_node_through_the_model_interface(tmp_path):
    files = {"prompts/p.md": "Topic: {{ topic }}; item {{ $index }} = {{ $item.name }}"}
    node = {
        "id": "ask",
        "kind": "agent",
        "prompt": "prompts/p.md",
        "reads": ["topic"],
        "writes": ["answers"],
        "for_each": {"source": "$.things"},
        "schema": {
            "type": "object",
            "required": ["answers"],
            "properties": {"answers": {"type": "array", "items": {"type": "string"}}},
        },
    }
    state = {
        "topic": {"type": "string", "default": "birds"},
        "things": {"type": "array", "default": [{"name": "owl"}, {"name": "jay"}]},
        "answers": {"type": "array", "merge": "array_append", "default": []},
    }
    exp = build(tmp_path / "x", spec([node], state=state, runtime={"model": "fake/m"}), files)
    model = ScriptedModel([{"answers": ["a0"]}, {"answers": ["a1"]}])
    result = run(exp, tmp_path / "ws", model=model, concurrency=1)
    assert result.status == "success", result.reason
    assert result.state["answers"] == ["a0", "a1"]
    assert model.calls[0].messages[-1]["content"].startswith("Topic: birds; item 0 = owl")
    calls = events(result, "llm.call")
    assert [c["tokens_in"] for c in calls] == [10, 10]
    assert result.tokens_in == 20 and result.cost_usd == pytest.approx(0.002)


def test_agent_schema_failure_gets_one_repair_turn_then_fails(tmp_path):
    files = {"prompts/p.md": "Give a score."}
    node = {
        "id": "score",
        "kind": "agent",
        "prompt": "prompts/p.md",
        "writes": ["score"],
        "schema": {
            "type": "object",
            "required": ["score"],
            "properties": {"score": {"type": "number"}},
        },
        "on_error": {"policy": "skip"},
    }
    exp = build(
        tmp_path / "x",
        spec([node], state={"score": {"type": "number"}}, runtime={"model": "fake/m"}),
        files,
    )
    repaired = run(exp, tmp_path / "ws", model=ScriptedModel(["not json", {"score": 3}]))
    assert repaired.status == "success" and repaired.state["score"] == 3
    assert [e["final"] for e in events(repaired, "schema.invalid")] == [False]
    model = ScriptedModel([{"score": "high"}, {"score": "higher"}])
    failed = run(exp, tmp_path / "ws", model=model)
    assert failed.status == "partial"
    assert [e["final"] for e in events(failed, "schema.invalid")] == [False, True]
    assert events(failed, "node.failed")[0]["error_type"] == "schema_invalid"
    assert "score" not in failed.state
    assert "did not match the schema" in model.calls[1].messages[-1]["content"]


def test_agent_without_a_model_is_a_clear_usage_error(tmp_path, monkeypatch):
    monkeypatch.delenv("EVOLVE_MODEL", raising=False)
    files = {"prompts/p.md": "hi"}
    node = {"id": "ask", "kind": "agent", "prompt": "prompts/p.md", "writes": ["t"]}
    exp = build(tmp_path / "x", spec([node], state={"t": {"type": "string"}}), files)
    with pytest.raises(UsageError, match="no model for agent node ask: pass --model"):
        run(exp, tmp_path / "ws", model=ScriptedModel(["x"]))
    monkeypatch.setenv("EVOLVE_MODEL", "fake/env")
    model = ScriptedModel(["hello"])
    result = run(exp, tmp_path / "ws", model=model)
    assert result.state["t"] == "hello" and model.calls[0].model == "fake/env"


def test_model_flag_wins_over_node_and_runtime_models(tmp_path):
    files = {"prompts/p.md": "hi"}
    node = {
        "id": "ask",
        "kind": "agent",
        "prompt": "prompts/p.md",
        "writes": ["t"],
        "model": "fake/node",
    }
    exp = build(
        tmp_path / "x",
        spec([node], state={"t": {"type": "string"}}, runtime={"model": "fake/runtime"}),
        files,
    )
    model = ScriptedModel(["a", "b"])
    run(exp, tmp_path / "ws", model=model)
    from evolve.runtime.run import RunOptions, start_run
    from evolve.store.workspace import Workspace

    start_run(exp, Workspace(tmp_path / "ws"), RunOptions(model="fake/flag"), model)
    assert [c.model for c in model.calls] == ["fake/node", "fake/flag"]


def test_the_model_layer_loads_in_the_background_while_tools_run(tmp_path):
    """A run with an agent node starts the model's `prepare` (importing litellm) as it starts:
    the tool before the agent runs meanwhile, and the agent's attempt starts once it is done."""
    flag = tmp_path / "tool-ran"

    class SlowToImport(ScriptedModel):
        def prepare(self) -> None:
            deadline = time.monotonic() + 20
            while not flag.exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # only the tool, running meanwhile, can end this wait early
            self.saw_the_tool = flag.exists()
            self.prepared_at = time.time()

    first = "from pathlib import Path\ndef run(inputs):\n    Path(inputs['flag']).touch()\n"
    nodes = [
        tool("first", "tools/first.py", args={"flag": str(flag)}),
        {"id": "ask", "kind": "agent", "prompt": "prompts/p.md", "writes": ["answer"]},
    ]
    document = spec(
        nodes,
        [{"from": "first", "to": "ask"}],
        {"answer": {"type": "string"}},
        runtime={"model": "fake/m"},
    )
    files = {"tools/first.py": first, "prompts/p.md": "Say hi."}
    model = SlowToImport(["hi"])
    result = run(build(tmp_path / "x", document, files), tmp_path / "ws", model=model)
    assert result.status == "success", result.reason
    assert model.saw_the_tool
    asked = next(e for e in events(result, "node.started") if e["node_id"] == "ask")
    assert datetime.fromisoformat(asked["ts"]).timestamp() >= model.prepared_at - 0.001
