"""`--help` reads like the loop, with placeholders a user would write, and the shell completes
commands, run ids and experience directories."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from evolve.cli import app
from evolve.clihelp import LOOP_ORDER

runner = CliRunner()
EVOLVE = [sys.executable, "-m", "evolve"]


def test_commands_are_listed_in_the_loops_order():
    text = runner.invoke(app, ["--help"]).stdout
    listed = re.findall(r"^  ([a-z]+)  ", text.split("Commands:")[1], re.M)
    assert listed == [name for name in LOOP_ORDER if name in listed]
    assert listed[:5] == ["init", "new", "validate", "run", "runs"]
    assert "--install-completion" in text and "--show-completion" in text


def test_no_help_shows_a_python_type_as_a_placeholder():
    group = typer.main.get_command(app)
    for name in group.commands:  # type: ignore[attr-defined]
        text = runner.invoke(app, [name, "--help"]).stdout
        typed = r"<(str|int|float|path|bool|text|list|integer)\b[^>]*>|\{\w+\}|list\["
        assert not re.search(typed, text), (name, text)
    run = " ".join(runner.invoke(app, ["run", "--help"]).stdout.split())
    assert "Usage: evolve run [OPTIONS] DIR" in run
    assert "--max-cost USD" in run and "--set FIELD=VALUE" in run and "--from RUN" in run
    propose = " ".join(runner.invoke(app, ["propose", "--help"]).stdout.split())
    assert "[RUN...]" in propose and "--timeout SECONDS" in propose


def complete(words: str, cwd: Path, **env: str) -> list[str]:
    done = subprocess.run(
        EVOLVE,
        cwd=cwd,
        env={
            **os.environ,
            "_EVOLVE_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (not words.endswith(" "))),
            **env,
        },
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.slow
def test_run_ids_complete_from_the_workspace(tmp_path):
    runs = tmp_path / ".evolve" / "runs"
    runs.mkdir(parents=True)
    for i, run_id in enumerate(["r-aaaa1111", "r-aabb2222", "r-cccc3333"]):
        (runs / f"{run_id}.jsonl").write_text("")
        os.utime(runs / f"{run_id}.jsonl", (1000 + i, 1000 + i))
    assert complete("evolve inspect r-aa", tmp_path) == ["r-aabb2222", "r-aaaa1111"]
    assert complete("evolve propose ", tmp_path)[:2] == ["last", "r-cccc3333"]
    assert complete("evolve compare r-c", tmp_path) == ["r-cccc3333"]
    elsewhere = tmp_path / "w"
    (elsewhere / "runs").mkdir(parents=True)
    (elsewhere / "runs" / "r-zzzz9999.jsonl").write_text("")
    assert complete("evolve diff r-", tmp_path, EVOLVE_WORKSPACE=str(elsewhere)) == ["r-zzzz9999"]


@pytest.mark.slow
def test_experience_directories_complete_experiences_first(tmp_path):
    for name in ("notes", "mine", "data"):
        (tmp_path / name).mkdir()
    (tmp_path / "mine" / "experience.yaml").write_text("name: m\n")
    (tmp_path / "notes" / "experience.yaml").write_text("name: n\n")
    (tmp_path / "file.txt").write_text("")
    assert complete("evolve run ", tmp_path) == ["mine/", "notes/", "data/"]
    assert complete("evolve eval mi", tmp_path) == ["mine/"]
