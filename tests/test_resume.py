"""Durable runs: fingerprints, `evolve resume`, `evolve run --from/--rerun`, `cache:`, and how
reused results show and are recorded (docs/resume.md)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evolve.cli import app
from evolve.runtime.fingerprint import NodePrint, js_helpers, python_helpers, source_files
from evolve.runtime.run import RunOptions, resume_run, start_run
from evolve.spec import load_experience
from evolve.store.log import read_events
from evolve.store.recorder import replay
from evolve.store.workspace import Workspace
from evolve.store.writer import StateStore
from fakes import EchoModel
from helpers import build, spec, tool

COUNTED = """
import os

def run(inputs):
    with open(os.environ["EVOLVE_TEST_COUNTS"], "a") as f:
        f.write("{name} %s\\n" % inputs.get("$index"))
    {body}
"""
WORK = COUNTED.format(
    name="work",
    body="""if inputs["$item"] == os.environ.get("EVOLVE_TEST_FAIL"):
        import time
        time.sleep(0.2)  # the other items finish first
        raise RuntimeError("boom")
    return {"state_delta": {"done": [inputs["$item"].upper()]}}""",
)
TOTAL = COUNTED.format(
    name="total",
    body="""state = inputs["_state"]
    return {"state_delta": {"total": len(state["done"]) + len(state["descriptions"])}}""",
)


def experience(root: Path) -> Path:
    """work (tool fan-out) -> describe (agent fan-out) -> total (tool); side (agent) alone."""
    nodes = [
        tool("work", "tools/work.py", writes=["done"], for_each={"source": "$.items"}),
        {
            "id": "describe",
            "kind": "agent",
            "prompt": "prompts/describe.md",
            "reads": ["done"],
            "writes": ["descriptions"],
            "for_each": {"source": "$.items", "concurrency": 2},
        },
        tool("total", "tools/total.py", reads=["done", "descriptions"], writes=["total"]),
        {"id": "side", "kind": "agent", "prompt": "prompts/side.md", "writes": ["note"]},
    ]
    edges = [{"from": "work", "to": "describe"}, {"from": "describe", "to": "total"}]
    state = {
        "items": {"type": "array", "default": ["a", "b", "c"]},
        "done": {"type": "array", "merge": "array_append", "default": []},
        "descriptions": {"type": "array", "merge": "array_append", "default": []},
        "total": {"type": "integer"},
        "note": {"type": "string"},
    }
    document = spec(nodes, edges, state=state, runtime={"model": "fake/echo"})
    files = {
        "tools/work.py": WORK,
        "tools/total.py": TOTAL,
        "prompts/describe.md": "Describe {{ $item }}.",
        "prompts/side.md": "Say something.",
    }
    return build(root, document, files)


@pytest.fixture
def counts(tmp_path, monkeypatch):
    path = tmp_path / "counts.txt"
    path.write_text("")
    monkeypatch.setenv("EVOLVE_TEST_COUNTS", str(path))
    return path


def executions(counts: Path) -> list[str]:
    return counts.read_text().split("\n")[:-1]


def go(path: Path, ws: Path, model: EchoModel, **options):
    return start_run(path, Workspace(ws), RunOptions(**options), model)


def reused(log: Path) -> set[tuple[str, int | None]]:
    return {(e["node_id"], e.get("item")) for e in read_events(log) if e["type"] == "node.reused"}


def asked(model: EchoModel) -> list[tuple[str, int | None]]:
    return sorted((c.node_id, c.item) for c in model.calls)


# -- fingerprints --------------------------------------------------------------------------------


def test_a_fingerprint_changes_with_what_the_node_computes_and_nothing_else(tmp_path):
    root = experience(tmp_path / "x")
    (root / "tools" / "helper.py").write_text("FACTOR = 1\n")
    (root / "tools" / "work.py").write_text("import helper\n" + WORK)
    node = load_experience(root).nodes["work"]
    inputs = {"_state": {}, "$item": "a", "$index": 0}
    first = NodePrint.of("t", node, root, None).with_inputs(inputs)
    assert NodePrint.of("t", node, root, None).with_inputs(inputs) == first

    assert NodePrint.of("t", node, root, None).with_inputs({**inputs, "$item": "b"}) != first
    assert NodePrint.of("t", node, root, "other/model").with_inputs(inputs) != first
    (root / "tools" / "helper.py").write_text("FACTOR = 2\n")  # an imported helper changed
    changed = NodePrint.of("t", node, root, None)
    assert changed.with_inputs(inputs) != first
    assert changed.changes(NodePrint.of("t", node, root, None)) == []

    # elsewhere, with a description, a timeout and on_error: how it runs, not what it computes
    other = experience(tmp_path / "y")
    document = yaml.safe_load((other / "experience.yaml").read_text())
    document["graph"]["nodes"][0].update(
        description="x", timeout_ms=5, on_error={"policy": "skip"}, cache=True
    )
    (other / "experience.yaml").write_text(yaml.safe_dump(document))
    for name in ("work.py", "helper.py"):
        (other / "tools" / name).write_text((root / "tools" / name).read_text())
    described = load_experience(other).nodes["work"]
    assert described.description == "x"
    same = NodePrint.of("t", described, other, None)
    assert same.with_inputs(inputs) == changed.with_inputs(inputs)


def test_the_changes_between_two_prints_say_what_changed(tmp_path):
    root = experience(tmp_path / "x")
    node = load_experience(root).nodes["describe"]
    before = NodePrint.of("t", node, root, "m1")
    (root / "prompts" / "describe.md").write_text("Describe {{ $item }} briefly.")
    after = NodePrint.of("t", node, root, "m2")
    assert after.changes(before) == [
        "prompts/describe.md changed",
        "its model changed (m1 -> m2)",
    ]


def test_local_imports_are_followed_python_and_javascript(tmp_path):
    root = tmp_path / "x"
    (root / "tools" / "lib").mkdir(parents=True)
    (root / "tools" / "lib" / "__init__.py").write_text("from .deep import value\n")
    (root / "tools" / "lib" / "deep.py").write_text("value = 1\n")
    (root / "shared.py").write_text("X = 1\n")
    (root / "tools" / "t.py").write_text(
        "import json\nimport shared\nfrom lib import deep\n\ndef run(i):\n    return {}\n"
    )
    found = python_helpers(root / "tools" / "t.py", root)
    assert {p.relative_to(root).as_posix() for p in found} >= {
        "shared.py",
        "tools/lib/__init__.py",
        "tools/lib/deep.py",
    }
    (root / "tools" / "u.mjs").write_text("export const u = 1;\n")
    (root / "tools" / "t.mjs").write_text(
        "import { u } from './u.mjs';\nimport fs from 'node:fs';\nexport default () => u;\n"
    )
    assert js_helpers(root / "tools" / "t.mjs", root) == [(root / "tools" / "u.mjs").resolve()]


def test_source_files_cover_tool_helpers_recursively(tmp_path):
    root = experience(tmp_path / "x")
    (root / "tools" / "a.py").write_text("import b\n")
    (root / "tools" / "b.py").write_text("X = 1\n")
    (root / "tools" / "work.py").write_text("import a\n" + WORK)
    node = load_experience(root).nodes["work"]
    names = [p.name for p in source_files(node, root)]
    assert names == ["a.py", "b.py", "work.py"]


# -- resume --------------------------------------------------------------------------------------


def test_resume_reuses_every_succeeded_item_and_reaches_the_fresh_state(
    tmp_path, counts, monkeypatch
):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    fresh = go(root, tmp_path / "fresh", EchoModel())
    assert fresh.status == "success"

    monkeypatch.setenv("EVOLVE_TEST_FAIL", "b")
    model = EchoModel()
    failed = go(root, ws, model)
    assert failed.status == "failed"
    monkeypatch.delenv("EVOLVE_TEST_FAIL")
    counts.write_text("")
    again = EchoModel()
    result = resume_run(failed.run_id, Workspace(ws), RunOptions(), again)

    assert result.status == "success"
    assert result.state == fresh.state
    succeeded = {
        (e["node_id"], e.get("item"))
        for e in read_events(failed.log_path)
        if e["type"] == "node.finished" and "attempt" in e
    }
    assert ("work", 1) not in succeeded and {("work", 0), ("work", 2)} <= succeeded
    assert succeeded == reused(result.log_path)
    not_done = [f"work {i}" for i in range(3) if ("work", i) not in succeeded]
    assert sorted(executions(counts)) == sorted(["total None", *not_done])  # nothing else ran
    side = [] if ("side", None) in succeeded else [("side", None)]
    assert asked(again) == sorted([("describe", 0), ("describe", 1), ("describe", 2), *side])
    store = StateStore.open(ws / "state.sqlite")
    assert store.run(result.run_id)["resumed_from"] == failed.run_id
    store.close()
    started = next(read_events(result.log_path))
    assert started["resumed_from"] == failed.run_id


def test_a_reused_write_names_the_run_it_came_from(tmp_path, counts, monkeypatch):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    monkeypatch.setenv("EVOLVE_TEST_FAIL", "c")
    failed = go(root, ws, EchoModel())
    monkeypatch.delenv("EVOLVE_TEST_FAIL")
    result = resume_run(failed.run_id, Workspace(ws), RunOptions(), EchoModel())
    writes = [
        e
        for e in read_events(result.log_path)
        if e["type"] == "state.write" and e["field"] == "done"
    ]
    assert [w.get("reused_from") for w in writes] == [failed.run_id]
    db = sqlite3.connect(ws / "state.sqlite")
    rows = db.execute(
        "select node_id, reused_from from state_history where run_id = ? order by id",
        [result.run_id],
    ).fetchall()
    assert ("work", failed.run_id) in rows
    assert ("total", None) in rows
    db.close()


def test_a_resumed_run_passes_the_same_consistency_checks(tmp_path, counts, monkeypatch):
    """Its log holds only declared events in seq order, and replays into the store rows it was
    recorded with (the check every run passes, tests/test_recorder.py)."""
    from evolve.events import validate
    from test_recorder import rows

    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    monkeypatch.setenv("EVOLVE_TEST_FAIL", "b")
    failed = go(root, ws, EchoModel())
    monkeypatch.delenv("EVOLVE_TEST_FAIL")
    result = resume_run(failed.run_id, Workspace(ws), RunOptions(), EchoModel())
    events = list(read_events(result.log_path))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [p for e in events for p in validate(e)] == []

    database = ws / "state.sqlite"
    db = sqlite3.connect(database)
    assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    node_runs = rows(db, "node_runs", result.run_id)
    llm_calls = rows(db, "llm_calls", result.run_id, skip=("request", "response"))
    assert any(dict(r)["status"] == "reused" for r in node_runs)
    snapshot = rows(db, "state_snapshot", result.run_id, skip=("updated_at",))
    history = rows(db, "state_history", result.run_id, skip=("ts",))
    assert any(dict(r)["reused_from"] == failed.run_id for r in history)
    run_row = db.execute("select * from runs where id = ?", [result.run_id]).fetchone()
    for table in ("node_runs", "llm_calls", "state_snapshot", "state_history"):
        db.execute(f"delete from {table} where run_id = ?", [result.run_id])
    db.execute("delete from runs where id = ?", [result.run_id])
    db.commit()
    store = StateStore.open(database)
    replay(read_events(result.log_path), store, log_path=str(result.log_path))
    store.close()
    assert rows(db, "node_runs", result.run_id) == node_runs
    assert rows(db, "llm_calls", result.run_id, skip=("request", "response")) == llm_calls
    assert rows(db, "state_snapshot", result.run_id, skip=("updated_at",)) == snapshot
    assert rows(db, "state_history", result.run_id, skip=("ts",)) == history
    rebuilt = db.execute("select * from runs where id = ?", [result.run_id]).fetchone()
    columns = [c[1] for c in db.execute("pragma table_info(runs)")]
    differ = {c for c, a, b in zip(columns, run_row, rebuilt, strict=True) if a != b}
    assert differ == {"pid", "spec_files"}  # as for any run (tests/test_recorder.py)
    db.close()
    doctor = cli(
        ws, "doctor"
    )  # every run of the workspace, the resumed one too, agrees with its log
    assert doctor.exit_code == 0, doctor.output
    assert doctor.output.rstrip().endswith("healthy")


def test_resuming_a_resumed_run_still_names_the_run_that_executed(tmp_path, counts, monkeypatch):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    monkeypatch.setenv("EVOLVE_TEST_FAIL", "b")
    first = go(root, ws, EchoModel())
    second = resume_run(first.run_id, Workspace(ws), RunOptions(), EchoModel())
    assert second.status == "failed"  # b still fails
    monkeypatch.delenv("EVOLVE_TEST_FAIL")
    third = resume_run(second.run_id, Workspace(ws), RunOptions(), EchoModel())
    assert third.status == "success"
    origins = {
        (e["node_id"], e.get("item")): e["from_run"]
        for e in read_events(third.log_path)
        if e["type"] == "node.reused"
    }
    done_first = {
        (e["node_id"], e.get("item"))
        for e in read_events(first.log_path)
        if e["type"] == "node.finished" and "attempt" in e
    }
    assert done_first
    assert all(origins[key] == first.run_id for key in done_first)
    assert set(origins.values()) <= {first.run_id, second.run_id}


# -- run --from ----------------------------------------------------------------------------------


def test_after_a_prompt_changes_exactly_that_node_and_its_dependents_execute(tmp_path, counts):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    last = go(root, ws, EchoModel())
    (root / "prompts" / "describe.md").write_text("Describe {{ $item }} in one word.")
    counts.write_text("")
    model = EchoModel()
    told = []
    result = go(root, ws, model, source=last.run_id, explain=told.extend)

    assert result.status == "success"
    assert asked(model) == [("describe", 0), ("describe", 1), ("describe", 2)]
    assert executions(counts) == ["total None"]
    assert reused(result.log_path) == {("work", 0), ("work", 1), ("work", 2), ("side", None)}
    runs_again = {v.node: v.why for v in told if v.runs}
    assert runs_again == {
        "describe": "describe: prompts/describe.md changed",
        "total": "downstream of describe, which runs again",
    }


def test_rerun_executes_the_named_node_and_everything_downstream(tmp_path, counts):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    last = go(root, ws, EchoModel())
    counts.write_text("")
    model = EchoModel()
    result = go(root, ws, model, source=last.run_id, rerun=("work",))
    assert sorted(executions(counts)) == ["total None", "work 0", "work 1", "work 2"]
    assert asked(model) == [("describe", 0), ("describe", 1), ("describe", 2)]
    assert reused(result.log_path) == {("side", None)}
    assert result.state == last.state


def test_from_starts_with_the_earlier_runs_arguments(tmp_path, counts):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    last = go(root, ws, EchoModel(), args={"items": ["x", "y"]})
    counts.write_text("")
    result = go(root, ws, EchoModel(), source=last.run_id)
    assert executions(counts) == []
    assert result.state["done"] == ["X", "Y"]


# -- cache ---------------------------------------------------------------------------------------


def cached_experience(root: Path, cache: object) -> Path:
    node = tool("work", "tools/work.py", writes=["done"], for_each={"source": "$.items"})
    node["cache"] = cache
    state = {
        "items": {"type": "array", "default": ["a", "b"]},
        "done": {"type": "array", "merge": "array_append", "default": []},
    }
    return build(root, spec([node], state=state), {"tools/work.py": WORK})


def test_a_cached_node_reuses_any_earlier_runs_result(tmp_path, counts):
    root = cached_experience(tmp_path / "x", True)
    ws = tmp_path / "ws"
    first = go(root, ws, None)
    second = go(root, ws, None)
    assert sorted(executions(counts)) == ["work 0", "work 1"]
    hits = [e for e in read_events(second.log_path) if e["type"] == "node.reused"]
    assert [(e["item"], e["from_run"], e["cached"]) for e in hits] == [
        (0, first.run_id, True),
        (1, first.run_id, True),
    ]
    assert second.state == first.state
    go(root, ws, None, no_cache=True)
    assert len(executions(counts)) == 4


def test_a_cache_ttl_expires(tmp_path, counts):
    root = cached_experience(tmp_path / "x", {"ttl": "1h"})
    ws = tmp_path / "ws"
    go(root, ws, None)
    db = sqlite3.connect(ws / "state.sqlite")
    db.execute("update node_results set created_at = '2000-01-01T00:00:00.000Z'")
    db.commit()
    db.close()
    go(root, ws, None)
    assert len(executions(counts)) == 4
    go(root, ws, None)  # the second run's results are fresh
    assert len(executions(counts)) == 4


def test_the_cache_finds_results_kept_while_the_node_had_cache(tmp_path, counts):
    """Only results of nodes with `cache:` are indexed by fingerprint (keeping every other
    result stays cheap as the workspace grows): a node that gains `cache:` fills it from then."""
    root = cached_experience(tmp_path / "x", True)
    document = yaml.safe_load((root / "experience.yaml").read_text())
    del document["graph"]["nodes"][0]["cache"]
    (root / "experience.yaml").write_text(yaml.safe_dump(document))
    ws = tmp_path / "ws"
    go(root, ws, None)
    db = sqlite3.connect(ws / "state.sqlite")
    assert db.execute("select distinct cacheable from node_results").fetchall() == [(0,)]
    document["graph"]["nodes"][0]["cache"] = True
    (root / "experience.yaml").write_text(yaml.safe_dump(document))
    go(root, ws, None)  # kept without cache: not looked up
    assert len(executions(counts)) == 4
    third = go(root, ws, None)
    assert len(executions(counts)) == 4
    assert len(reused(third.log_path)) == 2
    from evolve.store.queries import CACHED_RESULT

    plan = db.execute(f"explain query plan {CACHED_RESULT}", ["work", "fp:x", ""]).fetchall()
    assert "idx_node_results_cache" in str(plan)  # a lookup is a search, not a scan
    db.close()


def test_results_kept_before_the_lookup_migration_stay_cache_hits(tmp_path, counts):
    root = cached_experience(tmp_path / "x", True)
    ws = tmp_path / "ws"
    first = go(root, ws, None)
    db = sqlite3.connect(ws / "state.sqlite")  # back to the store the release before left
    db.executescript(
        """
        drop index idx_node_results_cache;
        drop index idx_node_results_run_id_node_id_fingerprint;
        alter table node_results drop column cacheable;
        create index idx_node_results_node_id_fingerprint on node_results (node_id, fingerprint);
        create index idx_node_results_run_id_node_id on node_results (run_id, node_id);
        delete from _migrations where name = '005_result_lookup';
        """
    )
    db.close()
    second = go(root, ws, None)  # opening the store migrates it
    assert len(executions(counts)) == 2
    assert {e["from_run"] for e in read_events(second.log_path) if e["type"] == "node.reused"} == {
        first.run_id
    }
    db = sqlite3.connect(ws / "state.sqlite")
    names = {r[0] for r in db.execute("select name from sqlite_master where type = 'index'")}
    assert "idx_node_results_node_id_fingerprint" not in names
    assert {"idx_node_results_cache", "idx_node_results_run_id_node_id_fingerprint"} <= names
    db.close()


def test_cache_must_be_true_or_a_ttl(tmp_path):
    root = cached_experience(tmp_path / "x", {"ttl": "soon"})
    result = CliRunner().invoke(app, ["validate", str(root)])
    assert result.exit_code == 2
    assert "experience.yaml:" in result.output and "cache" in result.output


# -- the command line ----------------------------------------------------------------------------


def cli(ws: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--workspace", str(ws)])


def test_resume_refuses_what_it_cannot_resume_in_one_line(tmp_path, counts, monkeypatch):
    import shutil

    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    monkeypatch.setenv("EVOLVE_MODEL", "fake/echo")
    good = go(root, ws, EchoModel())
    unknown = cli(ws, "resume", "r-doesnotexist")
    assert unknown.exit_code == 2
    assert (
        unknown.output == "error: no run 'r-doesnotexist' in this workspace (see `evolve runs`)\n"
    )

    done = cli(ws, "resume", good.run_id)
    assert done.exit_code == 1
    assert done.output.count("\n") == 1
    assert done.output.startswith(f"error: run {good.run_id} succeeded: there is nothing to resume")

    monkeypatch.setenv("EVOLVE_TEST_FAIL", "a")
    failed = go(root, ws, EchoModel())
    shutil.rmtree(root)
    gone = cli(ws, "resume", failed.run_id)
    assert gone.exit_code == 1
    assert gone.output == (
        f"error: cannot resume run {failed.run_id}: its experience 't' is gone "
        f"({root}/experience.yaml does not exist)\n"
    )


def test_from_and_rerun_refuse_bad_names(tmp_path, counts):
    root = experience(tmp_path / "x")
    other = build(
        tmp_path / "o",
        {**spec([tool("one", "tools/one.py")]), "name": "other"},
        {"tools/one.py": "def run(inputs):\n    return {}\n"},
    )
    ws = tmp_path / "ws"
    last = go(root, ws, EchoModel())
    wrong = cli(ws, "run", str(root), "--from", last.run_id, "--rerun", "wrk")
    assert wrong.exit_code == 2
    assert wrong.output == (
        "error: --rerun names no node of experience 't': 'wrk'; did you mean 'work'?\n"
    )
    alone = cli(ws, "run", str(root), "--rerun", "work")
    assert alone.exit_code == 2 and "--rerun needs --from RUN" in alone.output
    foreign = cli(ws, "run", str(other), "--from", last.run_id)
    assert foreign.exit_code == 2
    assert foreign.output == (
        f"error: --from {last.run_id}: run {last.run_id} ran experience 't', not 'other'\n"
    )


def test_inspect_runs_and_the_report_show_reused_nodes(tmp_path, counts, monkeypatch):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    monkeypatch.setenv("EVOLVE_TEST_FAIL", "b")
    failed = go(root, ws, EchoModel())
    monkeypatch.delenv("EVOLVE_TEST_FAIL")
    result = resume_run(failed.run_id, Workspace(ws), RunOptions(), EchoModel())

    shown = cli(ws, "inspect", result.run_id)
    assert shown.exit_code == 0, shown.output
    assert f"resumed from {failed.run_id}" in shown.output
    assert f"↺ item 0  reused from {failed.run_id}" in shown.output
    assert "↺ side" in shown.output
    view = json.loads(cli(ws, "inspect", result.run_id, "--json").stdout)
    nodes = {n["id"]: n for n in view["view"]["nodes"]} if "view" in view else None
    nodes = nodes or {n["id"]: n for n in view["nodes"]}
    assert nodes["side"]["reused"] is True and nodes["side"]["reused_from"] == failed.run_id
    assert nodes["work"]["items_reused"] == 2 and nodes["work"]["reused"] is False
    listed = json.loads(cli(ws, "runs", "--json").stdout)
    assert listed[0]["resumed_from"] == failed.run_id
    page = tmp_path / "r.html"
    assert cli(ws, "inspect", result.run_id, "--html", str(page)).exit_code == 0
    html = page.read_text()
    assert 'data-card="reused"' in html and "kind-agent reused" in html


# -- killed at random moments, then resumed ------------------------------------------------------

SLEEPY_WORK = COUNTED.format(
    name="work",
    body="""import time
    time.sleep(0.02)
    return {"state_delta": {"done": [inputs["$item"].upper()]}}""",
).replace('%s\\n" % inputs.get("$index")', '%s %s\\n" % (inputs.get("$index"), os.getpid())')
SLEEPY_TOTAL = (
    COUNTED.format(  # slow too: a kill aimed at the run's last lines lands before its end
        name="total",
        body="""import time
    time.sleep(0.02)
    state = inputs["_state"]
    return {"state_delta": {"total": len(state["done"]) + len(state["descriptions"])}}""",
    ).replace('%s\\n" % inputs.get("$index")', '%s %s\\n" % (inputs.get("$index"), os.getpid())')
)


def killable(root: Path) -> Path:
    """A fan-out of tool items, then a fan-out of agent items, then a tool."""
    items = [f"i{n}" for n in range(6)]
    nodes = [
        tool(
            "work",
            "tools/work.py",
            writes=["done"],
            for_each={"source": "$.items", "concurrency": 2},
        ),
        {
            "id": "describe",
            "kind": "agent",
            "prompt": "prompts/describe.md",
            "reads": ["done"],
            "writes": ["descriptions"],
            "for_each": {"source": "$.items", "concurrency": 2},
        },
        tool("total", "tools/total.py", reads=["done", "descriptions"], writes=["total"]),
    ]
    edges = [{"from": "work", "to": "describe"}, {"from": "describe", "to": "total"}]
    state = {
        "items": {"type": "array", "default": items},
        "done": {"type": "array", "merge": "array_append", "default": []},
        "descriptions": {"type": "array", "merge": "array_append", "default": []},
        "total": {"type": "integer"},
    }
    files = {
        "tools/work.py": SLEEPY_WORK,
        "tools/total.py": SLEEPY_TOTAL,
        "prompts/describe.md": "Describe {{ $item }}.",
    }
    return build(root, spec(nodes, edges, state=state), files)


def echo(body: dict) -> dict:
    return {"slow": 0.02, "text": "re: " + body["messages"][-1]["content"]}


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def succeeded_items(log: Path) -> set[tuple[str, int | None]]:
    return {
        (e["node_id"], e.get("item"))
        for e in read_events(log)
        if e["type"] == "node.finished" and "attempt" in e
    }


@pytest.mark.slow
def test_killed_at_20_random_moments_and_resumed_reaches_the_same_state_executing_nothing_twice(
    tmp_path, monkeypatch
):
    import contextlib
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    from evolve.errors import EvolveError
    from evolve.store.queries import RunQueries
    from loopback import LoopbackServer

    root = killable(tmp_path / "x")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    rng = random.Random(20261130)
    starter = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "forked_runs.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout.readline() == "ready\n"
    with LoopbackServer(respond=echo) as server, starter:
        reference_ws = tmp_path / "reference"
        monkeypatch.setenv("EVOLVE_TEST_COUNTS", str(tmp_path / "reference.txt"))
        options = RunOptions(model="openai/echo", api_base=server.base)
        reference = start_run(root, Workspace(reference_ws), options)
        assert reference.status == "success", reference.reason
        total_events = lines(reference.log_path)
        expected = reference.state

        resumed = 0
        for round_ in range(20):
            ws, counts = tmp_path / f"ws{round_}", tmp_path / f"counts{round_}.txt"
            counts.write_text("")
            target = rng.randint(2, total_events - 1)
            job = {"root": str(root), "workspace": str(ws), "api_base": server.base}
            job |= {"model": "openai/echo", "env": {"EVOLVE_TEST_COUNTS": str(counts)}}
            starter.stdin.write(json.dumps(job) + "\n")
            starter.stdin.flush()
            pid = int(starter.stdout.readline())
            log = ws / "runs"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                found = list(log.glob("*.jsonl")) if log.exists() else []
                if found and lines(found[0]) >= target:
                    break
                time.sleep(0.002)
            with contextlib.suppress(ProcessLookupError):  # gone if the run ended already
                os.kill(pid, signal.SIGKILL)
            status = int(starter.stdout.readline())  # once the starter has reaped it
            assert status in (0, signal.SIGKILL), f"the run ended with status {status}"
            (killed,) = log.glob("*.jsonl")
            done_before = succeeded_items(killed)
            asked_before = len(server.requests)
            monkeypatch.setenv("EVOLVE_TEST_COUNTS", str(counts))
            try:
                result = resume_run(killed.stem, Workspace(ws), RunOptions())
            except EvolveError as exc:  # the kill came after the run had succeeded
                assert "succeeded" in str(exc)
                store = StateStore.open(ws / "state.sqlite")
                assert RunQueries(store).final_state(killed.stem) == expected
                store.close()
                continue
            resumed += 1
            assert result.status == "success", result.reason
            store = StateStore.open(ws / "state.sqlite")
            assert RunQueries(store).final_state(result.run_id) == expected
            store.close()
            assert result.state == expected

            # nothing that had succeeded executed again: not a tool item, not a model request
            mine = str(os.getpid())
            again = {
                (name, None if index == "None" else int(index))
                for name, index, pid in (line.split() for line in executions(counts))
                if pid == mine
            }
            prompts = [r["messages"][-1]["content"] for r in server.requests[asked_before:]]
            again |= {("describe", int(p.split("Describe i")[1][0])) for p in prompts}
            assert again & done_before == set(), (round_, target)
            assert done_before <= reused(result.log_path)
            # and everything else did run, once
            assert len(again) + len(reused(result.log_path)) == 6 + 6 + 1
        starter.stdin.close()
        assert resumed >= 15


# -- a suite run ---------------------------------------------------------------------------------

SUITE_SPEC = """\
name: counter
version: 0.1.0
state:
  schema:
    n: {type: integer, default: 0}
    count: {type: integer, default: 0}
