"""The README's loop, end to end, offline, in a git repository with the real `git apply`:
run -> propose -> `evolve diff last 1 | git apply` -> run again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app

ROOT = Path(__file__).resolve().parent.parent
EVOLVE = [sys.executable, "-m", "evolve"]


def sh(repo: Path, command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("EVOLVE_MODEL", None)
    done = subprocess.run(
        command, shell=True, cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def state(repo: Path, field: str):
    return json.loads(sh(repo, f"{sys.executable} -m evolve state last {field} --json").stdout)


@pytest.mark.slow
def test_the_review_branch_loop_finds_the_injection_only_after_the_apply(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "review-branch", repo / "examples" / "review-branch")
    for command in (
        "git init -q",
        "git add -A",
        "git -c user.email=t@t -c user.name=t commit -qm base",
    ):
        sh(repo, command)
    evolve = f"{sys.executable} -m evolve"

    sh(repo, f"{evolve} run examples/review-branch --offline")
    before = state(repo, "verified")
    risk_before = state(repo, "risk_score")
    assert not any("SQL injection" in f["title"] for f in before)

    proposed = sh(repo, f"{evolve} propose last --offline").stdout
    assert "1. [add-dataset-case, medium] Review every branch for security too" in proposed
    sh(repo, f"{evolve} diff last 1 | git apply")
    changed = sh(repo, "git diff --stat").stdout
    assert "examples/review-branch/tools/list_dimensions.py | 1 +" in changed

    sh(repo, f"{evolve} run examples/review-branch --offline")
    after = state(repo, "verified")
    risk_after = state(repo, "risk_score")
    injection = [f for f in after if "SQL injection" in f["title"]]
    assert injection and injection[0]["file"] == "app/routes/users.py"
    assert risk_after > risk_before
    assert (risk_before, risk_after) == (6.5, 10.0)


def test_init_creates_a_starter_that_validates_and_runs_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVOLVE_MODEL", raising=False)
    runner = CliRunner()
    made = runner.invoke(app, ["init", "my notes"])
    assert made.exit_code == 0, made.output
    assert (
        made.stdout.splitlines()[0] == "created my notes from the agent template (8 files). Next:"
    )
    text = (tmp_path / "my notes" / "experience.yaml").read_text()
    assert "name: my-notes " in text and "__NAME__" not in text
    assert runner.invoke(app, ["validate", "my notes"]).exit_code == 0
    ran = runner.invoke(app, ["run", "my notes", "--offline"])
    assert ran.exit_code == 0, ran.output
    assert runner.invoke(app, ["state", "last", "words"]).stdout.strip() == "21"  # 11 + 10 words
    again = runner.invoke(app, ["init", "my notes"])
    assert again.exit_code == 2
    assert "already exists and is not an empty directory" in again.stderr


@pytest.mark.slow
def test_the_review_branch_eval_loop_scores_every_case_before_and_after_the_apply(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "review-branch", repo / "examples" / "review-branch")
    for command in (
        "git init -q",
        "git add -A",
        "git -c user.email=t@t -c user.name=t commit -qm base",
    ):
        sh(repo, command)
    evolve = f"{sys.executable} -m evolve"

    before = json.loads(sh(repo, f"{evolve} eval examples/review-branch --offline --json").stdout)
    assert (before["score"], before["pass_rate"]) == (pytest.approx(0.6), 0.4)
    failing = {c["case_id"] for c in before["cases"] if not c["passed"]}
    assert failing == {"users-route", "sql-search", "path-traversal"}
    gate = f"{evolve} eval examples/review-branch --offline --min-score 0.55"
    assert "mean score 0.60 · pass rate 2/5 (40%)" in sh(repo, gate).stdout

    proposed = sh(repo, f"{evolve} propose last --offline").stdout
    assert "1. [add-dataset-case, medium] Review every branch for security too" in proposed
    sh(repo, f"{evolve} diff last 1 | git apply")

    after = json.loads(sh(repo, f"{evolve} eval examples/review-branch --offline --json").stdout)
    assert (after["score"], after["pass_rate"]) == (1.0, 1.0)
    compared = sh(
        repo,
        f"{evolve} compare {before['suite_id']} {after['suite_id']} --no-regressions "
        "--min-improvement 0.3 --json",
    )
    data = json.loads(compared.stdout)
    assert data["flips"]["fail_to_pass"] == ["users-route", "sql-search", "path-traversal"]
    assert data["spec"]["files"] == ["tools/list_dimensions.py"]
    low, high = data["score"]["ci95"]
    assert 0 < low < 0.4 < high
