"""Evals and cases: each kind of check, weights, thresholds, required evals, suites and their
case runs, repeats, the gates' exit codes, the store and the events, bad specs at line:col."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from typer.testing import CliRunner

from conftest import write_experience
from evolve.cli import app
from evolve.errors import SpecError, UsageError
from evolve.evals.cases import load_cases
from evolve.evals.suite import SuiteOptions, run_suite
from evolve.runtime.run import RunOptions, start_run
from evolve.spec import load_experience
from evolve.store.log import read_events
from evolve.store.workspace import Workspace
from fakes import ScriptedModel
from loopback import LoopbackServer

runner = CliRunner()

# one tool: count = n + step; the step lives in tools/add.py so a test can change the version
ADD = (
    "STEP = {step}\n\ndef run(inputs):\n"
    "    return {{'state_delta': {{'count': inputs['_state']['n'] + STEP}}}}\n"
)
CHECKS = """\
def close(state, case, run):
    want = case["expect"]["count"] if case else 3
    off = state["count"] - want
    return {"score": max(0.0, 1 - abs(off) / 10), "reason": f"off by {off}"}

def boom(state, case, run):
    if case and case["id"] == "b":
        raise ValueError("no verdict for b")
    return True

def status(state, case, run):
    return run["status"] == "success"
"""
SPEC = """\
name: counter
version: 0.1.0
state:
  schema:
    n: {{type: integer, default: 0}}
    count: {{type: integer, default: 0}}
graph:
  nodes:
    - {{id: add, kind: tool, impl: tools/add.py, reads: [n], writes: [count]}}
evals:
{evals}
cases: {{source: data/cases.jsonl, concurrency: 2}}
"""
EVALS = """\
  - {name: exact, expr: '$.count == $case.expect.count', required: true}
  - {name: close, impl: 'evals/checks.py:close', weight: 2}
"""
CASES = [
    {"id": "a", "args": {"n": 1}, "expect": {"count": 2}},
    {"id": "b", "args": {"n": 2}, "expect": {"count": 3}},
    {"id": "c", "args": {"n": 3}, "expect": {"count": 5}},
]


def counter(tmp_path, evals=EVALS, step=1, cases=CASES, files=None):
    return write_experience(
        tmp_path / "counter",
        SPEC.format(evals=evals),
        {
            "tools/add.py": ADD.format(step=step),
            "evals/checks.py": CHECKS,
            "data/cases.jsonl": "".join(json.dumps(c) + "\n" for c in cases),
            **(files or {}),
        },
    )


def cli(tmp_path, *args):
    return runner.invoke(app, [*args, "--workspace", str(tmp_path / "ws")])


def suite(tmp_path, path, **options):
    return run_suite(path, Workspace(tmp_path / "ws"), SuiteOptions(**options))


# -- the kinds of check, weights, thresholds, required ------------------------------------------


def test_expr_and_impl_evals_score_each_case_and_weight_the_mean(tmp_path):
    result = suite(tmp_path, counter(tmp_path))
    by_case = {c.case_id: c for c in result.cases}
    # a, b: count = n + 1 matches; c expects 5 but gets 4: exact fails, close is 0.9
    assert [(c.case_id, c.passed) for c in result.cases] == [("a", True), ("b", True), ("c", False)]
    assert by_case["c"].score == pytest.approx((0 * 1 + 0.9 * 2) / 3)
    assert by_case["a"].score == 1.0
    assert by_case["c"].failing == [{"eval": "exact", "reason": None, "required": True}]
    assert result.score == pytest.approx((1 + 1 + 0.6) / 3)
    assert result.pass_rate == pytest.approx(2 / 3)


def test_thresholds_decide_passing_and_default_to_half_for_numbers(tmp_path):
    evals = """\
  - {name: close, impl: 'evals/checks.py:close'}
  - {name: strict, impl: 'evals/checks.py:close', threshold: 0.95}