graph:
  nodes:
    - {id: add, kind: tool, impl: tools/add.py, reads: [n], writes: [count]}
evals:
  - {name: exact, expr: '$.count == $case.expect.count', required: true}
cases: {source: data/cases.jsonl}
"""
SUITE_ADD = COUNTED.format(
    name="add",
    body="""n = inputs["_state"]["n"]
    if str(n) == os.environ.get("EVOLVE_TEST_FAIL"):
        raise RuntimeError("boom")
    return {"state_delta": {"count": n + 1}}""",
)


def test_resuming_a_suite_reruns_only_the_cases_that_did_not_finish(tmp_path, counts, monkeypatch):
    from conftest import write_experience
    from evolve.evals.suite import SuiteOptions, run_suite

    cases = [
        {"id": c, "args": {"n": n}, "expect": {"count": n + 1}}
        for c, n in (("a1", 1), ("b2", 2), ("c3", 3))
    ]
    root = write_experience(
        tmp_path / "counter",
        SUITE_SPEC,
        {
            "tools/add.py": SUITE_ADD,
            "data/cases.jsonl": "".join(json.dumps(c) + "\n" for c in cases),
        },
    )
    ws = tmp_path / "ws"
    monkeypatch.setenv("EVOLVE_TEST_FAIL", "2")
    first = run_suite(root, Workspace(ws), SuiteOptions())
    assert first.status == "partial"
    assert [(c.case_id, c.passed) for c in first.cases] == [
        ("a1", True),
        ("b2", False),
        ("c3", True),
    ]
    monkeypatch.delenv("EVOLVE_TEST_FAIL")
    counts.write_text("")

    resumed = cli(ws, "resume", first.suite_id, "--json")
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "success" and summary["pass_rate"] == 1.0
    assert executions(counts) == ["add None"]  # only case b2's node ran again
    new_suite = summary["suite_id"]
    db = sqlite3.connect(ws / "state.sqlite")
    assert db.execute("select resumed_from from runs where id = ?", [new_suite]).fetchone() == (
        first.suite_id,
    )
    linked = db.execute(
        "select c.case_id, c.resumed_from = o.id from runs c join runs o on o.parent_run_id = ? "
        "and o.case_id = c.case_id where c.parent_run_id = ? order by c.case_id",
        [first.suite_id, new_suite],
    ).fetchall()
    assert linked == [("a1", 1), ("b2", 1), ("c3", 1)]
    db.close()
    from_suite = cli(ws, "run", str(root), "--from", new_suite)
    assert from_suite.exit_code == 2 and f"{new_suite} is a suite" in from_suite.output
    case_runs = [c["run_id"] for c in summary["cases"]]
    again = cli(ws, "resume", case_runs[0])
    assert again.exit_code == 1
    assert again.output.startswith(f"error: run {case_runs[0]} is a nested run of {new_suite}")


def test_the_command_line_says_what_runs_again_and_shows_reused_nodes(tmp_path, counts):
    root = experience(tmp_path / "x")
    ws = tmp_path / "ws"
    last = go(root, ws, EchoModel())
    (root / "tools" / "total.py").write_text(TOTAL + "\n# changed\n")
    result = CliRunner().invoke(
        app,
        ["run", str(root), "--from", last.run_id, "--workspace", str(ws)],
        env={"EVOLVE_MODEL": "fake/echo"},  # no model is asked: every agent result is reused
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    reused_line = next(line for line in lines if line.startswith("reused where"))
    assert set(reused_line.split(": ")[1].split(", ")) == {"work", "describe", "side"}
    assert "runs again: total (total: tools/total.py changed)" in lines
    assert "↺ work (" in result.output and "(3 reused)" in result.output
    assert f"↺ side (reused from {last.run_id})" in lines
    assert executions(counts)[-1] == "total None"


def test_inspect_names_a_cache_hit(tmp_path, counts):
    root = cached_experience(tmp_path / "x", True)
    ws = tmp_path / "ws"
    first = go(root, ws, None)
    second = go(root, ws, None)
    shown = cli(ws, "inspect", second.run_id)
    assert f"↺ item 0  cache hit from {first.run_id}" in shown.output
    assert "↺ work" in shown.output


def test_a_fan_out_hashes_its_shared_inputs_once_not_once_per_item(tmp_path, monkeypatch):
    """Every item's fingerprint covers the edge output it was given, but that value is the same
    object for every item: encoding it per item made fan-outs quadratic in their items."""
    import evolve.jsonvalue as jsonvalue

    items = 300
    encoded: list[int] = []
    canonical = jsonvalue.canonical
    monkeypatch.setattr(
        jsonvalue, "canonical", lambda v: encoded.append(len(t := canonical(v))) or t
    )
    path = build(
        tmp_path / "x",
        spec(
            [
                tool("load", "tools/load.py", writes=["numbers"]),
                tool("each", "tools/each.py", reads=["numbers"], for_each={"source": "$.numbers"}),
            ],
            [{"from": "load", "to": "each"}],
            state={"numbers": {"type": "array", "default": []}},
        ),
        {
            "tools/load.py": "def run(inputs):\n"
            f"    return {{'state_delta': {{'numbers': list(range({items}))}}}}\n",
            "tools/each.py": "def run(inputs):\n    return {'state_delta': {}}\n",
        },
    )
    assert start_run(path, Workspace(tmp_path / "ws"), RunOptions()).status == "success"
    shared = len(canonical({"load": {"numbers": list(range(items))}}))
    # once per distinct value (state and edge), plus a small per-item remainder; per-item
    # encoding of the shared list would be `items` times the list
    assert sum(encoded) < 4 * shared + items * 400, (sum(encoded), shared)


STABLE_SPEC = """name: stable
version: 0.1.0
state:
  schema:
    items: {type: array, default: [1, 2]}
