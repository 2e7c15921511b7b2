"""The ledger: earlier proposal files of an experience, and which of their diffs were applied.

Every `evolve propose` leaves `.evolve/evolution/<run-id>.json`. An earlier proposal is
*applied* when its diff applies in reverse to the files as they are now (`git apply --check
--reverse`); *rejected* when it was not applied and the experience has run again since it was
made; otherwise still *pending*. Applied and rejected ideas are not proposed again; a pending one
is proposed again, so asking twice gives the same answer.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.store.workspace import Workspace


@dataclass
class Earlier:
    fingerprint: str
    title: str
    operation: str
    status: str  # applied | rejected | pending
    file: str

    @property
    def applied(self) -> bool:
        return self.status == "applied"

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "operation": self.operation,
            "status": self.status,
            "file": self.file,
        }


def applies(diff: str, root: Path, *, reverse: bool = False) -> bool:
    """Whether `git apply --check` (in reverse: whether it is already applied) passes."""
    with tempfile.NamedTemporaryFile("w", suffix=".diff", delete=False) as f:
        f.write(diff)
    try:
        done = subprocess.run(
            ["git", "apply", "--check", *(["--reverse"] if reverse else []), f.name],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        Path(f.name).unlink(missing_ok=True)
    return done.returncode == 0


def is_applied(diff: str, root: Path) -> bool:
    return applies(diff, root, reverse=True)


def earlier_proposals(
    workspace: Workspace, experience_dir: Path, root: Path, newest_run: str
) -> list[Earlier]:
    """Earlier proposals for this experience; `newest_run` is when its newest run started."""
    found: list[Earlier] = []
    folder = workspace.evolution_dir
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("experience_dir") != str(experience_dir):
            continue
        ran_since = newest_run > data.get("created", "")
        for p in data.get("proposals", []):
            if is_applied(p.get("diff", ""), root):
                status = "applied"
            else:
                status = "rejected" if ran_since else "pending"
            found.append(
                Earlier(
                    p.get("fingerprint", ""),
                    p.get("title", ""),
                    p.get("operation", ""),
                    status,
                    path.name,
                )
            )
    return found
