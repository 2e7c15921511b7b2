"""`evolve init DIR`: a starter experience that validates and runs offline at once.

The files live in the package (`evolve/starter/`); `__NAME__` and `__DIR__` in them become the
experience's name and the directory as the user typed it. An existing non-empty directory is
never written into.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from evolve.errors import UsageError


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


def create_experience(directory: Path) -> list[Path]:
    """Write the starter into `directory` (created if needed); returns the files written."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(
            f"{directory} already exists and is not an empty directory; choose a new one"
        )
    directory.mkdir(parents=True, exist_ok=True)
    replacements = {"__NAME__": experience_name(directory), "__DIR__": str(directory)}
    return sorted(_copy(resources.files("evolve") / "starter", directory, replacements))
