"""`evolve propose`: planted problems give the expected proposals, and every diff really applies
(with `git apply`, in a git repository), validates and runs. LLM proposals are checked, repaired
once, or set aside, exactly as specified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.advisor.propose import propose
from evolve.cli import app
from evolve.llm.model import ModelError
from evolve.runtime.run import RunOptions, start_run
from evolve.spec import load_experience
from evolve.store.workspace import Workspace
from fakes import ScriptedModel
from helpers import build, events, git, repo_with, spec, tool

runner = CliRunner()


def run_once(exp: Path, tmp_path: Path, model=None):
    return start_run(exp, Workspace(tmp_path / "ws"), RunOptions(), model)


def apply_and_rerun(repo: Path, exp: Path, report, n: int, tmp_path: Path, model=None):
    diff = report.proposals[n].diff
    git(repo, "apply", "--check", stdin=diff)
    git(repo, "apply", stdin=diff)
    load_experience(exp)  # the patched experience validates
    return run_once(exp, tmp_path, model)


SLEEP = "import asyncio\n\nasync def run(i):\n    await asyncio.sleep(i.get('s', 0.15))\n"


def test_too_short_timeout_gets_raised(tmp_path):
    document = spec(
        [tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})], name="x"
    )
    repo, exp = repo_with(tmp_path, document, {"tools/slow.py": SLEEP})
    before = run_once(exp, tmp_path)
    assert before.status == "partial"
    report = propose(Workspace(tmp_path / "ws"), [before.run_id], no_llm=True)
    assert [(p.operation, p.title) for p in report.proposals] == [
        ("tune-param", "Raise timeout_ms of 'slow' from 100 to 200")
    ]
    proposal = report.proposals[0]
    assert proposal.confidence == "low"  # one occurrence in one run
    timeout_seq = events(before, "node.timeout")[0]["seq"]
    assert proposal.evidence == [f"{before.run_id}#{timeout_seq}"]
    assert "hit timeout_ms 100" in proposal.rationale
    assert proposal.diff == (
        "diff --git a/flows/x/experience.yaml b/flows/x/experience.yaml\n"
        "--- a/flows/x/experience.yaml\n+++ b/flows/x/experience.yaml\n"
        + proposal.diff.split("+++ b/flows/x/experience.yaml\n", 1)[1]
    )
    assert "-  - id: slow" not in proposal.diff  # only the changed line moves
    assert [line for line in proposal.diff.splitlines() if line.startswith(("+ ", "- "))] == [
        "-    timeout_ms: 100",
        "+    timeout_ms: 200",
    ]
    after = apply_and_rerun(repo, exp, report, 0, tmp_path)
    assert after.status == "success"


FLAKY_ITEMS = """
from pathlib import Path

def run(inputs):
    mark = Path(inputs["dir"]) / f"seen-{inputs['$index']}"
    if inputs["$index"] in (1, 3) and not mark.exists():
        mark.write_text("x")
        raise ConnectionError("connection reset by peer")
    return {"state_delta": {"out": [inputs["$item"]]}}
