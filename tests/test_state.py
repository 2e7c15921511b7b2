"""State writes: merge rules, declared writes, and field schemas are enforced on every write."""

from __future__ import annotations

import json
import sqlite3

from helpers import build, events, run, spec, tool


def writer(value_expr: str) -> str:
    return f"def run(inputs):\n    return {{'state_delta': {value_expr}}}\n"


def test_array_append_accumulates_across_nodes(tmp_path):
    nodes = [tool("a", "tools/a.py", writes=["log"]), tool("b", "tools/b.py", writes=["log"])]
    exp = build(
        tmp_path / "x",
        spec(
            nodes,
            [{"from": "a", "to": "b"}],
            state={"log": {"type": "array", "merge": "array_append", "default": ["start"]}},
        ),
        {"tools/a.py": writer("{'log': ['a1', 'a2']}"), "tools/b.py": writer("{'log': 'b'}")},
    )
    result = run(exp, tmp_path / "ws")
    assert result.state["log"] == ["start", "a1", "a2", "b"]
    db = sqlite3.connect(tmp_path / "ws" / "state.sqlite")
    history = db.execute(
        "select node_id, value_old, value_new from state_history where run_id = ? order by id",
        [result.run_id],
    ).fetchall()
    assert history == [
        ("a", '["start"]', '["start", "a1", "a2"]'),
        ("b", '["start", "a1", "a2"]', '["start", "a1", "a2", "b"]'),
    ]
    snapshot = db.execute(
        "select value, initial, updated_by_node from state_snapshot "
        "where run_id = ? and field = 'log'",
        [result.run_id],
    ).fetchone()
    assert json.loads(snapshot[0]) == result.state["log"]
    assert json.loads(snapshot[1]) == ["start"] and snapshot[2] == "b"


def test_set_once_refuses_a_second_write(tmp_path):
    nodes = [
        tool("a", "tools/a.py", writes=["id"]),
        tool("b", "tools/b.py", writes=["id"], on_error={"policy": "skip"}),
    ]
    exp = build(
        tmp_path / "x",
        spec(
            nodes, [{"from": "a", "to": "b"}], state={"id": {"type": "string", "merge": "set_once"}}
        ),
        {"tools/a.py": writer("{'id': 'first'}"), "tools/b.py": writer("{'id': 'second'}")},
    )
    result = run(exp, tmp_path / "ws")
    assert result.state["id"] == "first"
    failed = events(result, "node.failed")
    assert [(f["node_id"], f["error_type"]) for f in failed] == [("b", "set_once_violation")]
    assert "wrote 'id' again, but it is set_once" in failed[0]["error"]


def test_undeclared_write_fails_the_attempt(tmp_path):
    nodes = [tool("a", "tools/a.py", writes=["x"], on_error={"policy": "skip"})]
    exp = build(
        tmp_path / "x",
        spec(nodes, state={"x": {"type": "string"}, "y": {"type": "string"}}),
        {"tools/a.py": writer("{'x': 'ok', 'y': 'sneaky'}")},
    )
    result = run(exp, tmp_path / "ws")
    failed = events(result, "node.failed")[0]
    assert failed["error_type"] == "undeclared_write"
    assert failed["error"] == "node 'a' wrote 'y', which is not in its writes (x)"
    assert "x" not in result.state and "y" not in result.state  # nothing half-applied


def test_schema_violating_write_fails_the_attempt(tmp_path):
    state = {"score": {"type": "number", "minimum": 0, "maximum": 10, "default": 1}}
    nodes = [tool("a", "tools/a.py", writes=["score"], on_error={"policy": "skip"})]
    exp = build(tmp_path / "x", spec(nodes, state=state), {"tools/a.py": writer("{'score': 42}")})
    result = run(exp, tmp_path / "ws")
    failed = events(result, "node.failed")[0]
    assert failed["error_type"] == "schema_violation"
    assert "wrote an invalid 'score': $: 42 is greater than the maximum of 10" in failed["error"]
    assert result.state["score"] == 1


