"""`evolve init DIR [--template T]`: a new experience that validates and runs offline at once.

Each template lives in the package (`evolve/templates/<name>/`), with hand-written cassettes so
`run --offline` and `propose --offline` work before any key is set. `__NAME__` and `__DIR__` in
its files become the experience's name and the directory as the user typed it. Every template's
experience.yaml opens with a `# yaml-language-server: $schema=./experience.schema.json` line, and
the schema is written beside it, so editors complete and check from the first keystroke. An
existing non-empty directory is never written into.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from evolve.errors import UsageError

SCHEMA_FILE = "experience.schema.json"
DEFAULT_TEMPLATE = "agent"
TEMPLATES = {
    "tool-only": "tool nodes only: a fan-out and a conditional edge, no model needed",
    "agent": "a tool, an agent node per item with an output schema, and a tool after it",
    "cli-agent": "a step handed to an agentic coding CLI (Claude Code) in a work folder",
    "full-pipeline": "a dataset, a fan-out of agent calls, a tool, a skill node, phases and when",
}


def experience_name(directory: Path) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")
    return name if name and name[0].isalnum() else f"exp-{name}".strip("-") or "my-experience"


def _copy(source: Traversable, target: Path, replacements: dict[str, str]) -> list[Path]:
    written = []
    for entry in source.iterdir():
        if entry.name == "__pycache__":
            continue
        path = target / entry.name
        if entry.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            written += _copy(entry, path, replacements)
            continue
        text = entry.read_text("utf-8")
        for old, new in replacements.items():
            text = text.replace(old, new)
        path.write_text(text, "utf-8")
        written.append(path)
    return written


def create_experience(directory: Path, template: str = DEFAULT_TEMPLATE) -> list[Path]:
    """Write `template` into `directory` (created if needed); returns the files written."""
    from evolve.spec import schema_text

    if template not in TEMPLATES:
        from evolve.errors import did_you_mean

        raise UsageError(
            f"no template '{template}'{did_you_mean(template, TEMPLATES)}; "
            f"choose one of: {', '.join(TEMPLATES)}"
        )
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(
            f"{directory} already exists and is not an empty directory; choose a new one"
        )
    directory.mkdir(parents=True, exist_ok=True)
    replacements = {"__NAME__": experience_name(directory), "__DIR__": str(directory)}
    source = resources.files("evolve") / "templates" / template
    written = _copy(source, directory, replacements)
    (directory / SCHEMA_FILE).write_text(schema_text(), "utf-8")
    return sorted([*written, directory / SCHEMA_FILE])