"""


def test_transient_errors_under_skip_get_a_retry(tmp_path):
    node = tool(
        "fetch",
        "tools/f.py",
        writes=["out"],
        args={"dir": str(tmp_path)},
        for_each={"source": "$.items"},
        on_error={"policy": "skip"},
    )
    document = spec(
        [node],
        name="x",
        state={
            "items": {"type": "array", "default": list(range(6))},
            "out": {"type": "array", "merge": "array_append", "default": []},
        },
    )
    repo, exp = repo_with(tmp_path, document, {"tools/f.py": FLAKY_ITEMS})
    before = run_once(exp, tmp_path)
    assert before.state["out"] == [0, 2, 4, 5]
    report = propose(Workspace(tmp_path / "ws"), ["last"], no_llm=True)
    assert [p.title for p in report.proposals] == ["Retry 'fetch' on transient errors"]
    assert report.proposals[0].confidence == "medium"
    assert "connection" in report.proposals[0].rationale
    for mark in tmp_path.glob("seen-*"):
        mark.unlink()
    after = apply_and_rerun(repo, exp, report, 0, tmp_path)
    assert after.status == "success" and after.state["out"] == [0, 1, 2, 3, 4, 5]
    assert "policy: retry" in (exp / "experience.yaml").read_text()


def test_serial_latency_bound_fan_out_gets_more_concurrency(tmp_path):
    node = tool(
        "fetch", "tools/s.py", args={"s": 0.05}, for_each={"source": "$.items", "concurrency": 1}
    )
    document = spec(
        [node], name="x", state={"items": {"type": "array", "default": list(range(12))}}
    )
    repo, exp = repo_with(tmp_path, document, {"tools/s.py": SLEEP})
    before = run_once(exp, tmp_path)
    report = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    assert [p.title for p in report.proposals] == ["Raise the concurrency of 'fetch' from 1 to 8"]
    assert "runtime.concurrency (4) rises with it" in report.proposals[0].rationale
    after = apply_and_rerun(repo, exp, report, 0, tmp_path)
    assert after.duration_ms < before.duration_ms / 2


RATE_LIMITED = """
from pathlib import Path

class TooManyRequests(Exception):
    status_code = 429

def run(inputs):
    mark = Path(inputs["dir"]) / f"rl-{inputs['$index']}"
    if inputs["$index"] % 2 == 0 and not mark.exists():
        mark.write_text("x")
        raise TooManyRequests("slow down")
    return {}
