"""`evolve compare A B`: deltas with a paired bootstrap interval, flips, per-eval and per-node
deltas, spec changes, and the gates' exit codes, on an improvement and on a regression."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from evolve.evals.compare import bootstrap_interval
from test_evals import counter

runner = CliRunner()

# cases where step 1 is right (a, b) and where step 2 is right (c, d, e)
CASES = [
    {"id": "a", "args": {"n": 1}, "expect": {"count": 2}},
    {"id": "b", "args": {"n": 2}, "expect": {"count": 3}},
    {"id": "c", "args": {"n": 3}, "expect": {"count": 5}},
    {"id": "d", "args": {"n": 4}, "expect": {"count": 6}},
    {"id": "e", "args": {"n": 5}, "expect": {"count": 7}},
]


def cli(tmp_path, *args):
    return runner.invoke(app, [*args, "--workspace", str(tmp_path / "ws")])


def suite_with_step(tmp_path, step: int) -> str:
    path = counter(tmp_path, step=step, cases=CASES)
    done = cli(tmp_path, "eval", str(path), "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["suite_id"]


@pytest.fixture
def two_versions(tmp_path):
    """A: step 1 (a, b pass; c, d, e off by one). B: step 2 (c, d, e pass; a, b off by one)."""
    return tmp_path, suite_with_step(tmp_path, 1), suite_with_step(tmp_path, 2)


def test_an_improvement_shows_flips_deltas_and_the_interval(two_versions):
    tmp_path, a, b = two_versions
    done = cli(tmp_path, "compare", a, b, "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    # each case scores 1.0 when right, (0 + 0.9 * 2) / 3 = 0.6 when off by one
    assert data["score"]["a"] == pytest.approx((2 * 1 + 3 * 0.6) / 5)
    assert data["score"]["b"] == pytest.approx((3 * 1 + 2 * 0.6) / 5)
    assert data["score"]["delta"] == pytest.approx(0.08)
    low, high = data["score"]["ci95"]
    assert low < 0.08 < high and low >= -0.4 and high <= 0.4
    assert data["pass_rate"] == {"a": 0.4, "b": 0.6, "delta": pytest.approx(0.2)}
    assert data["flips"] == {"pass_to_fail": ["a", "b"], "fail_to_pass": ["c", "d", "e"]}
    evals = {e["eval"]: e for e in data["evals"]}
    assert evals["exact"]["pass_rate_a"] == 0.4 and evals["exact"]["pass_rate_b"] == 0.6
    assert evals["close"]["a"] == pytest.approx(0.94) and evals["close"]["delta"] == pytest.approx(
        0.02
    )
    assert [n["node"] for n in data["nodes"]] == ["add"]
    assert data["spec"]["changed"] is True and data["spec"]["files"] == ["tools/add.py"]
    assert data["paired_cases"] == 5 and data["gates"] == []


def test_the_gates_exit_1_on_a_regression_or_too_small_an_improvement(two_versions):
    tmp_path, a, b = two_versions
    regressions = cli(tmp_path, "compare", a, b, "--no-regressions")
    assert regressions.exit_code == 1
    assert "gate failed: cases that passed in A fail in B: a, b" in regressions.stderr
    assert cli(tmp_path, "compare", a, b, "--min-improvement", "0.05").exit_code == 0
    small = cli(tmp_path, "compare", a, b, "--min-improvement", "0.1")
    assert small.exit_code == 1
    assert "score improved by +0.080, less than --min-improvement 0.1" in small.stderr
    back = cli(tmp_path, "compare", b, a, "--min-improvement", "0", "--json")
    data = json.loads(back.stdout)
    assert back.exit_code == 1 and data["score"]["delta"] == pytest.approx(-0.08)
    assert data["flips"]["pass_to_fail"] == ["c", "d", "e"]


def test_compare_text_and_markdown(two_versions):
    tmp_path, a, b = two_versions
    text = cli(tmp_path, "compare", a, b).stdout.splitlines()
    assert text[1].startswith("spec: changed sha256:") and text[1].endswith("(tools/add.py)")
    assert text[2].startswith("score: 0.76 -> 0.84  +0.08  95% CI [")
    assert text[3] == "pass rate: 40% -> 60%  +20%"
    assert text[4] == "flips: pass->fail: a, b; fail->pass: c, d, e"
    assert "  exact: 0.40 -> 0.60 (+0.20), pass 40% -> 60%" in text
    md = cli(tmp_path, "compare", a, b, "--markdown", "--no-regressions").stdout
    assert md.startswith("### evolve compare: counter\n")
    assert "❌ gates failed: cases that passed in A fail in B: a, b" in md
    assert "| pass → fail | a, b |" in md and "| exact | 0.40 | 0.60 | +0.20 | 40% | 60% |" in md


def test_compare_same_version_is_unchanged_and_a_run_pairs_with_itself(tmp_path):
    a = suite_with_step(tmp_path, 1)
    b = suite_with_step(tmp_path, 1)
    data = json.loads(cli(tmp_path, "compare", a, b, "--json").stdout)
    assert data["spec"]["changed"] is False and data["spec"]["files"] == []
    assert data["score"]["delta"] == 0 and data["score"]["ci95"] == [0, 0]
    assert data["flips"] == {"pass_to_fail": [], "fail_to_pass": []}


def test_compare_refuses_runs_without_scores_or_of_other_experiences(tmp_path):
    a = suite_with_step(tmp_path, 1)
    other = tmp_path / "other"
    other.mkdir()
    (other / "experience.yaml").write_text(
        "name: other\nversion: 0.1.0\ngraph:\n  nodes:\n    - {id: a, kind: tool, impl: t.py}\n"
    )
    (other / "t.py").write_text("def run(i):\n    return {}\n")
    assert cli(tmp_path, "run", str(other)).exit_code == 0
    other_run = cli(tmp_path, "compare", a, "last")
    assert other_run.exit_code == 2
    assert "is a run of counter and" in other_run.stderr and "of other" in other_run.stderr
    unscored = cli(tmp_path, "compare", "last", "last")
    assert unscored.exit_code == 2 and "has no eval scores" in unscored.stderr


def test_the_bootstrap_interval_covers_the_mean_and_narrows_with_more_cases():
    rng = random.Random(3)
    few = [rng.gauss(0.1, 0.2) for _ in range(10)]
    many = [rng.gauss(0.1, 0.2) for _ in range(400)]
    lo_few, hi_few = bootstrap_interval(few)
    lo_many, hi_many = bootstrap_interval(many)
    assert lo_few < sum(few) / len(few) < hi_few
    assert lo_many < sum(many) / len(many) < hi_many
    assert (hi_many - lo_many) < (hi_few - lo_few) / 3
    assert lo_many > 0.0 and hi_many < 0.2  # 400 cases pin a 0.1 improvement away from 0
    assert bootstrap_interval([0.3]) == (0.3, 0.3)
    assert bootstrap_interval(few) == bootstrap_interval(few)  # seeded: the same runs, the same CI


def test_repeats_count_once_per_case_by_mean_score_and_majority_pass(tmp_path):
    # every third call fails: 3 repeats of a case pass twice and fail once
    flaky = "CALLS = [0]\n\ndef check(s, c, r):\n    CALLS[0] += 1\n    return CALLS[0] % 3 != 0\n"
    path = counter(
        tmp_path,
        "  - {name: flaky, impl: 'evals/flaky.py:check'}\n",
        cases=CASES[:1],
        files={"evals/flaky.py": flaky},
    )
    a = json.loads(cli(tmp_path, "eval", str(path), "--repeat", "3", "--json").stdout)
    assert sorted(c["passed"] for c in a["cases"]) == [False, True, True]
    assert a["spread"] == 1.0
    b = json.loads(cli(tmp_path, "eval", str(path), "--json").stdout)  # the 4th call: passes
    data = json.loads(cli(tmp_path, "compare", a["suite_id"], b["suite_id"], "--json").stdout)
    assert data["cases"] == [
        {
            "case": "a",
            "a": pytest.approx(2 / 3),
            "b": 1.0,
            "delta": pytest.approx(1 / 3),
            "passed_a": True,
            "passed_b": True,
        }
    ]
    assert data["a"]["cases"] == 3 and data["b"]["cases"] == 1
