"""Small builders shared by the runtime tests: experiences in tmp dirs, runs, event reading."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import yaml

from evolve.runtime.run import RunOptions, RunResult, start_run
from evolve.store.log import read_events
from evolve.store.workspace import Workspace


def build(root: Path, spec: dict[str, Any] | str, files: dict[str, str] | None = None) -> Path:
    """Write experience.yaml (from a dict or YAML text) and its files under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    text = spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False)
    (root / "experience.yaml").write_text(textwrap.dedent(text))
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
        if name.endswith((".sh", ".bin")):
            path.chmod(0o755)
    return root


def spec(
    nodes: list[dict[str, Any]],
    edges: list[dict[str, Any]] | None = None,
    state: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": "t",
        "version": "0.1.0",
        **extra,
        "state": {"schema": state or {}},
        "graph": {"nodes": nodes, "edges": edges or [], **extra.pop("graph", {})},
    }


def tool(node_id: str, impl: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "kind": "tool", "impl": impl, **fields}


def run(path: Path, workspace: Path, model: Any = None, **options: Any) -> RunResult:
    return start_run(path, Workspace(workspace), RunOptions(**options), model)


def events(result: RunResult, type: str | None = None) -> list[dict[str, Any]]:
    found = list(read_events(result.log_path))
    return [e for e in found if type is None or e["type"] == type]


def max_in_flight(all_events: list[dict[str, Any]], node_id: str | None = None) -> int:
    """The most attempts running at once, measured from node.started / attempt-end events."""
    running = peak = 0
    for e in all_events:
        if node_id and e.get("node_id") != node_id:
            continue
        if "attempt" not in e:
            continue
        if e["type"] == "node.started":
            running += 1
            peak = max(peak, running)
        elif e["type"] in ("node.finished", "node.failed"):
            running -= 1
    return peak


def git(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run git in `repo`; a failure raises (with its output)."""
    return subprocess.run(
        ["git", *args], cwd=repo, input=stdin, capture_output=True, text=True, check=True
    )


def repo_with(tmp_path: Path, document: dict, files: dict[str, str]) -> tuple[Path, Path]:
    """A git repository with one experience at flows/x, committed: (repo, experience dir)."""
    repo = tmp_path / "repo"
    exp = build(repo / "flows" / "x", document, files)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    return repo, exp