"""


def test_rate_limits_lower_the_concurrency(tmp_path):
    node = tool(
        "call",
        "tools/r.py",
        args={"dir": str(tmp_path)},
        for_each={"source": "$.items", "concurrency": 4},
        on_error={"policy": "retry", "attempts": 3, "base_ms": 1},
    )
    document = spec([node], name="x", state={"items": {"type": "array", "default": list(range(8))}})
    repo, exp = repo_with(tmp_path, document, {"tools/r.py": RATE_LIMITED})
    before = run_once(exp, tmp_path)
    assert before.status == "success"
    assert {e["error_type"] for e in events(before, "node.failed")} == {"rate_limit"}
    report = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    assert [(p.title, p.confidence) for p in report.proposals] == [
        ("Lower the concurrency of 'call' to 2", "high")
    ]
    after = apply_and_rerun(repo, exp, report, 0, tmp_path)
    assert after.status == "success"


def schema_document():
    node = {
        "id": "judge",
        "kind": "agent",
        "prompt": "prompts/j.md",
        "writes": ["verdict"],
        "on_error": {"policy": "skip"},
        "schema": {
            "type": "object",
            "required": ["verdict"],
            "properties": {"verdict": {"enum": ["ok", "bad"]}},
        },
    }
    return spec(
        [node], name="x", state={"verdict": {"type": "string"}}, runtime={"model": "fake/judge"}
    )


def test_repeated_schema_failures_get_a_retry(tmp_path):
    repo, exp = repo_with(tmp_path, schema_document(), {"prompts/j.md": "Judge."})
    before = run_once(exp, tmp_path, ScriptedModel([{"verdict": "meh"}, {"verdict": "hmm"}]))
    assert before.status == "partial"
    report = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    assert [p.title for p in report.proposals] == ["Retry 'judge' when its reply breaks the schema"]
    assert "'meh' is not one of" in report.proposals[0].rationale
    after = apply_and_rerun(
        repo,
        exp,
        report,
        0,
        tmp_path,
        ScriptedModel([{"verdict": "x"}, {"verdict": "y"}, {"verdict": "ok"}]),
    )
    assert after.status == "success" and after.state["verdict"] == "ok"


def test_cross_run_evidence_ranks_higher_and_names_the_runs(tmp_path):
    document = spec(
        [tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})], name="x"
    )
    _, exp = repo_with(tmp_path, document, {"tools/slow.py": SLEEP})
    first, second = run_once(exp, tmp_path), run_once(exp, tmp_path)
    report = propose(Workspace(tmp_path / "ws"), [], last=2, no_llm=True)
    assert report.run_ids == [second.run_id, first.run_id]
    proposal = report.proposals[0]
    assert proposal.confidence == "high"
    assert (
        f"Seen in 2 of 2 runs ({', '.join(sorted([first.run_id, second.run_id]))})"
        in proposal.rationale
    )


def test_report_files_and_the_diff_command(tmp_path):
    document = spec(
        [tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})], name="x"
    )
    repo, exp = repo_with(tmp_path, document, {"tools/slow.py": SLEEP})
    result = run_once(exp, tmp_path)
    ws = str(tmp_path / "ws")
    made = runner.invoke(app, ["propose", result.run_id, "--no-llm", "--workspace", ws])
    assert made.exit_code == 0, made.output
    md = tmp_path / "ws" / "evolution" / f"{result.run_id}.md"
    assert md.exists() and md.with_suffix(".json").exists()
    text = md.read_text()
    assert text.startswith(
        f"# Proposals for `x` from run `{result.run_id}`\n\nNothing here is applied automatically"
    )
    assert f"from `{repo.resolve()}` with `evolve diff {result.run_id} N | git apply`" in text
    assert (
        "## 1. Raise timeout_ms of 'slow' from 100 to 200 _(tune-param, confidence: low)_" in text
    )
    assert "_Deterministic proposals only (--no-llm)._" in text
    assert made.stdout.splitlines()[1] == (
        "  1. [tune-param, low] Raise timeout_ms of 'slow' from 100 to 200"
    )
    # a second propose writes a numbered file instead of overwriting
    again = runner.invoke(app, ["propose", result.run_id, "--no-llm", "--workspace", ws])
    assert again.exit_code == 0
    assert (tmp_path / "ws" / "evolution" / f"{result.run_id}-2.md").exists()
    diff = runner.invoke(app, ["diff", result.run_id[:5], "1", "--workspace", ws])
    assert diff.exit_code == 0
    git(repo, "apply", "--check", stdin=diff.stdout)
    bad = runner.invoke(app, ["diff", result.run_id, "9", "--workspace", ws])
    assert bad.exit_code == 2 and "has proposals 1..1, not 9" in bad.stderr


def test_applied_and_earlier_ideas_are_not_proposed_again(tmp_path):
    document = spec(
        [tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})], name="x"
    )
    repo, exp = repo_with(tmp_path, document, {"tools/slow.py": SLEEP})
    run_once(exp, tmp_path)
    ws = Workspace(tmp_path / "ws")
    first = propose(ws, [], no_llm=True)
    assert len(first.proposals) == 1
    pending = propose(ws, [], no_llm=True)  # asked again before any new run: same answer
    assert [p.title for p in pending.proposals] == [first.proposals[0].title]
    run_once(exp, tmp_path)  # ran again without applying it: rejected
    second = propose(ws, [], no_llm=True)
    assert second.proposals == []
    assert [(e.title, e.status) for e in second.repeated] == [
        ("Raise timeout_ms of 'slow' from 100 to 200", "rejected")
    ]
    assert "ran again without it" in second.markdown()
    git(repo, "apply", stdin=first.proposals[0].diff)
    third = propose(ws, [], no_llm=True)
    assert third.proposals == []  # the timeout now leaves the room the evidence asks for
    from evolve.advisor.ledger import earlier_proposals

    ledger = earlier_proposals(ws, exp.resolve(), repo.resolve(), "9999")
    assert {e.status for e in ledger if e.title.startswith("Raise timeout_ms")} == {"applied"}


# -- LLM proposals through the scripted fake model ---------------------------------------------

BASE_FILES = {
    "tools/load.py": "def run(i):\n    return {'state_delta': {'doc': 'text'}}\n",
    "prompts/sum.md": "Summarise: {{ doc }}\n",
}


def llm_experience(tmp_path):
    nodes = [
        tool("load", "tools/load.py", writes=["doc"]),
        {
            "id": "summarise",
            "kind": "agent",
            "prompt": "prompts/sum.md",
            "reads": ["doc"],
            "writes": ["summary"],
            "frozen": True,
        },
    ]
    document = spec(
        nodes,
        [{"from": "load", "to": "summarise"}],
        name="x",
        state={"doc": {"type": "string"}, "summary": {"type": "string"}},
        runtime={"model": "fake/m"},
    )
    return repo_with(tmp_path, document, BASE_FILES)


ADD_NODE = {
    "operation": "add-node",
    "title": "Check the summary",
    "confidence": "high",
    "rationale": "Nothing checks the summary.",
    "evidence": ["summary"],
    "edits": [
        {
            "file": "experience.yaml",
            "search": "    summary:\n      type: string\n",
            "replace": "    summary:\n      type: string\n    ok:\n      type: boolean\n",
        },
        {
            "file": "experience.yaml",
            "search": "  - from: load\n    to: summarise\n",
            "replace": "  - from: load\n    to: summarise\n  - from: summarise\n    to: check\n",
        },
        {
            "file": "experience.yaml",
            "search": "    frozen: true\n",
            "replace": "    frozen: true\n  - id: check\n    kind: agent\n"
            "    prompt: prompts/check.md\n"
            "    reads:\n    - summary\n    writes:\n    - ok\n"
            "    schema: {type: object, properties: {ok: {type: boolean}}}\n",
        },
        {"file": "prompts/check.md", "content": "Is this a faithful summary? {{ summary }}\n"},
    ],
}


def llm_propose(tmp_path, replies):
    exp_repo, exp = llm_experience(tmp_path)
    result = run_once(exp, tmp_path, ScriptedModel(["a summary"]))
    assert result.status == "success", result.reason
    model = ScriptedModel(replies)
    report = propose(Workspace(tmp_path / "ws"), [], model_client=model)
    return exp_repo, exp, report, model


def test_a_good_add_node_is_accepted_and_applies(tmp_path):
    repo, exp, report, model = llm_propose(tmp_path, [{"proposals": [ADD_NODE]}])
    assert len(model.calls) == 1
    assert model.calls[0].node_id == "advisor"
    sent = json.loads(model.calls[0].messages[1]["content"])
    assert sent["sources"]["prompts/sum.md"] == "Summarise: {{ doc }}\n"
    assert sent["evidence"]["runs"][0]["state_diff"][0]["field"] == "doc"
    [proposal] = report.proposals
    assert (proposal.operation, proposal.confidence, proposal.source) == ("add-node", "high", "llm")
    assert "new file mode 100644\n--- /dev/null\n+++ b/flows/x/prompts/check.md" in proposal.diff
    git(repo, "apply", stdin=proposal.diff)
    patched = load_experience(exp)
    assert "check" in patched.nodes and "ok" in patched.state


def bad(title, edits, **extra):
    return {
        "operation": extra.get("operation", "tune-param"),
        "title": title,
        "confidence": extra.get("confidence", "medium"),
        "rationale": "r",
        "evidence": extra.get("evidence", ["x"]),
        "edits": edits,
    }


DELETE = bad(
    "Drop load",
    [
        {
            "file": "experience.yaml",
            "search": "  - id: load\n    kind: tool\n    impl: tools/load.py\n"
            "    writes:\n    - doc\n",
            "replace": "",
        }
    ],
)
OUTSIDE = bad("Touch outside", [{"file": "../../README.md", "content": "hi"}])
FROZEN = bad(
    "Edit frozen",
    [
        {
            "file": "experience.yaml",
            "search": "    frozen: true\n",
            "replace": "    frozen: true\n    temperature: 0.2\n",
        }
    ],
)
MISSING = bad(
    "Missing search", [{"file": "experience.yaml", "search": "no such text", "replace": "x"}]
)
PROMPT = bad(
    "Reword", [{"file": "prompts/sum.md", "search": "Summarise", "replace": "Summarise briefly"}]
)


@pytest.mark.parametrize(
    "proposal, reason",
    [
        (DELETE, "the patched experience does not validate"),
        (OUTSIDE, "'../../README.md' is outside the experience directory"),
        (FROZEN, "it changes the frozen node 'summarise'"),
        (MISSING, "the search text does not occur in experience.yaml: 'no such text'"),
        (PROMPT, "it rewrites the prompt body prompts/sum.md"),
    ],
)
def test_bad_proposals_get_one_repair_round_then_the_appendix(tmp_path, proposal, reason):
    _, _, report, model = llm_propose(
        tmp_path, [{"proposals": [proposal]}, {"proposals": [proposal]}]
    )
    assert report.proposals == []
    assert len(model.calls) == 2  # the repair round happened, once
    assert reason in model.calls[1].messages[-1]["content"]
    assert [(r.title, reason in r.reason) for r in report.rejected] == [(proposal["title"], True)]
    assert f"- {proposal['title']}: " in report.markdown()


def test_deleting_a_node_is_refused_even_when_the_rest_validates(tmp_path):
    drop_edge_and_node = bad(
        "Drop summarise",
        [
            {
                "file": "experience.yaml",
                "search": "  - id: summarise\n",
                "replace": "  - id: summarise_gone\n",
            }
        ],
    )
    _, _, report, _ = llm_propose(tmp_path, [{"proposals": [drop_edge_and_node]}, "not json"])
    assert report.proposals == []
    assert any(
        "does not validate" in r.reason or "deletes node" in r.reason for r in report.rejected
    )


def test_a_failed_search_is_repaired_in_the_second_round(tmp_path):
    fixed = {**MISSING, "edits": ADD_NODE["edits"]}  # the same proposal, its edits mended
    _, _, report, _ = llm_propose(tmp_path, [{"proposals": [MISSING]}, {"proposals": [fixed]}])
    assert [p.title for p in report.proposals] == ["Missing search"]
    assert report.rejected == []


def test_what_the_repair_round_leaves_out_stays_in_the_appendix(tmp_path):
    _, _, report, _ = llm_propose(
        tmp_path, [{"proposals": [ADD_NODE, MISSING, OUTSIDE]}, {"proposals": []}]
    )
    assert [p.title for p in report.proposals] == ["Check the summary"]
    assert [
        (r.title, r.reason.endswith("(not sent again in the repair round)"))
        for r in report.rejected
    ] == [("Missing search", True), ("Touch outside", True)]


def test_unfreezing_a_frozen_node_is_refused(tmp_path):
    unfreeze = bad(
        "Unfreeze",
        [
            {
                "file": "experience.yaml",
                "search": "    frozen: true\n",
                "replace": "    frozen: false\n",
            }
        ],
    )
    _, _, report, _ = llm_propose(tmp_path, [{"proposals": [unfreeze]}, {"proposals": [unfreeze]}])
    assert report.proposals == []
    assert "it changes the frozen node 'summarise'" in report.rejected[0].reason


def test_a_reply_that_is_not_json_is_repaired_or_set_aside(tmp_path):
    _, _, repaired, _ = llm_propose(
        tmp_path, ["Sure! Here are my ideas...", {"proposals": [ADD_NODE]}]
    )
    assert [p.title for p in repaired.proposals] == ["Check the summary"]
    _, _, failed, model = llm_propose(tmp_path / "again", ["nope", "still nope"])
    assert failed.proposals == []
    assert "the reply is not JSON" in model.calls[1].messages[-1]["content"]
    # nothing usable came back: a failure of the model advisor, never "nothing to change"
    assert failed.rejected == []
    assert failed.llm_failure.startswith("the model's reply could not be used: the reply is not")
    assert "nor could its repair" in failed.llm_failure
    text = failed.path.read_text()
    assert "**The model advisor failed:** the model's reply could not be used" in text
    assert "No proposal: the model advisor failed (see above)." in text
    assert "nothing to change" not in text
    assert [c["reply"] for c in failed.llm_calls] == ["nope", "still nope"]


def test_a_model_error_never_crashes_propose(tmp_path):
    _, _, report, _ = llm_propose(tmp_path, [ModelError("down", "server_error")])
    assert report.proposals == [] and report.rejected == []
    assert report.llm_failure == "down"
    assert report.llm_fix.startswith("the model server failed")
    assert report.llm_calls[0]["error_type"] == "server_error"
    saved = json.loads(report.path.with_suffix(".json").read_text())
    assert saved["llm_failure"] == {"reason": "down", "fix": report.llm_fix}


def test_no_evidence_no_high_and_more_than_five_are_cut(tmp_path):
    many = []
    for i in range(7):
        many.append(
            {
                "operation": "add-dataset-case",
                "title": f"Case {i}",
                "confidence": "high",
                "rationale": "more data",
                "evidence": [] if i == 0 else [f"r#{i}"],
                "edits": [{"file": f"data/case{i}.json", "content": f'{{"n": {i}}}\n'}],
            }
        )
    _, _, report, _ = llm_propose(tmp_path, [{"proposals": many}])
    assert len(report.proposals) == 5
    assert [p.confidence for p in report.proposals] == ["high"] * 5
    cut = [r for r in report.rejected if r.reason.startswith("cut:")]
    assert len(cut) == 2
    assert "Case 0" in [r.title for r in cut]  # it cited nothing, so it ranked last (medium)


def test_offline_without_an_advisor_reply_is_deterministic_only(tmp_path):
    document = spec(
        [tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})], name="x"
    )
    _, exp = repo_with(tmp_path, document, {"tools/slow.py": SLEEP})
    run_once(exp, tmp_path)
    report = propose(Workspace(tmp_path / "ws"), [], offline=True)
    assert report.llm is None and report.rejected == []
    assert report.llm_note.startswith(
        "Deterministic proposals only: the experience's cassettes hold no reply for the advisor"
    )
    assert [p.title for p in report.proposals] == ["Raise timeout_ms of 'slow' from 100 to 200"]


def test_a_cassette_miss_is_not_retried(tmp_path):
    node = {
        "id": "ask",
        "kind": "agent",
        "prompt": "p.md",
        "writes": ["t"],
        "on_error": {"policy": "retry", "attempts": 3, "base_ms": 2000},
    }
    other = '{"node": "other", "response": {"text": "x"}}\n'  # a cassette, with nothing for ask
    files = {"p.md": "hi", "cassettes/other.jsonl": other}
    exp = build(tmp_path / "x", spec([node], state={"t": {"type": "string"}}), files)
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions(offline=True))
    assert result.status == "failed"
    assert [e["error_type"] for e in events(result, "node.failed")] == ["cassette_miss"]
    assert events(result, "node.retry") == []
    assert "failed after 1 attempt" in result.reason
    assert '{"node": "ask", "response": {"text": "..."}}' in result.reason


def test_an_experience_at_the_root_of_its_repository(tmp_path):
    document = spec(
        [tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})], name="x"
    )
    repo = build(tmp_path / "repo", document, {"tools/slow.py": SLEEP})
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    run_once(repo, tmp_path)
    report = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    assert report.rejected == []
    assert report.proposals[0].diff.startswith("diff --git a/experience.yaml b/experience.yaml\n")
    git(repo, "apply", "--check", stdin=report.proposals[0].diff)


SLOW_ONCE = """
import asyncio
from pathlib import Path

