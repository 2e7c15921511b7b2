"""The GitHub Action's script (action/evolve-action.sh), run as the action runs it, against a
temporary repository holding an offline experience: the job summary it writes, the gates' exit
codes, and the one pull-request comment it posts or updates through `gh` (a fake on PATH)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "action" / "evolve-action.sh"
EXAMPLE = ROOT / "examples" / "review-branch"
EVOLVE = Path(sys.executable).with_name("evolve")
TESTS_LINE = '    {"name": "tests", "focus": "changed behaviour without tests, missing cases"},\n'
SECURITY = '    {"name": "security", "focus": "injection"},\n'

FAKE_GH = """#!/usr/bin/env bash
# records each call; `gh api .../comments --paginate` lists $FAKE_GH_EXISTING
echo "gh $*" >> "$GH_LOG"
for arg in "$@"; do
  case "$arg" in body=@*) cat "${arg#body=@}" > "$GH_LOG.body" ;; esac
done
if [[ " $* " == *" --paginate "* ]]; then
  [[ -n "${FAKE_GH_EXISTING:-}" ]] && echo "$FAKE_GH_EXISTING"
  exit 0
fi
exit "${FAKE_GH_EXIT:-0}"
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository whose first commit has the baseline review-branch (no security dimension)
    and whose second adds it: (repo, base sha, head sha)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(EXAMPLE, repo / "review")
    (repo / ".gitignore").write_text(".evolve/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline")
    base = git(repo, "rev-parse", "HEAD")
    tool = repo / "review" / "tools" / "list_dimensions.py"
    text = tool.read_text()
    assert TESTS_LINE in text
    tool.write_text(text.replace(TESTS_LINE, TESTS_LINE + SECURITY))
    git(repo, "commit", "-qam", "review for security too")
    return repo, base, git(repo, "rev-parse", "HEAD")


def action(repo: Path, tmp_path: Path, **inputs: str) -> tuple[subprocess.CompletedProcess, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    summary = tmp_path / "summary.md"
    summary.write_text("")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    env = {
        k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "EVOLVE_MODEL"
    }
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{EVOLVE.parent}{os.pathsep}{env['PATH']}",
            "EVOLVE_BIN": str(EVOLVE),
            "EVOLVE_EXPERIENCE": "review",
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_REPOSITORY": "owner/repo",
            "GH_TOKEN": "token",
            "GH_LOG": str(tmp_path / "gh.log"),
            "RUNNER_TEMP": str(tmp_path),
            **inputs,
        }
    )
    done = subprocess.run(["bash", str(SCRIPT)], cwd=repo, env=env, capture_output=True, text=True)
    return done, summary.read_text()


@pytest.mark.slow
def test_an_improvement_passes_the_gates_and_is_reported(repo, tmp_path):
    repo, base, _ = repo
    done, summary = action(repo, tmp_path, EVOLVE_BASELINE=base, EVOLVE_MIN_SCORE="0.9")
    assert done.returncode == 0, done.stderr
    assert summary.startswith("<!-- evolve-action: review -->\n## evolve: `review`")
    assert "**score 1.00** · pass rate 100% · min-score 0.9: ✅ held" in summary
    assert "| users-route | 1.00 | ✅ |" in summary
    assert "### evolve compare: review-branch" in summary and "✅ gates passed" in summary
    assert "### Proposals" in summary
    assert "offline (cassettes)" in done.stderr
    calls = (tmp_path / "gh.log").read_text().splitlines()
    assert calls[0].startswith("gh api repos/owner/repo/issues/7/comments --paginate")
    assert calls[1] == (
        f"gh api repos/owner/repo/issues/7/comments -F body=@{tmp_path}/"
        + calls[1].split(f"{tmp_path}/")[1]
    )
    assert (tmp_path / "gh.log.body").read_text() == summary  # the comment is the summary


@pytest.mark.slow
def test_the_gates_fail_a_regression_and_a_low_score(repo, tmp_path):
    repo, base, head = repo
    git(repo, "checkout", "-q", base)  # the candidate is the baseline; the "baseline" is better
    done, summary = action(repo, tmp_path, EVOLVE_BASELINE=head, EVOLVE_PROPOSE="false")
    assert done.returncode == 1
    assert "failed its gate (evolve compare exit 1)" in done.stderr
    assert "### evolve compare" in summary and "### Proposals" not in summary
    low, summary = action(repo, tmp_path, EVOLVE_MIN_SCORE="0.9", EVOLVE_PROPOSE="false")
    assert low.returncode == 1
    assert "the score gate failed" in low.stderr
    assert "min-score 0.9: ❌ not met" in summary and "### evolve compare" not in summary


@pytest.mark.slow
def test_one_comment_is_updated_and_a_token_without_rights_posts_nothing(repo, tmp_path):
    repo, _, _ = repo
    quick = {"EVOLVE_PROPOSE": "false", "EVOLVE_BASELINE": ""}
    done, _ = action(repo, tmp_path, FAKE_GH_EXISTING="4242", **quick)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "gh.log").read_text().splitlines()
    assert calls[1].startswith("gh api -X PATCH repos/owner/repo/issues/comments/4242 -F body=@")
    (tmp_path / "gh.log").unlink()
    refused, _ = action(repo, tmp_path, FAKE_GH_EXIT="1", **quick)
    assert refused.returncode == 0  # the gates decide the status, not the comment
    assert "could not comment (does the token have pull-requests: write?)" in refused.stderr
    pushed = (tmp_path / "gh.log").read_text()
    no_pr, _ = action(repo, tmp_path, GITHUB_EVENT_NAME="push", **quick)
    assert (tmp_path / "gh.log").read_text() == pushed  # not a pull request: gh is not called
    assert no_pr.returncode == 0


@pytest.mark.slow
def test_bad_inputs_exit_2(repo, tmp_path):
    repo, _, _ = repo
    missing, _ = action(repo, tmp_path, EVOLVE_EXPERIENCE="nowhere")
    assert missing.returncode == 2 and "'nowhere' does not exist" in missing.stderr
    mode, _ = action(repo, tmp_path, EVOLVE_MODE="sometimes")
    assert mode.returncode == 2


def test_action_yml_runs_the_script_with_every_input():
    spec = yaml.safe_load((ROOT / "action.yml").read_text())
    assert spec["runs"]["using"] == "composite"
    step = spec["runs"]["steps"][-1]
    assert step["run"] == 'bash "$GITHUB_ACTION_PATH/action/evolve-action.sh"'
    mapped = " ".join(step["env"].values())
    assert all(f"inputs.{name}" in mapped for name in spec["inputs"] if name != "install")


def test_the_documented_workflow_uses_the_action_with_real_inputs():
    page = (ROOT / "docs" / "github-action.md").read_text()
    workflow = yaml.safe_load(page.split("```yaml\n")[1].split("```")[0])
    inputs = yaml.safe_load((ROOT / "action.yml").read_text())["inputs"]
    [step] = [s for s in workflow["jobs"]["evolve"]["steps"] if "evolve@" in s.get("uses", "")]
    assert set(step["with"]) <= set(inputs)
    assert all(f"| `{name}` |" in page for name in inputs)
    assert workflow["permissions"]["pull-requests"] == "write"