graph:
  nodes:
    - {id: f, kind: tool, impl: tools/t.py, args: {a: 1, rows: [1, "é"]}}
  edges: []
"""


def test_fingerprints_stay_what_earlier_versions_kept_results_under(tmp_path):
    """Kept results are found by fingerprint: a change in how one is computed (not only in
    what it covers) would make every earlier result unreachable. These values were computed
    by the release before the fingerprint's computation was made faster."""
    from evolve.runtime.reuse import Reuse

    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "t.py").write_text("def run(inputs):\n    return {}\n")
    (tmp_path / "experience.yaml").write_text(STABLE_SPEC)
    experience = load_experience(tmp_path)
    node = experience.nodes["f"]
    reuse = Reuse(experience.name, experience.directory, lambda n: None)
    inputs = {
        "a": 1,
        "rows": [1, "é"],
        "_state": {"items": [1, 2]},
        "_edge_inputs": {"p": {"q": 1}},
        "$item": 7,
        "$index": 0,
    }
    assert reuse.print_of(node).digest == (
        "ad3153b9ead5920eaf3b846b1b6a3a73d2c928c3f633660233d6f35129d515d3"
    )
    assert reuse.fingerprint(node, inputs) == "fp:0b570bf16bf5b09e31de8fb643a177c3"


