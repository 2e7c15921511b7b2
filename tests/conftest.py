"""Shared fixtures and builders for the test suite (keep this small)."""

from __future__ import annotations

import textwrap
from pathlib import Path


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
