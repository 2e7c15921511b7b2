"""`evolve propose --verify`: planted flaws of each kind, each experience in tmp_path inside a git
repository. The original and the next run are separate `evolve run` processes (as a user runs
them); the emitted top proposal is applied with real `git apply`, and the next run is better.
A candidate that makes the run worse is in the appendix, not the list; the timeout search ends
at a value that works; a healthy experience gets no medium or high proposal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.advisor.propose import propose
from evolve.advisor.verify import Health, VerifyOptions, judge
from evolve.cli import app
from evolve.llm.model import ModelReply, ModelRequest
from evolve.spec import load_experience
from evolve.store.queries import RunQueries, open_store
from evolve.store.workspace import Workspace
from fakes import ScriptedModel
from helpers import git, max_in_flight, repo_with, spec, tool

runner = CliRunner()
pytestmark = pytest.mark.slow  # each test starts `evolve run` processes, as a user does


def evolve_run(exp: Path, tmp_path: Path, *extra: str) -> dict:
    """`evolve run` in its own process; the run's row from the state store."""
    ws = tmp_path / "ws"
    subprocess.run(
        [sys.executable, "-m", "evolve", "run", str(exp), "--workspace", str(ws), *extra],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    store = open_store(Workspace(ws))
    try:
        return RunQueries(store).resolve("last")
    finally:
        store.close()


def verified(tmp_path: Path, **options) -> object:
    return propose(
        Workspace(tmp_path / "ws"),
        ["last"],
        no_llm=options.pop("no_llm", True),
        verify=VerifyOptions(**options.pop("verify", {})),
        **options,
    )


def apply_top(repo: Path, exp: Path, report) -> None:
    diff = report.proposals[0].diff
    git(repo, "apply", "--check", stdin=diff)
    git(repo, "apply", stdin=diff)
    load_experience(exp)  # the patched experience validates


def problems(row: dict, tmp_path: Path) -> tuple[str, int]:
    """(status, timeouts + failed attempts) of a run."""
    from evolve.store.log import read_events
    from evolve.view import fold

    view = fold(read_events(Workspace(tmp_path / "ws").log_path(row["id"])), None)
    return view.status, len(view.failures)


SLEEP = "import asyncio\n\nasync def run(i):\n    await asyncio.sleep(i.get('s', 0.15))\n"


def test_a_timeout_no_attempt_finished_under_is_searched_until_a_value_works(tmp_path):
    node = tool("slow", "tools/slow.py", timeout_ms=150, args={"s": 0.35})
    node["on_error"] = {"policy": "skip"}
    repo, exp = repo_with(tmp_path, spec([node], name="x"), {"tools/slow.py": SLEEP})
    before = evolve_run(exp, tmp_path)
    assert before["status"] == "partial"
    report = verified(tmp_path)
    top = report.proposals[0]
    assert top.title == "Raise timeout_ms of 'slow' from 150 to 600"
    line = top.verification.line()
    assert line.startswith("Verified by re-running: partial -> success, failed nodes 1 -> 0")
    assert "tried 300: partial, timeouts 1; 600: success, timeouts 0 (works)" in line
    assert top.confidence == "high"  # the status improved
    assert line in report.path.read_text()
    twin = json.loads(report.path.with_suffix(".json").read_text())["proposals"][0]
    assert twin["verification"]["baseline"]["timeouts"] == 1
    assert twin["verification"]["patched"]["timeouts"] == 0
    assert twin["verification"]["delta"]["timeouts"] == -1
    assert "+    timeout_ms: 600" in top.diff
    apply_top(repo, exp, report)
    after = evolve_run(exp, tmp_path)
    assert after["status"] == "success"


def test_without_verify_a_guessed_timeout_says_it_is_a_lower_bound(tmp_path):
    node = tool("slow", "tools/slow.py", timeout_ms=100, args={"s": 0.35})
    node["on_error"] = {"policy": "skip"}
    _, exp = repo_with(tmp_path, spec([node], name="x"), {"tools/slow.py": SLEEP})
    evolve_run(exp, tmp_path)
    report = propose(Workspace(tmp_path / "ws"), ["last"], no_llm=True)
    [proposal] = report.proposals
    assert proposal.title == "Raise timeout_ms of 'slow' from 100 to 200"
    assert "only a lower bound" in proposal.rationale and "--verify" in proposal.rationale
    assert proposal.verification is None


def test_successful_attempts_across_runs_set_the_timeout_not_the_censored_ones(tmp_path):
    node = tool("slow", "tools/slow.py", timeout_ms=1000, args={"s": 0.3})
    node["on_error"] = {"policy": "skip"}
    _repo, exp = repo_with(tmp_path, spec([node], name="x"), {"tools/slow.py": SLEEP})
    first = evolve_run(exp, tmp_path)  # finishes in ~300 ms: a real observation
    assert first["status"] == "success"
    text = (exp / "experience.yaml").read_text().replace("timeout_ms: 1000", "timeout_ms: 200")
    (exp / "experience.yaml").write_text(text)
    evolve_run(exp, tmp_path)  # now it is cut at 200 ms
    report = propose(Workspace(tmp_path / "ws"), [], last=2, no_llm=True)
    [proposal] = report.proposals
    assert "successful attempts took up to" in proposal.rationale
    assert "lower bound" not in proposal.rationale


def test_fast_items_beside_timed_out_ones_do_not_pretend_to_measure_the_slow_work(tmp_path):
    """Items that finished in 1 ms say nothing about the ones cut at the limit: the proposal
    doubles the limit they hit and says so, not 'twice the room' of the fast ones."""
    node = tool("work", "tools/w.py", timeout_ms=200, for_each={"source": "$.items"})
    node["on_error"] = {"policy": "skip"}
    document = spec([node], name="x", state={"items": {"type": "array", "default": [0, 0, 0.35]}})
    sleepy = "import asyncio\n\nasync def run(i):\n    await asyncio.sleep(i['$item'])\n"
    _repo, exp = repo_with(tmp_path, document, {"tools/w.py": sleepy})
    evolve_run(exp, tmp_path)
    report = propose(Workspace(tmp_path / "ws"), ["last"], no_llm=True)
    [proposal] = report.proposals
    assert proposal.title == "Raise timeout_ms of 'work' from 200 to 400"
    assert "twice the room" not in proposal.rationale
    assert "needed more than 200 ms" in proposal.rationale
    assert "twice the limit they hit" in proposal.rationale


FLAKY_HTTP = """
import httpx

SEEN = set()

def run(inputs):
    i = inputs["$index"]
    if i in (1, 3) and i not in SEEN:  # each item's first call in this process fails
        SEEN.add(i)
        raise httpx.ConnectError("[Errno 104] Connection reset by peer")
    return {"state_delta": {"out": [inputs["$item"]]}}
"""


def flaky_document() -> dict:
    node = tool("fetch", "tools/f.py", writes=["out"], for_each={"source": "$.items"})
    node["on_error"] = {"policy": "skip"}
    return spec(
        [node],
        name="x",
        state={
            "items": {"type": "array", "default": list(range(6))},
            "out": {"type": "array", "merge": "array_append", "default": []},
        },
    )


def test_httpx_connection_errors_are_transient_and_the_retry_is_verified(tmp_path):
    repo, exp = repo_with(tmp_path, flaky_document(), {"tools/f.py": FLAKY_HTTP})
    before = evolve_run(exp, tmp_path)
    assert problems(before, tmp_path) == ("partial", 2)
    report = verified(tmp_path)
    top = report.proposals[0]
    assert top.title == "Retry 'fetch' on transient errors"
    assert "connection" in top.rationale
    assert top.verification.line().startswith(
        "Verified by re-running: partial -> success, failed items 2 -> 0"
    )
    apply_top(repo, exp, report)
    after = evolve_run(exp, tmp_path)
    assert after["status"] == "success"


SCHEMA_NODE = {
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


def schema_experience(tmp_path: Path, **node_fields) -> tuple[Path, Path]:
    document = spec(
        [{**SCHEMA_NODE, **node_fields}],
        name="x",
        state={"verdict": {"type": "string"}},
        runtime={"model": "fake/judge"},
    )
    return repo_with(tmp_path, document, {"prompts/j.md": "Judge."})


def in_process_run(exp: Path, tmp_path: Path, model) -> str:
    from evolve.runtime.run import RunOptions, start_run

    return start_run(exp, Workspace(tmp_path / "ws"), RunOptions(), model).run_id


def test_the_same_schema_violation_twice_gets_no_retry(tmp_path):
    _, exp = schema_experience(tmp_path)
    in_process_run(exp, tmp_path, ScriptedModel([{"verdict": "meh"}, {"verdict": "meh"}]))
    report = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    assert report.proposals == []
    assert report.proposals == [] and "schema_repeated" not in report.markdown()


def test_a_retry_for_a_schema_violation_that_repeats_is_not_better_when_verified(tmp_path):
    # the violation differs between the first reply and the repair, so a retry is proposed;
    # verification answers the re-run from the run's own records: the same replies, no gain
    _, exp = schema_experience(tmp_path)
    in_process_run(exp, tmp_path, ScriptedModel([{"verdict": "meh"}, {"verdict": "hmm"}]))
    report = verified(tmp_path)
    [proposal] = report.proposals
    assert proposal.title == "Retry 'judge' when its reply breaks the schema"
    assert proposal.confidence == "low"
    assert proposal.verification.verdict == "same"
    assert "no new model calls" in proposal.verification.line()


class CutModel:
    """Replies cut at max_tokens: the provider says finish_reason `length`."""

    async def complete(self, request: ModelRequest) -> ModelReply:
        return ModelReply(text='{"verdict": "o', model=request.model, finish_reason="length")


def test_replies_cut_at_max_tokens_raise_it_and_new_calls_need_a_model(tmp_path):
    _repo, exp = schema_experience(tmp_path, max_tokens=16)
    run_id = in_process_run(exp, tmp_path, CutModel())
    from evolve.store.log import read_events

    calls = [
        e
        for e in read_events(Workspace(tmp_path / "ws").log_path(run_id))
        if e["type"] == "llm.call"
    ]
    assert {c["finish_reason"] for c in calls} == {"length"}
    report = verified(tmp_path)
    top = report.proposals[0]
    assert top.title == "Raise max_tokens of 'judge' to 32"
    assert "finish reason `length`" in top.rationale
    # the request changes (max_tokens is part of it): no recorded reply, no model, no cassette
    assert top.verification.verdict == "unverified"
    assert top.verification.missing_calls >= 1
    assert top.verification.line().startswith("Not verified: ")
    assert "could not be made" in top.verification.line()
    assert top.confidence == "low"
    # with --offline and a cassette line for the node, the new call is answered: verified
    (exp / "cassettes").mkdir()
    (exp / "cassettes" / "j.jsonl").write_text(
        json.dumps({"node": "judge", "response": {"json": {"verdict": "ok"}}}) + "\n"
    )
    report = verified(tmp_path, verify={"offline": True})
    top = report.proposals[0]
    assert top.title == "Raise max_tokens of 'judge' to 32"
    assert top.verification.verdict == "better"
    assert "partial -> success" in top.verification.line()
    assert "new model call" in top.verification.line()


def two_nodes() -> dict:
    slow = tool("slow", "tools/slow.py", timeout_ms=200, args={"s": 0.25})
    slow["on_error"] = {"policy": "skip"}
    fine = tool("fine", "tools/slow.py", args={"s": 0.05})
    return spec([slow, fine], name="x")


HARMFUL = {
    "operation": "tune-param",
    "title": "Tighten the timeout of 'fine'",
    "confidence": "high",
    "rationale": "It should be fast.",
    "evidence": ["fine"],
    "edits": [
        {
            "file": "experience.yaml",
            "search": "  - id: fine\n    kind: tool\n    impl: tools/slow.py\n",
            "replace": "  - id: fine\n    kind: tool\n    impl: tools/slow.py\n"
            "    timeout_ms: 10\n",
        }
    ],
}


def test_a_candidate_that_makes_the_run_worse_goes_to_the_appendix(tmp_path):
    repo, exp = repo_with(tmp_path, two_nodes(), {"tools/slow.py": SLEEP})
    evolve_run(exp, tmp_path)
    advisor = ScriptedModel([{"proposals": [HARMFUL]}])
    report = verified(tmp_path, no_llm=False, model_client=advisor)
    titles = [p.title for p in report.proposals]
    assert "Tighten the timeout of 'fine'" not in titles
    assert titles[0] == "Raise timeout_ms of 'slow' from 200 to 400"
    [worse] = [r for r in report.rejected if r.title == "Tighten the timeout of 'fine'"]
    assert worse.reason.startswith("made the run worse when re-run: partial -> failed")
    assert "- Tighten the timeout of 'fine': made the run worse" in report.markdown()
    apply_top(repo, exp, report)
    assert evolve_run(exp, tmp_path)["status"] == "success"


NEUTRAL = {
    "operation": "tune-param",
    "title": "Give 'fine' a description",
    "confidence": "high",
    "rationale": "Readers benefit.",
    "evidence": ["fine"],
    "edits": [
        {
            "file": "experience.yaml",
            "search": "  - id: fine\n    kind: tool\n",
            "replace": "  - id: fine\n    kind: tool\n    description: waits a little\n",
        }
    ],
}


def test_a_healthy_experience_gets_no_medium_or_high_proposal(tmp_path):
    fine = tool("fine", "tools/slow.py", args={"s": 0.02})
    _, exp = repo_with(tmp_path, spec([fine], name="x"), {"tools/slow.py": SLEEP})
    assert evolve_run(exp, tmp_path)["status"] == "success"
    advisor = ScriptedModel([{"proposals": [NEUTRAL]}])
    report = verified(tmp_path, no_llm=False, model_client=advisor)
    assert [p.title for p in report.proposals] == ["Give 'fine' a description"]
    assert {p.confidence for p in report.proposals} == {"low"}  # it claimed high: no effect
    assert report.proposals[0].verification.verdict == "same"


def test_duplicates_are_dropped_by_what_they_change_and_listed(tmp_path):
    _repo, exp = repo_with(tmp_path, two_nodes(), {"tools/slow.py": SLEEP})
    evolve_run(exp, tmp_path)
    same_param = {
        **HARMFUL,
        "title": "Fix: timeout",
        "confidence": "low",
        "edits": [
            {
                "file": "experience.yaml",
                "search": "    timeout_ms: 200\n",
                "replace": "    timeout_ms: 300\n",
            }
        ],
    }
    also = {**same_param, "title": "Fix: timeout", "edits": [{**same_param["edits"][0]}]}
    also["edits"][0]["replace"] = "    timeout_ms: 250\n"
    advisor = ScriptedModel([{"proposals": [same_param, also]}])
    report = propose(Workspace(tmp_path / "ws"), [], model_client=advisor)
    assert [p.title for p in report.proposals] == ["Raise timeout_ms of 'slow' from 200 to 400"]
    dropped = [r for r in report.rejected if r.title == "Fix: timeout"]
    assert len(dropped) == 2
    assert all(
        "a duplicate: it changes experience.yaml slow timeout_ms" in r.reason for r in dropped
    )


def test_frozen_nodes_are_never_touched_even_when_they_fail(tmp_path):
    node = tool("slow", "tools/slow.py", timeout_ms=100, frozen=True)
    node["on_error"] = {"policy": "skip"}
    _, exp = repo_with(tmp_path, spec([node], name="x"), {"tools/slow.py": SLEEP})
    evolve_run(exp, tmp_path)
    report = verified(tmp_path)
    assert report.proposals == []


CPU_BOUND = """
def run(inputs):
    total = 0
    for n in range(1_000_000):
        total += n * n
    return {}
"""


def test_a_fan_out_that_computes_gets_no_concurrency_proposal(tmp_path):
    node = tool("crunch", "tools/c.py", for_each={"source": "$.items", "concurrency": 1})
    document = spec([node], name="x", state={"items": {"type": "array", "default": [0] * 8}})
    _, exp = repo_with(tmp_path, document, {"tools/c.py": CPU_BOUND})
    row = evolve_run(exp, tmp_path)
    assert row["status"] == "success"
    from evolve.store.log import read_events

    finished = [
        e
        for e in read_events(Workspace(tmp_path / "ws").log_path(row["id"]))
        if e["type"] == "node.finished" and e.get("attempt")
    ]
    assert all(e["cpu_ms"] > 0 for e in finished)
    report = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    assert report.proposals == []


def test_a_fan_out_that_waits_gets_a_verified_concurrency_proposal(tmp_path):
    node = tool("fetch", "tools/s.py", args={"s": 0.05}, for_each={"source": "$.items"})
    node["for_each"]["concurrency"] = 1
    document = spec([node], name="x", state={"items": {"type": "array", "default": [0] * 12}})
    repo, exp = repo_with(tmp_path, document, {"tools/s.py": SLEEP})
    evolve_run(exp, tmp_path)
    report = verified(tmp_path)
    top = report.proposals[0]
    assert top.title == "Raise the concurrency of 'fetch' from 1 to 8"
    assert top.verification.verdict == "better"
    assert "success as before" in top.verification.line()
    assert top.confidence == "medium"  # measured: at least twice as fast
    assert "8 is a guess" in top.rationale
    apply_top(repo, exp, report)
    after = evolve_run(exp, tmp_path)
    from evolve.store.log import read_events

    log = list(read_events(Workspace(tmp_path / "ws").log_path(after["id"])))
    assert after["status"] == "success" and max_in_flight(log, "fetch") > 1


def test_the_verify_budget_leaves_the_rest_unverified(tmp_path):
    _repo, exp = repo_with(tmp_path, two_nodes(), {"tools/slow.py": SLEEP})
    evolve_run(exp, tmp_path)
    report = verified(tmp_path, verify={"budget": 0 + 1})
    [top] = report.proposals
    assert top.verification.verdict == "better"  # the one re-run it had was enough
    advisor = ScriptedModel([{"proposals": [NEUTRAL]}])
    report = verified(tmp_path, verify={"budget": 1}, no_llm=False, model_client=advisor)
    verdicts = [p.verification.verdict for p in report.proposals]
    assert len(verdicts) == 2 and verdicts.count("unverified") == 1
    assert verdicts[-1] == "unverified"  # measured ones rank first
    [unverified] = [p for p in report.proposals if p.verification.verdict == "unverified"]
    assert unverified.confidence == "low"
    assert "--verify-budget of 1 re-runs was spent" in unverified.verification.line()


def test_the_cli_shows_the_verified_line_and_documents_that_tools_run_again(tmp_path):
    node = tool("slow", "tools/slow.py", timeout_ms=200, args={"s": 0.25})
    node["on_error"] = {"policy": "skip"}
    _, exp = repo_with(tmp_path, spec([node], name="x"), {"tools/slow.py": SLEEP})
    evolve_run(exp, tmp_path)
    result = runner.invoke(
        app, ["propose", "--verify", "--no-llm", "--workspace", str(tmp_path / "ws")]
    )
    assert result.exit_code == 0, result.output
    assert "Verified by re-running: partial -> success" in result.output
    help_text = runner.invoke(app, ["propose", "--help"]).output
    assert "Tools run again" in " ".join(help_text.split())


def test_judge_ranks_status_then_score_then_problems():
    base = Health("partial", timeouts=2, score=0.5)
    assert judge(base, Health("success", score=0.5))[0] == "better"
    assert judge(base, Health("failed", score=0.9))[0] == "worse"
    assert judge(base, Health("partial", timeouts=2, score=0.4))[0] == "worse"
    assert judge(base, Health("partial", timeouts=1, score=0.5))[0] == "better"
    assert judge(base, Health("partial", timeouts=2, score=0.5))[0] == "same"
    assert judge(base, Health("partial", timeouts=2, retries=4, score=0.5))[0] == "same"


SUITE_SPEC = """\
name: x
version: 0.1.0
state:
  schema:
    n: {type: integer, default: 0}
    count: {type: integer, default: 0}
graph:
  nodes:
    - id: add
      kind: tool
      impl: tools/add.py
      reads: [n]
      writes: [count]
      timeout_ms: 300
      on_error: {policy: skip}
evals:
  - {name: exact, expr: '$.count == $case.expect.count'}
cases: {source: data/cases.jsonl}
"""
SLOW_ADD = """\
import time

def run(inputs):
    n = inputs["_state"]["n"]
    time.sleep(n * 0.08)  # n = 4 and 5 need longer than the limit
    return {"state_delta": {"count": n + 1}}
"""


def test_a_suite_is_re_run_case_by_case_and_scored_with_the_paired_interval(tmp_path):
    cases = "".join(
        json.dumps({"id": f"c{n}", "args": {"n": n}, "expect": {"count": n + 1}}) + "\n"
        for n in (1, 2, 4, 5)
    )
    repo, exp = repo_with(
        tmp_path,
        SUITE_SPEC,
        {"tools/add.py": SLOW_ADD, "data/cases.jsonl": cases},
    )
    ws = tmp_path / "ws"
    subprocess.run(
        [sys.executable, "-m", "evolve", "eval", str(exp), "--workspace", str(ws)],
        capture_output=True,
        cwd=tmp_path,
    )
    report = verified(tmp_path)
    top = report.proposals[0]
    assert top.title == "Raise timeout_ms of 'add' from 300 to 600"
    line = top.verification.line()
    assert "score 0.50 -> 1.00 over 4 cases" in line, line
    assert top.verification.verdict == "better" and top.confidence == "high"
    assert top.verification.to_json()["delta"]["score"] == 0.5
    assert report.verified["reruns"] == 4  # one re-run per case
    apply_top(repo, exp, report)
    after = subprocess.run(
        [sys.executable, "-m", "evolve", "eval", str(exp), "--workspace", str(ws), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert json.loads(after.stdout)["score"] == 1.0


FAILS_FOUR_TIMES = """
import errno

CALLS = []

def run(inputs):
    CALLS.append(1)  # a new module each run: each run's first four calls fail
    if len(CALLS) <= 4:
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    return {}
"""


def test_attempts_are_searched_until_a_count_works(tmp_path):
    node = tool("flaky", "tools/f.py")
    node["on_error"] = {"policy": "retry", "attempts": 2, "base_ms": 10, "then": "skip"}
    repo, exp = repo_with(tmp_path, spec([node], name="x"), {"tools/f.py": FAILS_FOUR_TIMES})
    assert evolve_run(exp, tmp_path)["status"] == "partial"
    plain = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    [guess] = plain.proposals
    assert guess.title == "Give 'flaky' 4 attempts and a 20 ms backoff"
    assert "it needs more than 2 (a lower bound" in guess.rationale
    assert "4 is a guess" in guess.rationale and "--verify" in guess.rationale
    report = verified(tmp_path)
    top = report.proposals[0]
    assert top.title == "Give 'flaky' 6 attempts and a 20 ms backoff"
    line = top.verification.line()
    assert line.startswith("Verified by re-running: partial -> success"), line
    assert "tried 4 attempts: partial" in line
    assert "6 attempts: success, failed nodes 0, failed items 0 (works)" in line
    assert "+      attempts: 6\n" in top.diff
    apply_top(repo, exp, report)
    assert evolve_run(exp, tmp_path)["status"] == "success"


RATE_WINDOW = """
import time

FIRST = []

class TooManyRequests(Exception):
    status_code = 429

def run(inputs):
    now = time.monotonic()
    if not FIRST:
        FIRST.append(now)
    if now - FIRST[0] < 0.5:  # the provider's window: half a second from the first call
        raise TooManyRequests("429 Too Many Requests")
    return {}
"""


def test_a_backoff_is_searched_from_short_to_long_until_the_window_resets(tmp_path):
    node = tool("call", "tools/r.py")
    node["on_error"] = {"policy": "retry", "attempts": 3, "base_ms": 20, "then": "skip"}
    repo, exp = repo_with(tmp_path, spec([node], name="x"), {"tools/r.py": RATE_WINDOW})
    assert evolve_run(exp, tmp_path)["status"] == "partial"
    plain = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    [guess] = plain.proposals
    assert guess.title == "Back off longer when 'call' is rate-limited"
    assert "backing off from 2000 ms" in guess.rationale
    assert "the value is a guess" in guess.rationale and "--verify" in guess.rationale
    report = verified(tmp_path)
    top = report.proposals[0]
    line = top.verification.line()
    assert line.startswith("Verified by re-running: partial -> success"), line
    assert "tried base_ms 100: partial, failed nodes 1" in line
    assert "base_ms 400: success, failed nodes 0, failed items 0" in line
    assert line.endswith("(works)")
    assert "400 ms was the shortest base" in top.rationale
    assert "base_ms: 400" in top.diff
    apply_top(repo, exp, report)
    assert evolve_run(exp, tmp_path)["status"] == "success"


AT_MOST_FOUR = """
import threading
import time

LOCK = threading.Lock()
IN_FLIGHT = [0]

class TooManyRequests(Exception):
    status_code = 429

def run(inputs):
    with LOCK:
        IN_FLIGHT[0] += 1
        now = IN_FLIGHT[0]
    try:
        if now > 4:  # the service it waits on takes four at a time
            raise TooManyRequests("429: more than 4 requests at once")
        time.sleep(0.08)
    finally:
        with LOCK:
            IN_FLIGHT[0] -= 1
    return {}
"""


def test_a_concurrency_raise_that_hits_a_limit_is_searched_down_to_one_that_works(tmp_path):
    node = tool("fetch", "tools/s.py", for_each={"source": "$.items", "concurrency": 1})
    node["on_error"] = {"policy": "skip"}
    document = spec([node], name="x", state={"items": {"type": "array", "default": [0] * 12}})
    repo, exp = repo_with(tmp_path, document, {"tools/s.py": AT_MOST_FOUR})
    assert evolve_run(exp, tmp_path)["status"] == "success"
    plain = propose(Workspace(tmp_path / "ws"), [], no_llm=True)
    [guess] = plain.proposals
    assert guess.title == "Raise the concurrency of 'fetch' from 1 to 8"
    assert "8 is a guess" in guess.rationale and "tries 8, 4, 2" in guess.rationale
    report = verified(tmp_path)
    top = report.proposals[0]
    assert top.title == "Raise the concurrency of 'fetch' from 1 to 4"
    line = top.verification.line()
    assert "tried concurrency 8: partial, failed items " in line, line
    assert "concurrency 4: success, failed items 0, retries 0, duration -" in line
    assert line.endswith("(works)")
    apply_top(repo, exp, report)
    after = evolve_run(exp, tmp_path)
    assert problems(after, tmp_path) == ("success", 0)
    assert "concurrency: 4" in (exp / "experience.yaml").read_text()


def test_a_fan_out_that_computes_gets_no_concurrency_proposal_when_verified(tmp_path):
    node = tool("crunch", "tools/c.py", for_each={"source": "$.items", "concurrency": 1})
    document = spec([node], name="x", state={"items": {"type": "array", "default": [0] * 8}})
    _, exp = repo_with(tmp_path, document, {"tools/c.py": CPU_BOUND})
    assert evolve_run(exp, tmp_path)["status"] == "success"
    report = verified(tmp_path)
    assert report.proposals == []
    assert report.verified is not None and report.verified["reruns"] == 0


def test_evidence_is_cited_in_log_order_when_items_attempts_interleave(tmp_path):
    node = tool("work", "tools/w.py", timeout_ms=100, for_each={"source": "$.items"})
    node["for_each"]["concurrency"] = 2
    # two items side by side, each timing out twice: the fold meets item 0's attempts, then
    # item 1's, while the log interleaves them
    node["on_error"] = {"policy": "retry", "attempts": 2, "base_ms": 10, "then": "skip"}
    document = spec([node], name="x", state={"items": {"type": "array", "default": [0, 1]}})
    sleepy = "import asyncio\n\nasync def run(i):\n    await asyncio.sleep(0.4)\n"
    _repo, exp = repo_with(tmp_path, document, {"tools/w.py": sleepy})
    evolve_run(exp, tmp_path)
    report = propose(Workspace(tmp_path / "ws"), ["last"], no_llm=True)
    [proposal] = report.proposals
    seqs = [int(ref.split("#")[1]) for ref in proposal.evidence]
    assert len(seqs) == 4 and seqs == sorted(seqs)