"""
    result = suite(tmp_path, counter(tmp_path, evals))
    c = {x.case_id: x for x in result.cases}["c"]
    # 0.9 passes the default 0.5 but not 0.95; with no required eval, every eval must pass
    assert c.failing == [{"eval": "strict", "reason": "off by -1", "required": False}]
    assert not c.passed and c.score == pytest.approx(0.9)


def test_a_failing_optional_eval_does_not_fail_a_case_when_another_is_required(tmp_path):
    evals = """\
  - {name: ran, impl: 'evals/checks.py:status', required: true}
  - {name: exact, expr: '$.count == $case.expect.count'}
"""
    result = suite(tmp_path, counter(tmp_path, evals))
    assert [c.passed for c in result.cases] == [True, True, True]
    assert result.cases[2].score == 0.5


def test_an_eval_that_raises_is_a_per_case_error_and_the_other_cases_are_scored(tmp_path):
    evals = """\
  - {name: boom, impl: 'evals/checks.py:boom'}
  - {name: exact, expr: '$.count == $case.expect.count'}
"""
    result = suite(tmp_path, counter(tmp_path, evals))
    b = {c.case_id: c for c in result.cases}["b"]
    assert b.status == "success" and not b.passed
    assert b.failing[0] == {
        "eval": "boom",
        "reason": "error: ValueError: no verdict for b",
        "required": False,
    }
    assert [c.score for c in result.cases] == [1.0, 0.5, 0.5]
    row = sqlite3.connect(tmp_path / "ws" / "state.sqlite").execute(
        "select error, reason from evals where case_id = 'b' and eval = 'boom'"
    )
    assert row.fetchall() == [(1, "error: ValueError: no verdict for b")]


@pytest.mark.parametrize(
    "returned, threshold, expected",
    [
        ("True", None, (1.0, True)),
        ("False", None, (0.0, False)),
        ("0.7", None, (0.7, True)),
        ("0.4", None, (0.4, False)),
        ("0.7", 0.8, (0.7, False)),
        ("{'score': 0.2, 'passed': True, 'reason': 'lenient'}", None, (0.2, True)),
        ("1.5", None, (0.0, False)),  # out of range: an error, score 0
        ("'yes'", None, (1.0, True)),
        ("object()", None, (0.0, False)),
        ("None", None, None),  # does not apply: not scored
    ],
)
def test_what_an_impl_may_return(tmp_path, returned, threshold, expected):
    extra = f", threshold: {threshold}" if threshold is not None else ""
    evals = f"  - {{name: it, impl: 'evals/it.py:check'{extra}}}\n"
    path = counter(
        tmp_path, evals, files={"evals/it.py": f"def check(s, c, r):\n    return {returned}\n"}
    )
    result = start_run(path, Workspace(tmp_path / "ws"), RunOptions())
    if expected is None:
        assert result.scored.results == [] and result.score is None
        return
    (only,) = result.scored.results
    assert (only.score, only.passed) == expected


def test_a_plain_run_scores_the_evals_that_need_no_case_and_says_so(tmp_path):
    path = counter(tmp_path)
    done = cli(tmp_path, "run", str(path))
    assert done.exit_code == 0, done.output
    # `exact` reads $case: not scored without a case; `close` compares with 3 (count is 1)
    assert "  evals: score 0.80, passed\n" in done.stdout
    failing = cli(tmp_path, "run", str(path), "--set", "n=8", "--fail-on-evals")
    assert "  evals: score 0.40, FAILING its evals: close\n" in failing.stdout
    assert failing.exit_code == 1
    quiet = cli(tmp_path, "run", str(path), "--set", "n=8", "--json")
    data = json.loads(quiet.stdout)
    assert quiet.exit_code == 0 and data["evals_passed"] is False
    assert [e["name"] for e in data["evals"]] == ["close"]


def test_eval_results_are_events_and_rows_and_the_run_carries_its_score(tmp_path):
    path = counter(tmp_path)
    result = suite(tmp_path, path, case_ids=["c"])
    (case,) = result.cases
    log = list(read_events(Workspace(tmp_path / "ws").log_path(case.run_id)))
    types = [e["type"] for e in log]
    assert types[-3:] == ["eval.result", "eval.result", "run.finished"]
    exact = log[-3]
    assert (exact["eval"], exact["case_id"], exact["passed"], exact["required"]) == (
        "exact",
        "c",
        False,
        True,
    )
    assert log[-1]["score"] == pytest.approx(0.6) and log[-1]["evals_passed"] is False
    db = sqlite3.connect(tmp_path / "ws" / "state.sqlite")
    assert db.execute("select name from _migrations order by name").fetchall() == [
        ("001_initial",),
        ("002_evals",),
        ("003_results",),
        ("004_links",),
        ("005_result_lookup",),
    ]
    rows = db.execute(
        "select eval, case_id, score, passed, required from evals where run_id = ? order by id",
        [case.run_id],
    ).fetchall()
    assert rows == [("exact", "c", 0.0, 0, 1), ("close", "c", 0.9, 1, 0)]
    run = db.execute(
        "select parent_run_id, parent_node, case_id, score, evals_passed from runs where id = ?",
        [case.run_id],
    ).fetchone()
    assert run == (result.suite_id, "c", "c", pytest.approx(0.6), 0)


# -- the judge: through the model layer ---------------------------------------------------------

JUDGE_EVALS = """\
  - {name: judged, judge: {prompt: prompts/judge.md, model: openai/judge-test}, required: true}