def test_tool_output_shape_is_checked(tmp_path):
    nodes = [tool("a", "tools/a.py", on_error={"policy": "skip"})]
    exp = build(
        tmp_path / "x", spec(nodes), {"tools/a.py": "def run(inputs):\n    return {'delta': {}}\n"}
    )
    failed = events(run(exp, tmp_path / "ws"), "node.failed")[0]
    assert failed["error_type"] == "bad_output"
    assert "unknown keys ['delta']" in failed["error"]


def test_tools_get_read_only_views_of_state_not_the_state_itself(tmp_path):
    sneaky = "def run(inputs):\n    inputs['_state']['items'].append('x')\n    return {}\n"
    nodes = [tool("a", "tools/a.py", reads=["items"])]
    exp = build(
        tmp_path / "x",
        spec(nodes, state={"items": {"type": "array", "default": []}}),
        {"tools/a.py": sneaky},
    )
    result = run(exp, tmp_path / "ws")
    assert result.state["items"] == []
    failed = events(result, "node.failed")[0]
    assert "TypeError: state values given to a node are read-only" in failed["error"]


def test_a_copy_of_a_read_value_may_be_changed_and_written_back(tmp_path):
    copier = (
        "import copy\n"
        "def run(inputs):\n"
        "    rows = copy.deepcopy(inputs['_state']['rows'])\n"
        "    rows[0]['n'] += 1\n"
        "    rows.append({'n': 9})\n"
        "    return {'state_delta': {'rows': rows}}\n"
    )
    nodes = [tool("a", "tools/a.py", reads=["rows"], writes=["rows"])]
    exp = build(
        tmp_path / "x",
        spec(nodes, state={"rows": {"type": "array", "default": [{"n": 1}]}}),
        {"tools/a.py": copier},
    )
    assert run(exp, tmp_path / "ws").state["rows"] == [{"n": 2}, {"n": 9}]


def test_items_reading_a_field_share_one_view_of_it(tmp_path):
    """A fan-out's items are handed the same read-only value, not a copy each."""
    recorder = (
        "KEPT = []\n"
        "def run(inputs):\n"
        "    KEPT.append(inputs['_state']['items'])  # kept alive: no id is reused\n"
        "    return {'state_delta': {'views': [len({id(v) for v in KEPT})]}}\n"
    )
    node = tool("a", "tools/a.py", reads=["items"], writes=["views"])
    node["for_each"] = {"source": "$.items"}
    state = {
        "items": {"type": "array", "default": list(range(50))},
        "views": {"type": "array", "merge": "array_append", "default": []},
    }
    exp = build(tmp_path / "x", spec([node], state=state), {"tools/a.py": recorder})
    assert run(exp, tmp_path / "ws").state["views"] == [1] * 50


def test_a_tool_may_return_nothing(tmp_path):
    exp = build(
        tmp_path / "x",
        spec([tool("a", "tools/a.py")]),
        {"tools/a.py": "def run(inputs):\n    pass\n"},
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "success"
    assert events(result, "node.finished")[0]["metrics"] == {}


def test_secret_values_never_reach_the_log_or_the_store(tmp_path, monkeypatch):
    secret = "sk-live-5f4dcc3b5aa765d61d83"
    monkeypatch.setenv("ACME_API_KEY", secret)
    leaky = (
        "import os\n\ndef run(inputs):\n"
        "    key = os.environ['ACME_API_KEY']\n"
        "    if inputs.get('fail'):\n"
        "        raise RuntimeError(f'bad key {key}')\n"
        "    return {'state_delta': {'token': key}}\n"
    )
    nodes = [
        tool("a", "tools/a.py", writes=["token"]),
        tool("b", "tools/a.py", args={"fail": True}, on_error={"policy": "skip"}),
    ]
    exp = build(
        tmp_path / "x", spec(nodes, state={"token": {"type": "string"}}), {"tools/a.py": leaky}
    )
    result = run(exp, tmp_path / "ws", args={"token": secret})
    assert result.state["token"] == secret  # the run itself sees the real value
    assert secret not in result.log_path.read_text()
    dump = "\n".join(sqlite3.connect(tmp_path / "ws" / "state.sqlite").iterdump())
    assert secret not in dump
    assert "[REDACTED:ACME_API_KEY]" in dump
