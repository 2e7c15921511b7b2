"""Shared fixtures and builders for the test suite (keep this small)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest


def write_experience(
    tmp_path: Path,
    yaml_text: str,
    files: dict[str, str] | None = None,
    *,
    executable: tuple[str, ...] = (),
) -> Path:
    """Write an experience into the directory `tmp_path` (created if needed) and return it.

    `yaml_text` becomes experience.yaml (dedented, so it may be indented in the test source);
    `files` maps paths relative to the experience to their text (written as is); the paths in
    `executable` are made executable.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "experience.yaml").write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    for name, content in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        if name in executable:
            path.chmod(0o755)
    return tmp_path


@pytest.fixture(scope="session", autouse=True)
def every_written_event_is_declared(tmp_path_factory: pytest.TempPathFactory):
    """After the whole suite: every event log any test's run wrote (under the session's temp
    folder, subprocess runs included) holds only declared event types with declared fields of
    the declared types (see evolve.events). A problem fails the session with the file and line."""
    yield
    from evolve.events import validate

    problems: list[str] = []
    for log in sorted(tmp_path_factory.getbasetemp().rglob("r-*.jsonl")):
        if log.parent.name != "runs":
            continue
        for number, raw in enumerate(log.read_text("utf-8", errors="replace").splitlines(), 1):
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # a torn last line after a kill: readers skip it, and so does this check
            problems += [f"{log}:{number}: {p}" for p in validate(event)]
    assert not problems, "undeclared events were written:\n" + "\n".join(problems[:20])