"""
JUDGE_PROMPT = "Is {{ count }} right for case {{ $case.id }}, expecting {{ $case.expect.count }}?\n"


def judge_counter(tmp_path, cassette=None):
    files = {"prompts/judge.md": JUDGE_PROMPT}
    if cassette is not None:
        files["cassettes/judge.jsonl"] = "".join(json.dumps(x) + "\n" for x in cassette)
    return counter(tmp_path, JUDGE_EVALS, files=files)


def test_a_judge_is_called_through_litellm_on_a_loopback_server(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge")
    path = judge_counter(tmp_path)
    replies = [
        {"json": {"score": 0.9, "reason": "right"}},
        {"json": {"score": "high"}},  # not {score, reason}: this case's eval fails with why
    ]
    with LoopbackServer(replies) as server:
        result = suite(
            tmp_path,
            path,
            case_ids=["a", "c"],
            concurrency=1,
            run=RunOptions(api_base=server.base),
        )
    assert [r["model"] for r in server.requests] == ["judge-test", "judge-test"]
    prompt = server.requests[0]["messages"][0]["content"]
    assert prompt.startswith("Is 2 right for case a, expecting 2?")
    a, c = result.cases
    assert (a.score, a.passed) == (0.9, True)
    assert c.score == 0.0 and not c.passed
    assert c.failing[0]["reason"].startswith("error: the judge's reply does not match")
    # recorded and costed like an agent call: an llm.call event and a row, tokens counted
    log = list(read_events(Workspace(tmp_path / "ws").log_path(a.run_id)))
    calls = [e for e in log if e["type"] == "llm.call"]
    assert [(e["node_id"], e["tokens_in"]) for e in calls] == [("eval:judged", 11)]
    assert a.tokens_in == 11 and a.tokens_out == 7
    db = sqlite3.connect(tmp_path / "ws" / "state.sqlite")
    assert db.execute("select node_id from llm_calls where run_id = ?", [a.run_id]).fetchall() == [
        ("eval:judged",)
    ]
    # inspect counts the judge's tokens in the run, and shows no node for it
    shown = json.loads(cli(tmp_path, "inspect", a.run_id, "--json").stdout)
    assert [n["id"] for n in shown["nodes"]] == ["add"]
    assert shown["summary"]["tokens_in"] == 11
    assert shown["evals"][0]["reason"] == "right"


def test_a_judge_replays_from_a_cassette_per_case_and_per_repeat(tmp_path):
    cassette = [
        {
            "node": "eval:judged",
            "case": "c",
            "response": {"json": {"score": 0.2, "reason": "c is off"}},
        },
        {"node": "eval:judged", "response": {"json": {"score": 1, "reason": "fine"}}},
    ]
    path = judge_counter(tmp_path, cassette)
    result = suite(tmp_path, path, repeat=2, run=RunOptions(offline=True))
    assert [(c.case_id, c.repeat, c.score) for c in result.cases] == [
        ("a", 1, 1.0),
        ("a", 2, 1.0),
        ("b", 1, 1.0),
        ("b", 2, 1.0),
        ("c", 1, 0.2),
        ("c", 2, 0.2),
    ]
    assert result.spread == 0.0
    log = list(read_events(Workspace(tmp_path / "ws").log_path(result.cases[4].run_id)))
    (call,) = [e for e in log if e["type"] == "llm.call"]
    assert call["replayed"] is True and call["node_id"] == "eval:judged"


def test_a_judge_missing_from_the_cassette_fails_its_eval_not_the_suite(tmp_path):
    path = judge_counter(tmp_path, [{"node": "eval:other", "response": {"text": "{}"}}])
    result = suite(tmp_path, path, case_ids=["a"], run=RunOptions(offline=True))
    (a,) = result.cases
    assert a.status == "success" and not a.passed
    assert "no cassette entry for node 'eval:judged'" in a.failing[0]["reason"]


def test_a_judge_through_a_scripted_model_gets_the_fixed_reply_schema(tmp_path):
    model = ScriptedModel([{"score": 0.75, "reason": "close"}])
    path = judge_counter(tmp_path)
    result = start_run(path, Workspace(tmp_path / "ws"), RunOptions(), model)
    # the prompt reads $case: a plain run (no case) does not score it, and calls no model
    assert result.scored.results == [] and model.calls == []

    scored = run_suite(path, Workspace(tmp_path / "ws"), SuiteOptions(case_ids=["b"]), model)
    (request,) = model.calls
    assert (
        request.schema["required"] == ["score", "reason"] and request.model == "openai/judge-test"
    )
    assert request.node_id == "eval:judged" and request.temperature == 0
    assert scored.cases[0].score == 0.75


# -- suites, repeats, gates ---------------------------------------------------------------------


def test_the_suite_is_a_run_with_its_cases_as_child_runs(tmp_path):
    path = counter(tmp_path)
    done = cli(tmp_path, "eval", str(path))
    assert done.exit_code == 0, done.output
    lines = [re.sub(r" +", " ", x).strip() for x in done.stdout.splitlines()]
    assert lines[0] == "case status score failing evals duration tokens cost"
    assert lines[1].startswith("a success 1.00 ✓")
    assert lines[3].startswith("c success 0.60 ✗ exact")
    assert lines[4] == "mean score 0.87 · pass rate 2/3 (67%)"
    assert re.fullmatch(r"success: suite r-[a-z0-9]{8} of counter in \d+\.\d\ds", lines[5])
    assert "[3/3]" in done.stderr
    listed = json.loads(cli(tmp_path, "runs", "--json").stdout)
    assert [(r["kind"], r["cases"]) for r in listed] == [("suite", 3)]  # case runs are not listed
    assert listed[0]["pass_rate"] == pytest.approx(2 / 3)
    shown = cli(tmp_path, "inspect", "last")
    text = re.sub(r" +", " ", shown.stdout)
    assert "c success 0.60 ✗ exact" in text and "mean score 0.87 · pass rate 2/3 (67%)" in text
    data = json.loads(cli(tmp_path, "inspect", "last", "--json").stdout)
    assert [c["case_id"] for c in data["suite"]["cases"]] == ["a", "b", "c"]
    assert data["run"]["kind"] == "suite"
    child = data["suite"]["cases"][2]["run_id"]
    assert (
        json.loads(cli(tmp_path, "inspect", child, "--json").stdout)["run"]["parent_run_id"]
        == (data["run"]["id"])
    )
    suite_log = [
        e["type"] for e in read_events(Workspace(tmp_path / "ws").log_path(data["run"]["id"]))
    ]
    assert suite_log == ["run.started", "eval.case", "eval.case", "eval.case", "run.finished"]


def test_repeat_runs_every_case_n_times_and_reports_the_spread(tmp_path):
    flaky = "import random\n\ndef check(s, c, r):\n    return random.random()\n"
    evals = "  - {name: noisy, impl: 'evals/flaky.py:check'}\n"
    path = counter(tmp_path, evals, files={"evals/flaky.py": flaky})
    done = cli(tmp_path, "eval", str(path), "--repeat", "3", "--case", "b", "--json")
    data = json.loads(done.stdout)
    assert [(c["case_id"], c["repeat"]) for c in data["cases"]] == [("b", 1), ("b", 2), ("b", 3)]
    scores = [c["score"] for c in data["cases"]]
    assert data["spread"] == pytest.approx(max(scores) - min(scores))
    assert data["repeat"] == 3 and len({c["run_id"] for c in data["cases"]}) == 3


def test_the_gates_exit_1_below_min_score_or_min_pass_rate(tmp_path):
    path = counter(tmp_path)
    assert cli(tmp_path, "eval", str(path), "--min-score", "0.8").exit_code == 0
    low = cli(tmp_path, "eval", str(path), "--min-score", "0.9")
    assert low.exit_code == 1
    assert "gate failed: mean score 0.867 is below --min-score 0.9" in low.stderr
    assert cli(tmp_path, "eval", str(path), "--min-pass-rate", "0.6").exit_code == 0
    rate = cli(tmp_path, "eval", str(path), "--min-pass-rate", "0.7", "--json")
    assert rate.exit_code == 1
    assert json.loads(rate.stdout)["gates"] == ["pass rate 0.667 is below --min-pass-rate 0.7"]


def test_a_case_with_refused_args_is_one_failing_row(tmp_path):
    cases = [*CASES, {"id": "bad", "args": {"n": "three"}}]
    result = suite(tmp_path, counter(tmp_path, cases=cases))
    bad = result.cases[-1]
    assert (bad.case_id, bad.status, bad.run_id, bad.passed) == ("bad", "error", None, False)
    assert "'n'" in bad.error
    assert [c.status for c in result.cases[:3]] == ["success"] * 3


def test_usage_errors_of_eval(tmp_path):
    path = counter(tmp_path)
    unknown = cli(tmp_path, "eval", str(path), "--case", "zz")
    assert unknown.exit_code == 2 and "no case 'zz'" in unknown.stderr
    bare = write_experience(
        tmp_path / "bare",
        "name: bare\nversion: 0.1.0\ngraph:\n  nodes:\n    - {id: a, kind: tool, impl: t.py}\n",
        {"t.py": "def run(i):\n    return {}\n"},
    )
    none = cli(tmp_path, "eval", str(bare))
    assert none.exit_code == 2 and "bare has no cases" in none.stderr


# -- cases files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text",
    [
        ("cases.jsonl", '{"id": "x", "args": {"n": 1}, "expect": {"count": 2}}\n'),
        ("cases.json", '[{"id": "x", "args": {"n": 1}, "expect": {"count": 2}}]'),
        ("cases.yaml", "- id: x\n  args: {n: 1}\n  expect: {count: 2}\n"),
        ("cases.csv", "id,args.n,expect.count\nx,1,2\n"),
    ],
)
def test_cases_load_from_every_format(tmp_path, name, text):
    path = counter(tmp_path, files={f"data/{name}": text})
    spec = (path / "experience.yaml").read_text().replace("data/cases.jsonl", f"data/{name}")
    (path / "experience.yaml").write_text(spec)
    (case,) = load_cases(load_experience(path).cases)
    assert (case.id, case.args, case.expect) == ("x", {"n": 1}, {"count": 2})


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"id": "x"}\n{"id": "x"}\n', "data/cases.jsonl:2: duplicate case id 'x'"),
        ('{"args": {}}\n', "data/cases.jsonl:1: a case needs an 'id'"),
        ('{"id": 1, "expected": {}}\n', "unknown key 'expected' in a case; did you mean 'expect'?"),
        ('{"id": 1, "args": [1]}\n', "'args' of case '1' must be a mapping"),
        ("{nope\n", "data/cases.jsonl:1: not a JSON line"),
        ("\n", "data/cases.jsonl: no cases in the file"),
    ],
)
def test_bad_cases_are_one_clear_line(tmp_path, text, message):
    path = counter(tmp_path, files={"data/cases.jsonl": text})
    with pytest.raises(UsageError, match=re.escape(message)):
        load_cases(load_experience(path).cases)
    done = cli(tmp_path, "eval", str(path))
    assert done.exit_code == 2 and message in done.stderr and "Traceback" not in done.output


# -- bad eval specs, located --------------------------------------------------------------------


@pytest.mark.parametrize(
    "evals, expected",
    [
        ("  - {name: x, expr: '$.count ==', required: true}\n", "11:32: invalid expression"),
        ("  - {name: x, expr: '$.cuont > 1'}\n", "11:22: '$.cuont' reads undeclared state field"),
        ("  - {name: x, expr: 'any($.count, $item.a == 1) && $item.b'}\n", "11:52: $item is only"),
        (
            "  - {name: x, impl: 'evals/checks.py:nope'}\n",
            "11:21: tool 'checks.py' defines no function 'nope'",
        ),
        (
            "  - {name: x, impl: 'evals/gone.py'}\n",
            "11:21: eval file 'evals/gone.py' does not exist",
        ),
        (
            "  - {name: x}\n",
            "11:5: eval 'x' needs exactly one of expr, impl or judge (it has none)",
        ),
        (
            "  - {name: x, expr: 'true', impl: evals/checks.py}\n",
            "11:5: eval 'x' needs exactly one of expr, impl or judge (it has expr, impl)",
        ),
        (
            "  - {name: x, expr: 'true', wieght: 2}\n",
            "11:29: unknown key 'wieght' in item #1 of 'evals'; did you mean 'weight'?",
        ),
        (
            "  - {name: x, expr: 'true', threshold: 2}\n",
            "11:40: 'threshold' must be at most 1, not 2",
        ),
        (
            "  - {name: x, expr: 'true'}\n  - {name: x, expr: 'false'}\n",
            "12:12: duplicate eval name 'x'",
        ),
        (
            "  - {name: x, judge: {prompt: prompts/gone.md}}\n",
            "11:31: judge prompt file 'prompts/gone.md' does not exist",
        ),
    ],
)
def test_bad_eval_specs_are_located_at_line_and_col(tmp_path, evals, expected):
    path = counter(tmp_path, evals)
    with pytest.raises(SpecError) as caught:
        load_experience(path)
    lines = [str(p) for p in caught.value.problems]
    assert any(expected in line for line in lines), lines
    done = runner.invoke(app, ["validate", str(path)])
    assert done.exit_code == 2 and expected in done.stdout


def test_a_judge_prompt_placeholder_is_located_in_its_file(tmp_path):
    path = counter(
        tmp_path,
        "  - {name: j, judge: {prompt: prompts/j.md}}\n",
        files={"prompts/j.md": "Score it.\nCount: {{ cuont }}, case {{ $case.id }}\n"},
    )
    with pytest.raises(SpecError) as caught:
        load_experience(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.col) == (2, 8) and problem.file.endswith("prompts/j.md")
    assert "names no state field 'cuont'" in problem.message or "cuont" in problem.message


def test_cases_source_is_checked(tmp_path):
    path = counter(tmp_path)
    spec = (path / "experience.yaml").read_text().replace("data/cases.jsonl", "data/none.jsonl")
    (path / "experience.yaml").write_text(spec)
    with pytest.raises(SpecError, match=r"14:17: cases file 'data/none.jsonl' does not exist"):
        load_experience(path)


# -- shown everywhere: progress lines, the HTML report ------------------------------------------


def test_progress_prints_a_line_per_eval(tmp_path):
    path = counter(tmp_path)
    done = cli(tmp_path, "run", str(path), "--set", "n=8")
    assert "✗ eval close 0.40: off by 6\n" in done.stderr


def test_the_html_report_has_an_evals_section_and_a_suite_its_cases(tmp_path):
    from html.parser import HTMLParser

    path = counter(tmp_path)
    suite_id = json.loads(cli(tmp_path, "eval", str(path), "--json").stdout)["suite_id"]
    rows: dict[str, list[dict[str, str]]] = {"eval-row": [], "case-row": []}

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found = dict(attrs)
            if found.get("class") in rows:
                rows[found["class"]].append(found)

    target = tmp_path / "suite.html"
    assert cli(tmp_path, "inspect", suite_id, "--html", str(target)).exit_code == 0
    Rows().feed(target.read_text(encoding="utf-8"))
    assert [(r["data-case"], r["data-passed"]) for r in rows["case-row"]] == [
        ("a", "true"),
        ("b", "true"),
        ("c", "false"),
    ]
    page = target.read_text(encoding="utf-8")
    assert "mean score 0.87 · pass rate 2/3 (67%)" in page
    child = json.loads(cli(tmp_path, "inspect", suite_id, "--json").stdout)["suite"]["cases"][2]
    rows["case-row"].clear()
    one = tmp_path / "case.html"
    assert cli(tmp_path, "inspect", child["run_id"], "--html", str(one)).exit_code == 0
    Rows().feed(one.read_text(encoding="utf-8"))
    assert [(r["data-eval"], r["data-passed"]) for r in rows["eval-row"]] == [
        ("exact", "false"),
        ("close", "true"),
    ]
    assert "fails its evals" in one.read_text(encoding="utf-8")


def test_a_judge_is_recorded_then_replayed_with_the_server_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge")
    path = judge_counter(tmp_path)
    cassette = tmp_path / "judge.jsonl"
    with LoopbackServer([{"json": {"score": 0.8, "reason": "recorded"}}]) as server:
        first = suite(
            tmp_path, path, case_ids=["b"], run=RunOptions(api_base=server.base, record=cassette)
        )
    (line,) = [json.loads(x) for x in cassette.read_text().splitlines()]
    assert line["node"] == "eval:judged" and line["key"]
    assert "sk-test-judge" not in cassette.read_text()
    again = suite(tmp_path, path, case_ids=["b"], run=RunOptions(replay=cassette))
    assert [c.score for c in first.cases] == [c.score for c in again.cases] == [0.8]
    log = list(read_events(Workspace(tmp_path / "ws").log_path(again.cases[0].run_id)))
    (call,) = [e for e in log if e["type"] == "llm.call"]
    assert call["replayed"] is True and call["key"] == line["key"]


def test_a_judge_is_costed_in_the_run(tmp_path):
    model = ScriptedModel([{"score": 1, "reason": "ok"}])
    path = judge_counter(tmp_path)
    result = run_suite(path, Workspace(tmp_path / "ws"), SuiteOptions(case_ids=["a"]), model)
    (a,) = result.cases
    assert (a.tokens_in, a.tokens_out, a.cost_usd) == (10, 5, 0.001)
    db = sqlite3.connect(tmp_path / "ws" / "state.sqlite")
    assert db.execute("select cost_usd from runs where id = ?", [a.run_id]).fetchone() == (0.001,)
    assert db.execute("select cost_usd from runs where id = ?", [result.suite_id]).fetchone() == (
        0.001,
    )
    budget = run_suite(
        path,
        Workspace(tmp_path / "ws"),
        SuiteOptions(case_ids=["a"], run=RunOptions(max_cost=0.0005)),
        ScriptedModel([{"score": 1, "reason": "ok"}]),
    )
    # the judge's call reaches the budget: its eval fails with why, the run is still scored
    (over,) = budget.cases
    assert not over.passed and "budget reached" in over.failing[0]["reason"]


def test_runs_and_inspect_show_the_scores(tmp_path):
    path = counter(tmp_path)
    assert cli(tmp_path, "run", str(path), "--set", "n=8").exit_code == 0
    assert cli(tmp_path, "eval", str(path)).exit_code == 0
    listed = cli(tmp_path, "runs").stdout.splitlines()
    header = re.sub(r" +", " ", listed[0]).strip()
    assert header == "run experience status started duration nodes ✓/✗/– items tokens cost score"
    suite_row = re.sub(r" +", " ", listed[1]).rstrip()
    assert re.fullmatch(
        r"r-\w{8} counter success \d\d-\d\d [\d:]{8} \d+ ms 3 cases — 0.87 67%", suite_row
    )
    assert re.sub(r" +", " ", listed[-1]).rstrip().endswith("— 0.40 ✗")  # the plain run
    case_run = json.loads(cli(tmp_path, "inspect", "last", "--json").stdout)["suite"]["cases"][2]
    shown = re.sub(r" +", " ", cli(tmp_path, "inspect", case_run["run_id"]).stdout)
    assert "score 0.60 · FAILS its evals" in shown
    assert "exact expr 0.00 ✗ required" in shown and "close impl 0.90 ✓ off by -1" in shown


def test_propose_and_diff_take_a_suite(tmp_path):
    path = counter(tmp_path)
    suite_id = json.loads(cli(tmp_path, "eval", str(path), "--json").stdout)["suite_id"]
    done = cli(tmp_path, "propose", "last", "--no-llm", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["runs"][0] == suite_id and len(report["runs"]) == 4  # the suite, 3 case runs
    assert report["path"].endswith(f"{suite_id}.md")
    listed = json.loads(cli(tmp_path, "inspect", suite_id, "--json").stdout)["suite"]["cases"]
    assert report["runs"][1:] == [c["run_id"] for c in listed]
    found = cli(tmp_path, "diff", "last")  # `last` is the suite: its report is found
    assert found.exit_code == 0 and found.stderr.startswith("# apply from ")


def test_case_runs_end_without_a_full_sync_and_the_suite_with_one(tmp_path, monkeypatch):
    from evolve.store.writer import StateStore

    synced: dict[str, bool] = {}
    finish = StateStore.finish_run

    def spy(self, run_id, *, durable=False, **fields):
        synced[run_id] = durable
        return finish(self, run_id, durable=durable, **fields)

    monkeypatch.setattr(StateStore, "finish_run", spy)
    result = suite(tmp_path, counter(tmp_path))
    assert synced.pop(result.suite_id) is True
    assert synced == {c.run_id: False for c in result.cases}
    plain = start_run(counter(tmp_path), Workspace(tmp_path / "ws"), RunOptions())
    assert synced[plain.run_id] is True


def test_a_judge_needs_a_model_only_where_it_scores(tmp_path, monkeypatch):
    monkeypatch.delenv("EVOLVE_MODEL", raising=False)
    evals = "  - {name: judged, judge: {prompt: prompts/judge.md}}\n"
    path = counter(tmp_path, evals, files={"prompts/judge.md": JUDGE_PROMPT})
    # a plain run does not score a judge that reads $case: it needs no model
    assert cli(tmp_path, "run", str(path)).exit_code == 0
    refused = cli(tmp_path, "eval", str(path))
    assert refused.exit_code == 2 and "no model for agent node eval:judged" in refused.stderr


def test_failing_evals_with_their_case_and_reason_are_in_the_model_advisors_request(tmp_path):
    from evolve.advisor.propose import propose

    evals = """\
  - {name: close, impl: 'evals/checks.py:close'}
  - {name: strict, impl: 'evals/checks.py:close', threshold: 0.95}
"""
    result = suite(tmp_path, counter(tmp_path, evals))
    assert [c.case_id for c in result.cases if not c.passed] == ["c"]
    advisor = ScriptedModel([{"proposals": []}])
    propose(Workspace(tmp_path / "ws"), [result.suite_id], model_client=advisor)
    [request] = advisor.calls
    payload = json.loads(request.messages[-1]["content"])
    runs = {r.get("case"): r for r in payload["evidence"]["runs"]}
    assert set(runs) == {"a", "b", "c"}
    assert runs["c"]["failing_evals"] == [
        {"eval": "strict", "score": pytest.approx(0.9), "reason": "off by -1", "required": False}
    ]
    assert "failing_evals" not in runs["a"] and "failing_evals" not in runs["b"]
    assert "failing_evals" in request.messages[0]["content"]  # the instructions name them
