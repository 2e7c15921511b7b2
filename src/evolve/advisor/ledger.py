"""The ledger: earlier proposal files of an experience, and which of their diffs were applied.

Every `evolve propose` leaves `.evolve/evolution/<run-id>.json`. An earlier proposal counts as
applied when its diff applies in reverse to the files as they are now (`git apply --check
--reverse`); otherwise it was passed over. Either way the same idea is not proposed again.
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
    applied: bool
    file: str

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "operation": self.operation,
            "status": "applied" if self.applied else "not applied",
            "file": self.file,
        }


def is_applied(diff: str, root: Path) -> bool:
    with tempfile.NamedTemporaryFile("w", suffix=".diff", delete=False) as f:
        f.write(diff)
    try:
        done = subprocess.run(
            ["git", "apply", "--check", "--reverse", f.name],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        Path(f.name).unlink(missing_ok=True)
    return done.returncode == 0


def earlier_proposals(workspace: Workspace, experience_dir: Path, root: Path) -> list[Earlier]:
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
        for p in data.get("proposals", []):
            found.append(
                Earlier(
                    p.get("fingerprint", ""),
                    p.get("title", ""),
                    p.get("operation", ""),
                    is_applied(p.get("diff", ""), root),
                    path.name,
                )
            )
    return found
