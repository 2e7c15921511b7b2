"""Where a workspace lives, and how its runs are named.

The workspace is the `.evolve/` folder of the directory where evolve is invoked, unless
`--workspace` or `EVOLVE_WORKSPACE` says otherwise. It holds `runs/<run-id>.jsonl`,
`state.sqlite` and `evolution/`. Many runs of many experiences, and several evolve processes,
may share one.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id() -> str:
    """`r-` and 8 random lowercase letters and digits: short to type, unique in practice."""
    return "r-" + "".join(secrets.choice(_ALPHABET) for _ in range(8))


@dataclass(frozen=True)
class Workspace:
    root: Path  # the .evolve folder itself

    @classmethod
    def locate(cls, explicit: str | Path | None = None) -> Workspace:
        chosen = explicit or os.environ.get("EVOLVE_WORKSPACE") or Path.cwd() / ".evolve"
        return cls(Path(chosen).absolute())

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def evolution_dir(self) -> Path:
        return self.root / "evolution"

    @property
    def database(self) -> Path:
        return self.root / "state.sqlite"

    def log_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.jsonl"

    def create(self) -> Workspace:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        return self