MUTATES = COUNTED.format(
    name="mutates",
    body="""inputs["$item"]["seen"] = True  # changes what it was given
    return {"state_delta": {}}""",
)


def test_a_tool_that_changes_its_inputs_keeps_its_result_under_the_inputs_it_was_given(
    tmp_path, counts
):
    node = tool("mutates", "tools/m.py", for_each={"source": "$.items"})
    state = {"items": {"type": "array", "default": [{"n": 1}, {"n": 2}]}}
    root = build(tmp_path / "x", spec([node], state=state), {"tools/m.py": MUTATES})
    ws = tmp_path / "ws"
    first = go(root, ws, None)
    second = go(root, ws, None, source=first.run_id)
    assert sorted(executions(counts)) == ["mutates 0", "mutates 1"]  # the second run reused both
    assert reused(second.log_path) == {("mutates", 0), ("mutates", 1)}


BIG = """
def run(inputs):
    return {"state_delta": {"big": list(range(300_000))}}
"""
CHANGES_EDGE = """
def run(inputs):
    inputs["$item"]["seen"] = True
    inputs["_edge_inputs"]["extra"] = 1
    return {"state_delta": {}}
"""


def test_a_tool_changing_inputs_that_take_long_to_hash_neither_breaks_nor_misses_reuse(tmp_path):
    """A large upstream value makes hashing the inputs let other threads run: the tool must not
    be running yet (its changes would enter the fingerprint, or break the hashing)."""
    nodes = [
        tool("make", "tools/make.py", writes=["big"]),
        tool("mut", "tools/mut.py", for_each={"source": "$.items", "concurrency": 1}),
    ]
    state = {"items": {"type": "array", "default": [{"n": 1}, {"n": 2}]}, "big": {"type": "array"}}
    document = spec(nodes, state=state)
    document["graph"]["edges"] = [{"from": "make", "to": "mut"}]
    root = build(tmp_path / "x", document, {"tools/make.py": BIG, "tools/mut.py": CHANGES_EDGE})
    ws = tmp_path / "ws"
    first = go(root, ws, None)
    assert first.status == "success", first.reason
    second = go(root, ws, None, source=first.run_id)
    assert second.status == "success", second.reason
    # item 0 ran on the inputs it was given (item 1's were changed by item 0's call: the edge
    # inputs are one object, shared by the items)
    assert ("mut", 0) in reused(second.log_path)