async def run(i):
    mark = Path(__file__).with_name("ran")
    if not mark.exists():  # slow the first time only: a busy machine cannot fail the rerun
        mark.write_text("x")
        await asyncio.sleep(0.15)
"""


def test_old_timeouts_under_a_lower_limit_do_not_propose_again(tmp_path):
    document = spec(
        [tool("slow", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})], name="x"
    )
    repo, exp = repo_with(tmp_path, document, {"tools/slow.py": SLOW_ONCE})
    run_once(exp, tmp_path)
    first = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    git(repo, "apply", stdin=first.proposals[0].diff)  # 100 -> 200
    run_once(exp, tmp_path)  # no timeout any more
    pooled = propose(Workspace(tmp_path / "ws"), [], last=2, no_llm=True)
    assert pooled.proposals == []


def _counted(monkeypatch, module, name: str) -> list[str]:
    """Calls of `module.name`, by their first argument."""
    calls: list[str] = []
    real = getattr(module, name)

    def counting(first, *args, **kwargs):
        calls.append(str(first))
        return real(first, *args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def test_propose_loads_and_parses_each_distinct_experience_once(tmp_path, monkeypatch):
    import evolve.advisor.diffs as diffs
    import evolve.advisor.propose as propose_module
    import evolve.spec.loader as loader

    nodes = [
        tool(f"slow{i}", "tools/slow.py", timeout_ms=100, on_error={"policy": "skip"})
        for i in range(3)
    ]
    repo, exp = repo_with(tmp_path, spec(nodes, name="x"), {"tools/slow.py": SLEEP})
    before = run_once(exp, tmp_path)
    loads = _counted(monkeypatch, propose_module, "load_experience")
    patched_loads = _counted(monkeypatch, diffs, "load_experience")
    parses = _counted(monkeypatch, loader, "parse_yaml")
    parses += _counted(monkeypatch, diffs, "parse_yaml")
    report = propose(Workspace(tmp_path / "ws"), [before.run_id], no_llm=True)
    assert len(report.proposals) == 3  # each one raises one node's timeout
    assert len(loads) == 1
    assert len(patched_loads) == 3  # one per distinct patched experience.yaml
    assert len(parses) == 4  # the experience's text and each patched text, once each
    for n in range(3):  # and every diff still applies and validates
        git(repo, "apply", "--check", stdin=report.proposals[n].diff)


def test_a_patch_reloads_only_when_loading_could_change(tmp_path, monkeypatch):
    import evolve.advisor.diffs as diffs
    from evolve.advisor.diffs import ProposalChecker

    document = spec([tool("a", "tools/a.py")], name="x")
    exp = build(tmp_path / "x", document, {"tools/a.py": SLEEP, "notes.md": "notes\n"})
    checker = ProposalChecker(load_experience(exp), exp)
    reloads = _counted(monkeypatch, diffs, "load_experience")

    def check(files: dict[str, str]) -> bool:
        return checker.check(files, checker.diff(files)).ok

    assert check({"notes.md": "more notes\n"})  # referenced by nothing: nothing to reload
    assert reloads == []
    assert check({"tools/a.py": SLEEP + "\n# tuned\n"})  # a referenced file
    assert check({"prompts/new.md": "a new file\n"})  # a new path can change what exists
    assert len(reloads) == 2
    assert check({"notes.md": "more notes\n"})  # the same diff again: checked once
    broken = (exp / "experience.yaml").read_text().replace("tools/a.py", "tools/gone.py")
    assert not check({"experience.yaml": broken})  # the patched copy must still validate
    assert len(reloads) == 3


def test_evidence_lists_what_it_saw_in_log_order_with_each_timeout_beside_its_limit():
    """Items finish out of order; the model advisor's request keeps the first ten of each list,
    so they must be the first ten in the log."""
    from evolve.advisor.evidence import NodeEvidence, Ref

    node = NodeEvidence("work")
    for seq, limit in [(40, 400), (12, 120), (31, 310)]:
        node.timeouts.append(Ref("r-b", seq))
        node.timeout_limits.append(limit)
    node.timeouts.append(Ref("r-a", 90))
    node.timeout_limits.append(900)
    node.failures["timeout"] = [Ref("r-b", 40), Ref("r-a", 90), Ref("r-b", 12)]
    node.exhausted = [(Ref("r-b", 31), "timeout"), (Ref("r-b", 12), "timeout")]
    node.put_in_order()
    summary = node.summary()
    assert summary["timeouts"] == ["r-a#90", "r-b#12", "r-b#31", "r-b#40"]
    assert node.timeout_limits == [900, 120, 310, 400]
    assert summary["failures"]["timeout"]["seqs"] == ["r-a#90", "r-b#12", "r-b#40"]
    assert [e["at"] for e in summary["exhausted"]] == ["r-b#12", "r-b#31"]
