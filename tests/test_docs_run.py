"""The README's tour and the getting-started page, run as written: each `$ command` of their
console blocks runs in a shell, and what it prints must be what the page shows once run ids,
timings, dates and the temp directory are normalised. The page's hand edit is a diff that
`git apply --check` accepts. So the docs cannot drift from the program."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

RUN_ID = re.compile(r"\br-[0-9a-z]{8}\b")
NOISE = [
    (re.compile(r"\d+\.\d+ ?s\b"), "<s>"),
    (re.compile(r"\b\d+ ms\b"), "<ms>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d"), "<time>"),
]


def blocks(page: Path, language: str) -> list[str]:
    """The fenced blocks of one language, in page order (four-backtick blocks left alone)."""
    return re.findall(rf"^```{language}\n(.*?)^```$", page.read_text(), re.S | re.M)


def commands(block: str) -> list[tuple[str, list[str]]]:
    """A console block as (command, shown output lines) pairs."""
    found: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            found.append((line[2:].split("   #")[0].strip(), []))
        elif found:
            found[-1][1].append(line)
    return found


def normalise(lines: list[str], here: Path, shown_root: str) -> list[str]:
    ids: dict[str, str] = {}
    text = "\n".join(lines).replace(str(here), shown_root)
    text = RUN_ID.sub(lambda m: ids.setdefault(m.group(0), f"<run{len(ids) + 1}>"), text)
    for pattern, token in NOISE:
        text = pattern.sub(token, text)
    return [re.sub(r"\s+", " ", line).strip() for line in text.splitlines() if line.strip()]


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    env.pop("EVOLVE_MODEL", None)
    return subprocess.run(
        ["bash", "-c", f"exec 2>&1; {command}"], cwd=cwd, env=env, capture_output=True, text=True
    )


def repo(path: Path, copies: dict[str, Path]) -> Path:
    path.mkdir()
    for name, source in copies.items():
        shutil.copytree(source, path / name)
    (path / ".gitignore").write_text(".evolve/\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "start"], cwd=path, check=True)
    return path


def check(block: str, cwd: Path, shown_root: str) -> None:
    for command, shown in commands(block):
        logs = sorted((cwd / ".evolve" / "runs").glob("r-*.jsonl"), key=lambda p: p.stat().st_mtime)
        if logs:  # a run id the page names is the newest run's here
            command = RUN_ID.sub(logs[-1].stem, command)
        done = shell(command, cwd)
        got = normalise(done.stdout.splitlines(), cwd, shown_root)
        want = normalise(shown, cwd, shown_root)
        assert got == want, f"$ {command}\nshown:\n" + "\n".join(want) + "\ngot:\n" + "\n".join(got)


@pytest.mark.slow
def test_the_readme_tour_prints_what_it_shows(tmp_path):
    here = repo(tmp_path / "tour", {"examples/review-branch": ROOT / "examples/review-branch"})
    tour = blocks(ROOT / "README.md", "console")[0]
    assert tour.startswith("$ evolve run examples/review-branch --offline")
    check(tour, here, "/home/you/evolve")


@pytest.mark.slow
def test_the_readme_validate_example_prints_what_it_shows(tmp_path):
    here = repo(tmp_path / "r", {"examples/starter": ROOT / "examples/starter"})
    [block] = [b for b in blocks(ROOT / "README.md", "console") if "$ evolve validate" in b]
    check(block, here, "/tmp/r")


def test_the_getting_started_diff_applies(tmp_path):
    here = repo(tmp_path / "demo", {"starter": ROOT / "examples/starter"})
    diff = blocks(ROOT / "docs/getting-started.md", "diff")[0]  # the hand edit
    done = subprocess.run(
        ["git", "apply", "--check", "-"], input=diff, cwd=here, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_getting_started_prints_what_it_shows(tmp_path):
    """Sections 2 to 4 and 6 to 9, in order, in one playground; the failing run's progress and
    tree (retry order and jitter vary between runs) are run, not compared."""
    page = ROOT / "docs/getting-started.md"
    here = repo(tmp_path / "demo", {"starter": ROOT / "examples/starter"})
    consoles = blocks(page, "console")
    for block in consoles[:4]:  # validate, run, runs, inspect
        if "evolve inspect last" in block:
            continue  # the tree's column widths follow the timings
        check(block, here, "/home/you/demo")
    check(next(b for b in consoles if "0 proposals" in b), here, "/home/you/demo")
    diff = blocks(page, "diff")[0]
    subprocess.run(["git", "apply", "-"], input=diff, cwd=here, check=True, text=True)
    shell("git commit -qam 'slow count_words'", here)
    assert shell("evolve run starter", here).returncode == 1
    for needle in ("1 proposal.", "$ git diff --stat", "$ evolve state last total"):
        check(next(b for b in consoles if needle in b), here, "/home/you/demo")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jq") is None, reason="the page's jq commands need jq on PATH")
def test_exploring_your_runs_prints_what_it_shows(tmp_path):
    here = repo(tmp_path / "x", {"examples/review-branch": ROOT / "examples/review-branch"})
    for block in blocks(ROOT / "docs/exploring.md", "console"):
        check(block, here, "/tmp/x")
